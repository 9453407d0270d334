"""Attacks on two moons, measured against the true data density.

    python experiments/moons_attack.py            # the full study (about a minute on a 2-core CPU)
    python experiments/moons_attack.py --quick    # a smoke run in seconds

Data as in the slides: ``make_moons(10000, noise=0.1, random_state=170)``, the first 8500 for
training (10 % held out for model selection), the last 1500 for test. Three models,
trained here (or loaded from ``--out``/models when trained with the same settings):
the slides' FNN, the 5-coupling flow classifier with latent means (±4, 0), and an
unconditional flow (the same architecture with one standard Gaussian base).

Attacks (Adam, learning rate 0.1, as in the slides; success = p(target | x) > 0.99):

* confidence — ascend log p(target | x) of the FNN, stop at success or ``--max-steps``;
* likelihood — ascend log p(x | target) of the flow classifier for 20 steps;
* latent     — ascend the FNN's log p(target | f⁻¹(z)) over the unconditional flow's
               latent code z, starting at z = f(x₀), stop at success or ``--max-steps``;
* confidence on the flow classifier — an extra row: the slides' objective on the flow.

Start points: the slides' four, (2, 0.25), (-0.5, -0.5), (0, 0), (1, -0.5), and a grid over
the data's bounding box plus a margin, towards each class; and the test points towards
the class they do not belong to. A point is on the manifold when its true log-density
exceeds the 1st percentile of the test data's (see :mod:`flowclass.manifold`).
Writes ``table.md``, ``results.json`` and figures to ``--out`` (default results/moons_attack).
"""

from __future__ import annotations

import time

_START = time.perf_counter()

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import flowclass as fc  # noqa: E402
from flowclass import attacks, manifold  # noqa: E402
from flowclass.data import bayes_predict, moons_log_density, moons_splits, train_val_split  # noqa: E402

SLIDES_STARTS = np.array([[2.0, 0.25], [-0.5, -0.5], [0.0, 0.0], [1.0, -0.5]], np.float32)
LATENT_MEANS = ((-4.0, 0.0), (4.0, 0.0))
DENSITY_NODES = 512  # quadrature nodes for the true density along paths (spacing 0.06 σ at noise 0.1)
ATTACKS = ("confidence", "likelihood", "latent", "confidence_flow")
LABELS = {
    "confidence": "confidence (FNN)",
    "likelihood": "class likelihood (flow classifier)",
    "latent": "latent (unconditional flow + FNN)",
    "confidence_flow": "confidence (flow classifier), extra",
}
POPULATIONS = {
    "grid": "grid points, towards the class they do not belong to (Bayes label)",
    "grid_on_manifold": "the same, only those starting on the manifold",
    "test": "test points, towards the class they do not belong to",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=100, help="training epochs for each model")
    p.add_argument("--seed", type=int, default=0, help="initialisation, shuffling and validation split")
    p.add_argument("--grid", type=int, default=40, help="grid of G x G start points (default 1600)")
    p.add_argument("--test-starts", type=int, default=1500, help="test points used as start points")
    p.add_argument("--max-steps", type=int, default=500, help="step limit of the confidence and latent attacks")
    p.add_argument("--likelihood-steps", type=int, default=20, help="steps of the likelihood attack (seed: 20)")
    p.add_argument("--attack-lr", type=float, default=0.1, help="Adam learning rate of the attacks (seed: 0.1)")
    p.add_argument("--threshold", type=float, default=0.99, help="success: p(target | x) above this")
    p.add_argument("--percentile", type=float, default=1.0, help="on-manifold: log p above this test percentile")
    p.add_argument("--out", type=Path, default=Path("results") / "moons_attack")
    p.add_argument("--retrain", action="store_true", help="train even if saved models match the settings")
    p.add_argument("--quick", action="store_true", help="smoke run: few epochs, small grid, few steps")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.grid, args.test_starts, args.max_steps = 10, 12, 100, 60
    if args.noise <= 0 or args.epochs < 1 or args.grid < 2 or args.max_steps < 1 or args.likelihood_steps < 1:
        p.error("need --noise > 0, --epochs >= 1, --grid >= 2 and positive step counts")
    return args


# --- models ---------------------------------------------------------------------------


def model_specs():
    """name -> (model, loss, whether the labels are replaced by zeros)."""
    return {
        "fnn": (fc.FNN(num_classes=2, hidden=(100, 100)), fc.cross_entropy, False),
        "flow_classifier": (fc.tabular_realnvp(2, 2, means=LATENT_MEANS), fc.flow_nll, False),
        "unconditional_flow": (fc.tabular_realnvp(2, 1, means=((0.0, 0.0),)), fc.flow_nll, True),
    }


def train_or_load(name, model, loss_fn, unconditional, train, val, args) -> tuple[dict, dict]:
    """Returns ``(variables, info)``; reuses ``out/models/<name>`` if it was trained with these settings."""
    if unconditional:
        train, val = (train[0], np.zeros_like(train[1])), (val[0], np.zeros_like(val[1]))
    settings = {"noise": args.noise, "epochs": args.epochs, "seed": args.seed, "model": repr(model)}
    init_key, fit_key = jax.random.split(jax.random.key(args.seed))
    state = fc.create_train_state(model, init_key, train[0][:1], optax.adam(1e-3), loss_fn)
    ckpt = fc.Checkpointer(args.out / "models" / name, max_to_keep=1)
    try:
        if ckpt.latest_step is not None and not args.retrain:
            try:
                variables, meta = ckpt.restore(state.variables)
            except ValueError:  # saved with another architecture: train anew
                meta = {"settings": None}
            if meta["settings"] == settings:
                return variables, meta["info"]
        start = time.perf_counter()
        result = fc.fit(state, train, val, key=fit_key, epochs=args.epochs, batch_size=128,
                        num_classes=2 if not unconditional else 1, progress=not args.quiet, desc=name)
        info = {"best_epoch": result.best_epoch, "fit_s": time.perf_counter() - start,
                "val_loss": float(result.history["val_loss"][result.best_epoch - 1])}
        ckpt.save((ckpt.latest_step or 0) + 1, result.state.variables, {"settings": settings, "info": info})
        return result.state.variables, info
    finally:
        ckpt.close()


# --- start points ---------------------------------------------------------------------


def start_points(x_all, x_test, y_test, args):
    """All start points and targets in one batch, with the index of each group."""
    low, high = x_all.min(0) - 0.5, x_all.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(low[0], high[0], args.grid), np.linspace(low[1], high[1], args.grid))
    grid = np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)
    test = x_test[: args.test_starts]
    groups = {  # name -> (x0, target)
        "slides": (np.repeat(SLIDES_STARTS, 2, 0), np.tile([0, 1], len(SLIDES_STARTS))),
        "grid": (np.repeat(grid, 2, 0), np.tile([0, 1], len(grid))),
        "test": (test, 1 - y_test[: args.test_starts]),
    }
    x0 = np.concatenate([g[0] for g in groups.values()]).astype(np.float32)
    target = np.concatenate([g[1] for g in groups.values()]).astype(np.int32)
    index, start = {}, 0
    for name, (points, _) in groups.items():
        index[name] = np.arange(start, start + len(points))
        start += len(points)
    return x0, target, index, (low, high)


# --- attacks --------------------------------------------------------------------------


@functools.lru_cache
def _adam(learning_rate: float) -> optax.GradientTransformation:
    """One optimiser object per learning rate, so repeated runs reuse the compiled attacks."""
    return optax.adam(learning_rate)


def run_attacks(models, x0, target, args):
    """Runs every attack on all start points at once; returns results and timings."""
    (fnn, fnn_vars), (flow, flow_vars), (uflow, uflow_vars) = (
        models[n] for n in ("fnn", "flow_classifier", "unconditional_flow"))
    fnn_logits = functools.partial(fnn.apply, fnn_vars)
    optimizer = _adam(args.attack_lr)
    stopping = {"optimizer": optimizer, "max_steps": args.max_steps, "threshold": args.threshold}
    runs = {
        "confidence": lambda: attacks.confidence_attack(fnn_logits, x0, target, **stopping),
        "likelihood": lambda: attacks.likelihood_attack(
            functools.partial(flow.apply, flow_vars, method="class_log_likelihoods"), x0, target,
            log_prior=flow.apply(flow_vars, method="log_weights"), optimizer=optimizer,
            steps=args.likelihood_steps, threshold=args.threshold),
        "latent": lambda: attacks.latent_attack(
            fnn_logits, functools.partial(uflow.apply, uflow_vars, method="encode"),
            functools.partial(uflow.apply, uflow_vars, method="decode"), x0, target, **stopping),
        "confidence_flow": lambda: attacks.confidence_attack(
            functools.partial(flow.apply, flow_vars), x0, target, **stopping),
    }
    results, timing = {}, {}
    for name, run in runs.items():
        start = time.perf_counter()
        results[name] = jax.device_get(jax.block_until_ready(run()))
        seconds = time.perf_counter() - start
        steps = int(results[name].num_steps.max())  # later steps are skipped: every path had stopped
        timing[name] = {"wall_s_incl_compile": seconds, "trajectories": len(x0), "steps_computed": steps,
                        "trajectory_steps_per_s": len(x0) * steps / seconds}
        print(f"{LABELS[name]}: {len(x0)} trajectories x {steps} steps in {seconds:.2f} s", file=sys.stderr)
    return results, timing


# --- measures -------------------------------------------------------------------------


def populations(x0, target, index, args, tau) -> dict[str, np.ndarray]:
    """Boolean masks over all trajectories, one per population of :data:`POPULATIONS`."""
    n, grid = len(x0), index["grid"]
    other = bayes_predict(x0[grid], args.noise, num_nodes=DENSITY_NODES) != target[grid]
    start_on = moons_log_density(x0[grid], args.noise, num_nodes=DENSITY_NODES) > tau
    masks = {name: np.zeros(n, bool) for name in POPULATIONS}
    masks["grid"][grid[other]] = True
    masks["grid_on_manifold"][grid[other & start_on]] = True
    masks["test"][index["test"]] = True
    return masks


def _share(values, select) -> float:
    """Mean of the boolean ``values`` over the ``select`` mask (NaN when it selects nothing)."""
    return float(values[select].mean()) if select.any() else float("nan")


def measure(results, masks, x0, seed_index, tau, x_train, args):
    """Per attack: a summary per population, per-path on-manifold shares, and the slides points' rows."""
    density = functools.partial(moons_log_density, noise=args.noise, num_nodes=DENSITY_NODES)
    tables, fractions, seed_rows = {}, {}, {}
    for name, r in results.items():
        paths = manifold.path_log_density(r.inputs, r.num_steps, density)
        tables[name] = {pop: manifold.summarize_paths(r, paths, threshold=tau, reference=x_train, select=mask)
                        for pop, mask in masks.items()}
        last = (r.num_steps, np.arange(len(r.num_steps)))
        in_target = bayes_predict(r.inputs[last], args.noise, num_nodes=DENSITY_NODES) == r.target
        on_end = paths[last] > tau
        for pop, mask in masks.items():
            ok = mask & r.succeeded & (r.num_steps > 0)
            tables[name][pop]["successful"].update(
                ends_in_target_class=_share(in_target, ok), on_manifold_adversarial=_share(on_end & ~in_target, ok))
            failed = mask & ~r.succeeded
            tables[name][pop]["failures"] = {
                "n": int(failed.sum()),
                "by_target": np.bincount(r.target[failed], minlength=2).tolist(),
                "median_best_target_prob": float(np.median(r.target_prob[:, failed].max(0))) if failed.any() else None,
            }
        fractions[name] = manifold.on_manifold_fraction(paths, r.num_steps, tau)
        seed_rows[name] = [
            {"start": x0[i].tolist(), "target": int(r.target[i]), "success_step": int(r.success_step[i]),
             "num_steps": int(r.num_steps[i]), "final": r.inputs[r.num_steps[i], i].tolist(),
             "final_target_prob": float(r.target_prob[r.num_steps[i], i]),
             "on_manifold_step_fraction": None if np.isnan(fractions[name][i]) else float(fractions[name][i]),
             "ends_on_manifold": bool(paths[r.num_steps[i], i] > tau)}
            for i in seed_index
        ]
    return tables, fractions, seed_rows


# --- report ---------------------------------------------------------------------------


def markdown(summary) -> str:
    pct = lambda v: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"  # noqa: E731
    num = lambda v, f: "–" if isinstance(v, float) and math.isnan(v) else format(v, f)  # noqa: E731
    s = summary
    lines = [
        f"# Attacks on two moons (noise {s['noise']:g})",
        "",
        f"Models (test accuracy on the slides' 1500 points): FNN {100 * s['models']['fnn']['test_acc']:.2f} %, "
        f"flow classifier {100 * s['models']['flow_classifier']['test_acc']:.2f} %; unconditional flow test NLL "
        f"{s['models']['unconditional_flow']['test_nll']:.3f} nats vs the true density's "
        f"{s['true_test_nll']:.3f}. On-manifold: true log p(x) > τ = {s['tau']:.3f} "
        f"(percentile {s['percentile']:g} of the test data's). Success: p(target | x) > {s['threshold']}. "
        f"Adam, learning rate {s['attack_lr']}; confidence and latent attacks stop at success or "
        f"{s['max_steps']} steps, the likelihood attack runs {s['likelihood_steps']} steps. "
        "On-manifold statistics are over each path's moves x_1..x_m (m = steps it moved: up to success "
        "for the stopping attacks, all steps for the likelihood attack); 'final' is x_m. 'Path length on "
        "manifold' weights each move by its length ‖x_s − x_(s−1)‖, so it does not depend on the step size. "
        "'End in target class (Bayes)': the end point's Bayes-optimal label is the target, i.e. the input really "
        "changed class; 'on-manifold adversarial': the end point is on the manifold but still of another class "
        "(the classifier is fooled by a realistic input).",
        "",
    ]
    for pop, title in POPULATIONS.items():
        first = s["attacks"][ATTACKS[0]][pop]
        lines += [f"## Start points: {title}", "",
                  f"{first['n']} paths; {pct(first['starts_on_manifold'])} % start on the manifold. Columns after "
                  "the first on-manifold one are over the successful paths.", "",
                  "| attack | success % | median steps to success | moves on manifold %, all paths | "
                  "moves on manifold % | path length on manifold % | never off manifold % | end on manifold % | "
                  "end in target class (Bayes) % | on-manifold adversarial % | "
                  "median final true log p | median final distance to nearest train point |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name in ATTACKS:
            r = s["attacks"][name][pop]
            a, ok = r["all"], r["successful"]
            lines.append(
                f"| {LABELS[name]} | {pct(r['success_rate'])} | {num(r['median_steps_to_success'], '.0f')} | "
                f"{pct(a['on_manifold_step_fraction'])} | {pct(ok['on_manifold_step_fraction'])} | "
                f"{pct(ok['on_manifold_length_fraction'])} | {pct(ok['stays_on_manifold'])} | "
                f"{pct(ok['ends_on_manifold'])} | {pct(ok['ends_in_target_class'])} | "
                f"{pct(ok['on_manifold_adversarial'])} | {num(ok['median_final_log_density'], '.2f')} | "
                f"{num(ok['median_final_nearest_distance'], '.3f')} |")
        lines.append("")
        for key, what in (("on_manifold_step_fraction", "most moves on the manifold"),
                          ("on_manifold_length_fraction", "most path length on the manifold"),
                          ("ends_on_manifold", "most end points on the manifold")):
            best = max(ATTACKS, key=lambda a: np.nan_to_num(s["attacks"][a][pop]["successful"][key], nan=-1.0))
            lines.append(f"- Successful paths with {what}: **{LABELS[best]}**.")
        for name in ATTACKS:
            fail = s["attacks"][name][pop]["failures"]
            if fail["n"]:
                lines.append(f"- {LABELS[name]}: {fail['n']} paths failed ({fail['by_target'][0]} towards class 0, "
                             f"{fail['by_target'][1]} towards class 1); median best p(target | x) along them "
                             f"{fail['median_best_target_prob']:.2g}.")
        lines.append("")
    lines += ["## The slides' four start points", "",
              "Each cell: steps to success (– if none) / share of moves on the manifold / final point on it?", "",
              "| start → target | " + " | ".join(LABELS[a] for a in ATTACKS) + " |",
              "|---|" + "---|" * len(ATTACKS)]
    for i, row in enumerate(s["slides_points"]["confidence"]):
        cells = []
        for a in ATTACKS:
            r = s["slides_points"][a][i]
            step = str(r["success_step"]) if r["success_step"] >= 0 else "–"
            frac = "–" if r["on_manifold_step_fraction"] is None else f"{100 * r['on_manifold_step_fraction']:.0f} %"
            cells.append(f"{step} / {frac} / {'on' if r['ends_on_manifold'] else 'off'}")
        start = f"({row['start'][0]:g}, {row['start'][1]:g})"
        lines.append(f"| {start} → {row['target']} | " + " | ".join(cells) + " |")
    lines += ["", "## Timing (one run, 2-core CPU, compile included)", "",
              "Steps computed: until the last path stopped (later steps skip the model).", "",
              "| attack | trajectories | steps computed | wall s | trajectory-steps / s |", "|---|---:|---:|---:|---:|"]
    for name in ATTACKS:
        t = s["timing"][name]
        lines.append(f"| {LABELS[name]} | {t['trajectories']} | {t['steps_computed']} | "
                     f"{t['wall_s_incl_compile']:.2f} | {t['trajectory_steps_per_s']:,.0f} |")
    lines += ["", f"Total wall time {s['wall_s']:.1f} s.", ""]
    return "\n".join(lines)


def _strict_json(value):
    """``value`` with NaN replaced by ``None``, so that the file is strict JSON."""
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# --- figures --------------------------------------------------------------------------


def save_figures(args, models, results, fractions, masks, index, tau, data, box):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    from flowclass.plotting import plot_decision_regions, plot_latent

    (x_train, y_train), (x_test, y_test) = data
    proba = {n: jax.jit(lambda p, n=n: jax.nn.softmax(models[n][0].apply(models[n][1], p))) for n in
             ("fnn", "flow_classifier")}
    attacked = {"confidence": "fnn", "likelihood": "flow_classifier", "latent": "fnn",
                "confidence_flow": "flow_classifier"}
    low, high = box
    xx, yy = np.meshgrid(np.linspace(low[0], high[0], 200), np.linspace(low[1], high[1], 200))
    true_lp = moons_log_density(np.stack([xx.ravel(), yy.ravel()], -1), args.noise,
                                num_nodes=DENSITY_NODES).reshape(xx.shape)
    colours = ("tab:blue", "tab:orange")
    grid_pick = np.flatnonzero(masks["grid"])
    grid_pick = np.random.default_rng(0).choice(grid_pick, size=min(80, len(grid_pick)), replace=False)
    legend = ("paths: blue → class 0, orange → class 1; ● start, ★ success, ■ step limit. Background: "
              "p(class 1 | x) of the attacked classifier (0.5 contour black);\ngreen dashed: on-manifold "
              "boundary (true log p = τ); dots: test data.")

    def draw_paths(ax, paths, r, picks, linewidth):
        for i in picks:
            path = paths[: r.num_steps[i] + 1, i]
            colour = colours[r.target[i]]
            ax.plot(path[:, 0], path[:, 1], "-", color=colour, lw=linewidth, alpha=0.9)
            ax.plot(*path[0], "o", color="k", ms=3)
            ax.plot(*path[-1], "*" if r.success_step[i] >= 0 else "s", color=colour, ms=8 if linewidth > 1 else 5,
                    markeredgecolor="k", markeredgewidth=0.5)

    for picks, lw, fname, what in (
        (index["slides"], 1.8, "trajectories_slides_points.png", "the slides' 4 start points, towards each class"),
        (grid_pick, 0.7, "trajectories_grid.png",
         f"{len(grid_pick)} random grid start points, towards the other class"),
    ):
        fig, axes = plt.subplots(2, 2, figsize=(12, 9.5), constrained_layout=True)
        for ax, name in zip(axes.ravel(), ATTACKS, strict=True):
            plot_decision_regions(ax, lambda p, n=name: np.asarray(proba[attacked[n]](jnp.asarray(p))),
                                  x_test, y_test, title=LABELS[name])
            ax.contour(xx, yy, true_lp, levels=[tau], colors="green", linewidths=1.0, linestyles="--")
            draw_paths(ax, results[name].inputs, results[name], picks, lw)
            ax.set_xlim(low[0] - 0.3, high[0] + 0.3)
            ax.set_ylim(low[1] - 0.3, high[1] + 0.3)
        fig.suptitle(f"Attack paths in x, {what}.\n{legend}", fontsize=9)
        fig.savefig(args.out / fname, dpi=100)
        plt.close(fig)

    # the latent attack in latent space
    uflow, uvars = models["unconditional_flow"]
    encode = jax.jit(lambda x: uflow.apply(uvars, x, method="encode")[0])
    decode = jax.jit(lambda z: uflow.apply(uvars, z, method="decode")[0])
    z_train = np.asarray(encode(jnp.asarray(x_train)))
    zz0, zz1 = np.meshgrid(np.linspace(-4.5, 4.5, 200), np.linspace(-4.5, 4.5, 200))
    x_of_z = decode(jnp.asarray(np.stack([zz0.ravel(), zz1.ravel()], -1), jnp.float32))
    p1 = np.asarray(proba["fnn"](x_of_z))[:, 1].reshape(zz0.shape)
    r = results["latent"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.2), constrained_layout=True)
    for ax, picks, lw, title in ((axes[0], index["slides"], 1.8, "the slides' start points"),
                                 (axes[1], grid_pick, 0.7, f"{len(grid_pick)} grid start points")):
        ax.contourf(zz0, zz1, p1, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.35)
        ax.contour(zz0, zz1, p1, levels=[0.5], colors="k", linewidths=1.0)
        plot_latent(ax, z_train[::4], y_train[::4], [[0.0, 0.0]], title=f"latent attack in z = f(x): {title}")
        ax.add_patch(Circle((0, 0), 3.0, fill=False, color="gray", ls=":", lw=1))
        draw_paths(ax, r.latents, r, picks, lw)
        ax.set_xlim(-4.5, 4.5)
        ax.set_ylim(-4.5, 4.5)
    fig.suptitle("The unconditional flow's latent space: training codes by class; 1σ, 2σ (dashed) and 3σ (dotted) "
                 "circles of the N(0, I) base; background: FNN p(class 1 | f⁻¹(z)), 0.5 contour black.\n"
                 "Latent attack paths: blue → class 0, orange → class 1; ● start z = f(x₀), ★ success, ■ step limit.",
                 fontsize=9)
    fig.savefig(args.out / "latent_attack_latent_space.png", dpi=100)
    plt.close(fig)

    # where on the grid each attack stays on the manifold
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), constrained_layout=True)
    towards_other = masks["grid"][index["grid"]].reshape(-1, 2).argmax(1)  # the target that is not the Bayes label
    for ax, name in zip(axes.ravel(), ATTACKS, strict=True):
        image = fractions[name][index["grid"]].reshape(-1, 2)[np.arange(args.grid**2), towards_other]
        shown = ax.imshow(image.reshape(args.grid, args.grid), origin="lower", vmin=0, vmax=1, cmap="viridis",
                          extent=(low[0], high[0], low[1], high[1]), aspect="equal")
        ax.contour(xx, yy, true_lp, levels=[tau], colors="white", linewidths=0.8, linestyles="--")
        ax.set_title(LABELS[name], fontsize=10)
    fig.colorbar(shown, ax=axes, shrink=0.7, label="share of the path's moves on the manifold")
    fig.suptitle("Share of moves on the manifold by grid start point (attack towards the class it does not belong "
                 "to).\nWhite dashed: on-manifold boundary; white cells: already past the threshold at the start "
                 "(no moves).", fontsize=9)
    fig.savefig(args.out / "on_manifold_by_start.png", dpi=100)
    plt.close(fig)


# --- main -----------------------------------------------------------------------------


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (x_all, y_all), (x_test, y_test) = moons_splits(args.noise)
    train, val = train_val_split(x_all, y_all, val_fraction=0.1, seed=args.seed)

    models, model_info = {}, {}
    for name, (model, loss_fn, unconditional) in model_specs().items():
        variables, info = train_or_load(name, model, loss_fn, unconditional, train, val, args)
        models[name] = (model, variables)
        model_info[name] = info
    for name in ("fnn", "flow_classifier"):
        logits = fc.predict_logits(models[name][0].apply, models[name][1], x_test)
        model_info[name]["test_acc"] = float(np.mean(np.argmax(logits, -1) == y_test))
    uflow, uvars = models["unconditional_flow"]
    marginal = jax.jit(functools.partial(uflow.apply, method="marginal_log_prob"))
    model_info["unconditional_flow"]["test_nll"] = float(-np.mean(marginal(uvars, jnp.asarray(x_test))))
    true_test_lp = moons_log_density(x_test, args.noise, num_nodes=DENSITY_NODES)
    tau = manifold.manifold_threshold(true_test_lp, args.percentile)

    x0, target, index, box = start_points(x_all, x_test, y_test, args)
    results, timing = run_attacks(models, x0, target, args)
    masks = populations(x0, target, index, args, tau)
    tables, fractions, seed_rows = measure(results, masks, x0, index["slides"], tau, train[0], args)

    summary = {
        "noise": args.noise, "epochs": args.epochs, "seed": args.seed, "grid": f"{args.grid}x{args.grid}",
        "n_train": len(train[0]), "n_val": len(val[0]), "n_test_starts": len(index["test"]),
        "threshold": args.threshold, "percentile": args.percentile, "tau": tau,
        "true_test_nll": float(-np.mean(true_test_lp)), "attack_lr": args.attack_lr,
        "max_steps": args.max_steps, "likelihood_steps": args.likelihood_steps,
        "density_quadrature_nodes": DENSITY_NODES, "models": model_info,
        "populations": POPULATIONS, "attack_labels": LABELS, "attacks": tables,
        "slides_points": seed_rows, "timing": timing,
    }
    save_figures(args, models, results, fractions, masks, index, tau, (train, (x_test, y_test)), box)
    summary["wall_s"] = time.perf_counter() - _START
    (args.out / "results.json").write_text(json.dumps(_strict_json(summary), indent=2, allow_nan=False) + "\n")
    (args.out / "table.md").write_text(markdown(summary))
    print(markdown(summary))
    print(f"wrote {args.out}/table.md, results.json and figures; wall {summary['wall_s']:.1f} s", file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
