"""The moons attack experiment's table (``table.md``) and figures, from its summary and results."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from flowclass.data import moons_log_density

FIGURES = ("trajectories_slides_points.png", "trajectories_grid.png", "latent_attack_latent_space.png",
           "on_manifold_by_start.png")
ATTACKED = {"confidence": "fnn", "likelihood": "flow_classifier", "latent": "fnn", "confidence_flow": "flow_classifier"}
"""The classifier whose posterior each attack ascends (the figures' background)."""


def strict_json(value):
    """``value`` with NaN replaced by ``None``, so that ``results.json`` is strict JSON."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _num(v, spec: str) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def markdown(s: dict) -> str:
    """The summary as ``table.md``: per start-point population, one row per attack; the slides'
    four start points; the timing."""
    labels, attacks = s["attack_labels"], list(s["attacks"])
    models = s["models"]
    lines = [
        f"# Attacks on two moons (noise {s['noise']:g})",
        "",
        f"Models (test accuracy on the slides' 1500 points): FNN {100 * models['fnn']['test_acc']:.2f} %, "
        f"flow classifier {100 * models['flow_classifier']['test_acc']:.2f} %; unconditional flow test NLL "
        f"{models['unconditional_flow']['test_nll']:.3f} nats vs the true density's "
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
    for pop, title in s["populations"].items():
        first = s["attacks"][attacks[0]][pop]
        if not first["n"]:
            lines += [f"## Start points: {title}", "", "No paths.", ""]
            continue
        lines += [f"## Start points: {title}", "",
                  f"{first['n']} paths; {_pct(first['starts_on_manifold'])} % start on the manifold. Columns after "
                  "the first on-manifold one are over the successful paths.", "",
                  "| attack | success % | median steps to success | moves on manifold %, all paths | "
                  "moves on manifold % | path length on manifold % | never off manifold % | end on manifold % | "
                  "end in target class (Bayes) % | on-manifold adversarial % | "
                  "median final true log p | median final distance to nearest train point |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name in attacks:
            r = s["attacks"][name][pop]
            a, ok = r["all"], r["successful"]
            lines.append(
                f"| {labels[name]} | {_pct(r['success_rate'])} | {_num(r['median_steps_to_success'], '.0f')} | "
                f"{_pct(a['on_manifold_step_fraction'])} | {_pct(ok['on_manifold_step_fraction'])} | "
                f"{_pct(ok['on_manifold_length_fraction'])} | {_pct(ok['stays_on_manifold'])} | "
                f"{_pct(ok['ends_on_manifold'])} | {_pct(ok['ends_in_target_class'])} | "
                f"{_pct(ok['on_manifold_adversarial'])} | {_num(ok['median_final_log_density'], '.2f')} | "
                f"{_num(ok['median_final_nearest_distance'], '.3f')} |")
        lines.append("")
        for key, what in (("on_manifold_step_fraction", "most moves on the manifold"),
                          ("on_manifold_length_fraction", "most path length on the manifold"),
                          ("ends_on_manifold", "most end points on the manifold")):
            def score(a, key=key, pop=pop):
                value = s["attacks"][a][pop]["successful"][key]
                return -1.0 if value is None or math.isnan(value) else value

            lines.append(f"- Successful paths with {what}: **{labels[max(attacks, key=score)]}**.")
        for name in attacks:
            fail = s["attacks"][name][pop]["failures"]
            if fail["n"]:
                lines.append(f"- {labels[name]}: {fail['n']} paths failed ({fail['by_target'][0]} towards class 0, "
                             f"{fail['by_target'][1]} towards class 1); median best p(target | x) along them "
                             f"{fail['median_best_target_prob']:.2g}.")
        lines.append("")
    lines += ["## The slides' four start points", "",
              "Each cell: steps to success (– if none) / share of moves on the manifold / final point on it?", "",
              "| start → target | " + " | ".join(labels[a] for a in attacks) + " |",
              "|---|" + "---|" * len(attacks)]
    for i, row in enumerate(s["slides_points"][attacks[0]]):
        cells = []
        for a in attacks:
            r = s["slides_points"][a][i]
            step = str(r["success_step"]) if r["success_step"] >= 0 else "–"
            frac = "–" if r["on_manifold_step_fraction"] is None else f"{100 * r['on_manifold_step_fraction']:.0f} %"
            cells.append(f"{step} / {frac} / {'on' if r['ends_on_manifold'] else 'off'}")
        lines.append(f"| ({row['start'][0]:g}, {row['start'][1]:g}) → {row['target']} | " + " | ".join(cells) + " |")
    lines += ["", "## Timing (one run on this machine, compile included)", "",
              "Steps computed: until the last path stopped (later steps skip the model).", "",
              "| attack | trajectories | steps computed | wall s | trajectory-steps / s |", "|---|---:|---:|---:|---:|"]
    for name in attacks:
        t = s["timing"][name]
        lines.append(f"| {labels[name]} | {t['trajectories']} | {t['steps_computed']} | "
                     f"{t['wall_s_incl_compile']:.2f} | {t['trajectory_steps_per_s']:,.0f} |")
    lines += ["", "Training: " + ", ".join(f"{name} {m['fit_s']:.1f} s (best epoch {m['best_epoch']} of "
                                           f"{m['epochs_run']})" for name, m in models.items())
              + f". Total wall time {s['wall_s']:.1f} s.", ""]
    return "\n".join(lines)


def save_figures(workdir: Path, config, models, results, fractions, masks, index, tau, splits, box,
                 *, labels: dict[str, str], density_nodes: int) -> None:
    """Writes :data:`FIGURES` into ``workdir``: the attack paths from the slides' points and from
    80 random grid points over each attacked classifier's posterior, the latent attack in the
    unconditional flow's latent space, and the on-manifold share by grid start point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    from flowclass.plotting import plot_decision_regions, plot_latent

    (x_train, y_train), (x_test, y_test) = splits.train, splits.test
    proba = {name: jax.jit(lambda p, m=models[name]: jax.nn.softmax(m.model.apply(m.variables, p)))
             for name in ("fnn", "flow_classifier")}
    attacks = list(results)
    low, high = box
    xx, yy = np.meshgrid(np.linspace(low[0], high[0], 200), np.linspace(low[1], high[1], 200))
    true_lp = moons_log_density(np.stack([xx.ravel(), yy.ravel()], -1), config.noise,
                                num_nodes=density_nodes).reshape(xx.shape)
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
        (index["slides"], 1.8, FIGURES[0], "the slides' 4 start points, towards each class"),
        (grid_pick, 0.7, FIGURES[1], f"{len(grid_pick)} random grid start points, towards the other class"),
    ):
        fig, axes = plt.subplots(2, 2, figsize=(12, 9.5), constrained_layout=True)
        for ax, name in zip(axes.ravel(), attacks, strict=True):
            plot_decision_regions(ax, lambda p, n=name: np.asarray(proba[ATTACKED[n]](jnp.asarray(p))),
                                  x_test, y_test, title=labels[name])
            ax.contour(xx, yy, true_lp, levels=[tau], colors="green", linewidths=1.0, linestyles="--")
            draw_paths(ax, results[name].inputs, results[name], picks, lw)
            ax.set_xlim(low[0] - 0.3, high[0] + 0.3)
            ax.set_ylim(low[1] - 0.3, high[1] + 0.3)
        fig.suptitle(f"Attack paths in x, {what}.\n{legend}", fontsize=9)
        fig.savefig(workdir / fname, dpi=100)
        plt.close(fig)

    # the latent attack in latent space
    uflow = models["unconditional_flow"]
    encode = jax.jit(lambda x: uflow.model.apply(uflow.variables, x, method="encode")[0])
    decode = jax.jit(lambda z: uflow.model.apply(uflow.variables, z, method="decode")[0])
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
    fig.savefig(workdir / FIGURES[2], dpi=100)
    plt.close(fig)

    # where on the grid each attack stays on the manifold
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5), constrained_layout=True)
    towards_other = masks["grid"][index["grid"]].reshape(-1, 2).argmax(1)  # the target that is not the Bayes label
    for ax, name in zip(axes.ravel(), attacks, strict=True):
        image = fractions[name][index["grid"]].reshape(-1, 2)[np.arange(config.grid**2), towards_other]
        shown = ax.imshow(image.reshape(config.grid, config.grid), origin="lower", vmin=0, vmax=1, cmap="viridis",
                          extent=(low[0], high[0], low[1], high[1]), aspect="equal")
        ax.contour(xx, yy, true_lp, levels=[tau], colors="white", linewidths=0.8, linestyles="--")
        ax.set_title(labels[name], fontsize=10)
    fig.colorbar(shown, ax=axes, shrink=0.7, label="share of the path's moves on the manifold")
    fig.suptitle("Share of moves on the manifold by grid start point (attack towards the class it does not belong "
                 "to).\nWhite dashed: on-manifold boundary; white cells: already past the threshold at the start "
                 "(no moves).", fontsize=9)
    fig.savefig(workdir / FIGURES[3], dpi=100)
    plt.close(fig)
