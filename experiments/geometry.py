"""Where to put the class means: accuracy and likelihood of a flow classifier vs the latent geometry.

    python experiments/geometry.py                       # moons: distance and direction sweep, 3 seeds
    python experiments/geometry.py --noise 0.1 0.25 --seeds 5
    python experiments/geometry.py --dataset mnist --time-budget 10 --data-dir DIR

Moons (the slides' data and flow, as ``experiments/moons.py``; class-conditional NLL): two
means at ``±(d/2) u``, for distances ``d`` in ``--distances`` (the slides used ``d = 8`` along
``x``) and directions ``u`` along ``x``, along ``y`` and diagonal. Scores: accuracy on 200,000
fresh points and the test NLL ``−log p(x | y)`` (nats per point) on the slides' 1500 test points.

MNIST (the fast image flow, as ``experiments/mnist.py``, each variant for ``--time-budget``
minutes): means uniform in ``[0, 1]^D`` (``D = 784``), ``N(0, I)``, ``r · N(0, I)`` for
``--radii``, one-hot ``c · e_k`` (orthogonal, ``c = --onehot-scale``; ``c = √D`` matches the
pairwise distances ``≈ √(2D)`` of ``N(0, I)`` means) and learnable means (initialised
``N(0, I)``). Scores: test accuracy, bits/dim and training time; a figure of every variant's
prototypes ``f⁻¹(μ_k)``. Writes ``results.json``, ``table.md`` and figures to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

_START = time.perf_counter()

DIRECTIONS = {"x": (1.0, 0.0), "y": (0.0, 1.0), "diagonal": (math.sqrt(0.5), math.sqrt(0.5))}
QUADRATURE_NODES = 2048  # as experiments/moons.py, whose Bayes-label cache this shares


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("moons", "mnist"), default="moons")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=None, help="moons: epochs per run (default 40); MNIST: length "
                   "of the learning-rate schedule (default 10)")
    moons = p.add_argument_group("moons")
    moons.add_argument("--noise", type=float, nargs="+", default=[0.25])
    moons.add_argument("--seeds", type=int, default=3)
    moons.add_argument("--distances", type=float, nargs="+", default=[0.5, 1, 2, 4, 8, 16])
    moons.add_argument("--directions", nargs="+", choices=tuple(DIRECTIONS), default=list(DIRECTIONS))
    moons.add_argument("--val-fraction", type=float, default=0.1)
    moons.add_argument("--fresh-size", type=int, default=200_000)
    moons.add_argument("--fresh-random-state", type=int, default=20_260_101)
    mnist = p.add_argument_group("mnist")
    mnist.add_argument("--data-dir", default=None, help="directory with IDX files or mnist.pkl.gz")
    mnist.add_argument("--time-budget", type=float, default=5.0, metavar="MIN", help="minutes for each variant")
    mnist.add_argument("--variants", nargs="+", default=None,
                       help="subset of: uniform01 normal radius<r> onehot learnable (default: all, with --radii)")
    mnist.add_argument("--radii", type=float, nargs="+", default=[0.25, 0.5, 2.0, 4.0], help="r for r · N(0, I)")
    mnist.add_argument("--onehot-scale", type=float, default=None, help="c for c · e_k (default √D = 28)")
    mnist.add_argument("--beta", type=float, default=3.0, help="posterior cross-entropy weight next to the NLL in "
                       "bits/dim, as experiments/mnist.py (0 = pure NLL)")
    mnist.add_argument("--val-size", type=int, default=5000)
    mnist.add_argument("--shift", type=int, default=2)
    mnist.add_argument("--train-subset", type=int, default=None)
    mnist.add_argument("--test-subset", type=int, default=None)
    mnist.add_argument("--host-devices", type=int, default=min(os.cpu_count() or 1, 8))
    p.add_argument("--out", type=Path, default=None, help="output directory (default results/geometry/<dataset>)")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.epochs = args.epochs if args.epochs is not None else (10 if args.dataset == "mnist" else 40)
    if args.variants is None:
        args.variants = ["uniform01", "normal"] + [f"radius{r:g}" for r in args.radii] + ["onehot", "learnable"]
    for variant in args.variants:
        if variant not in ("uniform01", "normal", "onehot", "learnable") and not _is_radius(variant):
            p.error(f"unknown variant {variant!r}; expected uniform01, normal, radius<r>, onehot or learnable")
    if min(args.distances) <= 0 or args.seeds < 1 or args.epochs < 1:
        p.error("--distances must be > 0, --seeds and --epochs >= 1")
    if args.out is None:
        args.out = Path("results") / "geometry" / args.dataset
    return args


def _is_radius(variant: str) -> bool:
    try:
        return variant.startswith("radius") and float(variant[len("radius"):]) > 0
    except ValueError:
        return False


# ------------------------------------------------------------------------------------ moons


def run_moons(args) -> dict:
    import jax
    import numpy as np
    import optax
    from tqdm.auto import tqdm

    import flowclass as fc
    from flowclass.data import bayes_predict, make_moons, moons_class_log_density, moons_splits, train_val_split

    seeds = list(range(args.seed, args.seed + args.seeds))
    summary = {"dataset": "moons", "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
               "seeds": seeds, "n_fresh": args.fresh_size, "noise": {}}
    cache_dir = Path(os.environ.get("FLOWCLASS_CACHE", Path.home() / ".cache" / "flowclass"))
    jobs = [(n, u, d, s) for n in args.noise for u in args.directions for d in args.distances for s in seeds]
    runs: dict = {}
    data = {}
    for noise in args.noise:
        (x, y), test = moons_splits(noise)
        fresh = make_moons(args.fresh_size, noise, args.fresh_random_state)
        cache = cache_dir / (f"moons_bayes_noise{noise:g}_n{args.fresh_size}_rs{args.fresh_random_state}"
                             f"_q{QUADRATURE_NODES}.npy")
        bayes = np.load(cache) if cache.exists() else bayes_predict(fresh[0], noise, num_nodes=QUADRATURE_NODES)
        data[noise] = (x, y, test, fresh)
        true_log_p = moons_class_log_density(test[0], noise)  # the data's own density: the NLL floor
        summary["noise"][f"{noise:g}"] = {
            "bayes_fresh_acc": float(np.mean(bayes == fresh[1])),
            "true_test_nll": float(-np.mean(true_log_p[np.arange(len(test[1])), test[1]])),
            "true_test_marginal_nll": float(-np.mean(np.logaddexp(true_log_p[:, 0], true_log_p[:, 1]) - np.log(2))),
            "runs": [],
        }
    for noise, direction, distance, seed in tqdm(jobs, desc="geometry runs", disable=args.quiet):
        x, y, (x_test, y_test), (x_fresh, y_fresh) = data[noise]
        u = np.asarray(DIRECTIONS[direction])
        means = np.stack([-0.5 * distance * u, 0.5 * distance * u])
        train, val = train_val_split(x, y, val_fraction=args.val_fraction, seed=seed)
        model = fc.tabular_realnvp(2, 2, num_couplings=5, hidden=(100, 100), means=means)
        init_key, fit_key = jax.random.split(jax.random.key(seed))
        state = fc.create_train_state(model, init_key, x[:1], optax.adam(args.lr), fc.flow_nll)
        result = fc.fit(state, train, val, key=fit_key, epochs=args.epochs, batch_size=args.batch_size,
                        num_classes=2, progress=False)
        logits = fc.predict_logits(result.state.apply_fn, result.state.variables, x_fresh)
        test_metrics = fc.evaluate(result.state, x_test, y_test)
        marginal = fc.predict_logits(result.state.apply_fn, result.state.variables, x_test, method="marginal_log_prob")
        row = {"direction": direction, "distance": distance, "seed": seed,
               "fresh_acc": float(np.mean(np.argmax(logits, -1) == y_fresh)),
               "test_nll": test_metrics["nll"], "test_marginal_nll": float(-np.mean(marginal)),
               "best_epoch": result.best_epoch, "train_s": result.train_s}
        summary["noise"][f"{noise:g}"]["runs"].append(row)
        runs.setdefault((noise, direction, distance), []).append(row)
    for noise in args.noise:
        entry = summary["noise"][f"{noise:g}"]
        entry["mean"] = [
            {"direction": u, "distance": d,
             **{f"{k}_{stat}": float(getattr(np, stat)([r[k] for r in runs[(noise, u, d)]]))
                for k in ("fresh_acc", "test_nll", "test_marginal_nll") for stat in ("mean", "std")}}
            for u in args.directions for d in args.distances
        ]
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_figures:
        save_moons_figure(args, summary)
    table = moons_table(args, summary)
    (args.out / "table.md").write_text(table)
    print("\n" + table)
    return summary


def moons_table(args, s: dict) -> str:
    lines = [f"Two moons, flow classifier with means at ±(d/2)·u; {s['epochs']} epochs, seeds {s['seeds']}; "
             f"accuracy on {s['n_fresh']:,} fresh points (%), test NLL −log p(x|y) and −log p(x) on the slides' "
             "1500 test points (nats), mean ± std.", ""]
    for noise, entry in s["noise"].items():
        lines += [f"noise {noise} (Bayes: {100 * entry['bayes_fresh_acc']:.2f} %; the true density's test NLL: "
                  f"{entry['true_test_nll']:.3f} for p(x|y), {entry['true_test_marginal_nll']:.3f} for p(x))", "",
                  "| direction | d | fresh acc (%) | test NLL p(x|y) | test NLL p(x) |", "|---|---|---|---|---|"]
        for m in entry["mean"]:
            lines.append(f"| {m['direction']} | {m['distance']:g} | {100 * m['fresh_acc_mean']:.2f} ± "
                         f"{100 * m['fresh_acc_std']:.2f} | {m['test_nll_mean']:.3f} ± {m['test_nll_std']:.3f} | "
                         f"{m['test_marginal_nll_mean']:.3f} ± {m['test_marginal_nll_std']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def save_moons_figure(args, s: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(args.noise), 3, figsize=(15, 4 * len(args.noise)), squeeze=False,
                             constrained_layout=True)
    for row, (noise, entry) in enumerate(s["noise"].items()):
        for direction in args.directions:
            points = [m for m in entry["mean"] if m["direction"] == direction]
            d = [m["distance"] for m in points]
            for col, (key, scale, label) in enumerate((("fresh_acc", 100, "fresh accuracy (%)"),
                                                        ("test_nll", 1, "test NLL −log p(x|y) (nats)"),
                                                        ("test_marginal_nll", 1, "test NLL −log p(x) (nats)"))):
                axes[row, col].errorbar(d, [scale * m[f"{key}_mean"] for m in points],
                                        yerr=[scale * m[f"{key}_std"] for m in points], marker="o", capsize=3,
                                        label=f"means along {direction}")
                axes[row, col].set_xscale("log", base=2)
                axes[row, col].set_xlabel("distance d between the means")
                axes[row, col].set_ylabel(label)
                axes[row, col].set_title(f"noise {noise}")
        axes[row, 0].axhline(100 * entry["bayes_fresh_acc"], color="k", linestyle=":", label="Bayes")
        axes[row, 1].axhline(entry["true_test_nll"], color="k", linestyle=":", label="true density")
        axes[row, 2].axhline(entry["true_test_marginal_nll"], color="k", linestyle=":", label="true density")
        for ax in axes[row]:
            ax.legend(fontsize=8)
    fig.suptitle(f"two moons: latent geometry, {len(s['seeds'])} seeds (mean ± std); the slides used d = 8 along x")
    fig.savefig(args.out / "geometry.png", dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------ MNIST


def variant_means(variant: str, dim: int, onehot_scale: float | None, seed: int) -> dict:
    """``image_realnvp`` keyword arguments for the class means of one variant (10 classes)."""
    import numpy as np

    if variant == "uniform01":
        return {"means": np.random.default_rng(seed).uniform(0.0, 1.0, (10, dim))}
    if variant == "normal":
        return {"means": "normal", "mean_scale": 1.0}
    if variant == "onehot":
        return {"means": "onehot", "mean_scale": (onehot_scale or math.sqrt(dim)) / math.sqrt(dim)}
    if variant == "learnable":
        return {"means": "normal", "mean_scale": 1.0, "trainable_means": True}
    return {"means": "normal", "mean_scale": float(variant[len("radius"):])}


def run_mnist(args) -> dict:
    import jax
    import numpy as np

    import flowclass as fc
    from flowclass.flows import image_realnvp
    from flowclass.generation import prototypes

    from mnist import image_augment, load_splits, optimizer

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_splits(args, bin_centred=True)
    dim = math.prod(x_train.shape[1:])
    augment = image_augment(args.shift, dequantise=True)
    loss_fn = fc.make_flow_loss(cross_entropy_weight=args.beta, nll_unit="bits_per_dim", num_bins=256)
    summary = {"dataset": "mnist", "time_budget_min": args.time_budget, "beta": args.beta, "variants": {},
               "args": {k: str(v) for k, v in vars(args).items()}}
    protos = {}
    for variant in args.variants:
        tx = optimizer(args, len(x_train))
        model = image_realnvp("fast", input_shape=x_train.shape[1:], num_classes=10,
                              **variant_means(variant, dim, args.onehot_scale, args.seed))
        key_init, key_fit = jax.random.split(jax.random.key(args.seed))
        state = fc.create_train_state(model, key_init, x_train[:512], tx, loss_fn)
        result = fc.fit(state, (x_train, y_train), (x_val, y_val), key=key_fit, epochs=args.epochs,
                        batch_size=args.batch_size, num_classes=10, augment=augment, select="accuracy",
                        eval_batch_size=500, time_budget_s=60 * args.time_budget, progress=not args.quiet,
                        desc=f"means {variant}")
        test = fc.evaluate(result.state, x_test, y_test, batch_size=500)
        means = np.asarray(model.apply(result.state.variables, method="class_means")).reshape(10, -1)
        gaps = np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(10, 1)]
        summary["variants"][variant] = {
            "test_acc": test["accuracy"], "test_bits_per_dim": test["bits_per_dim"],
            "mean_pairwise_distance": float(gaps.mean()), "min_pairwise_distance": float(gaps.min()),
            "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "train_s": result.train_s,
            "compile_s": result.compile_s, "train_images_per_s": result.train_samples_per_s,
        }
        protos[variant] = np.asarray(prototypes(model, result.state.variables))
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_figures:
        save_prototypes_figure(args, protos)
    table = mnist_table(summary)
    (args.out / "table.md").write_text(table)
    print("\n" + table)
    return summary


def mnist_table(s: dict) -> str:
    lines = [f"MNIST, fast image flow, {s['time_budget_min']:g} min per variant, β = {s['beta']:g}.", "",
             "| means | test acc (%) | bits/dim | mean / min distance between means | epochs | train s |",
             "|---|---|---|---|---|---|"]
    for name, m in s["variants"].items():
        lines.append(f"| {name} | {100 * m['test_acc']:.2f} | {m['test_bits_per_dim']:.3f} | "
                     f"{m['mean_pairwise_distance']:.1f} / {m['min_pairwise_distance']:.1f} | {m['epochs_run']} | "
                     f"{m['train_s']:.0f} |")
    return "\n".join(lines) + "\n"


def save_prototypes_figure(args, protos: dict) -> None:
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowclass.generation import image_grid

    fig, ax = plt.subplots(figsize=(8, 0.85 * len(protos) + 0.6), constrained_layout=True)
    ax.imshow(np.clip(image_grid(np.stack(list(protos.values()))), 0, 1), cmap="gray")
    ax.set_yticks([28 * i + 14 for i in range(len(protos))], list(protos))
    ax.set_xticks([28 * k + 14 for k in range(10)], [str(k) for k in range(10)])
    ax.set_title("prototypes f⁻¹(μ_k) by choice of means")
    fig.savefig(args.out / "prototypes.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.dataset == "mnist":
        from flowclass.runtime import use_fast_codegen, use_host_devices

        use_host_devices(args.host_devices)
        use_fast_codegen()  # XLA CPU flags measured in benchmarks/
    summary = run_mnist(args) if args.dataset == "mnist" else run_moons(args)
    summary["wall_s"] = time.perf_counter() - _START
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out / 'results.json'}; wall {summary['wall_s']:.1f} s", file=sys.stderr)
    return summary


if __name__ == "__main__":
    from flowclass.runtime import restart_with_tcmalloc

    restart_with_tcmalloc()  # XLA's per-step buffers: 1.5x faster image-flow steps than glibc malloc
    main()
