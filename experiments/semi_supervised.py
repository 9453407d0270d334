"""Semi-supervised FlowGMM: a few labels plus unlabelled data vs the same flow on the labels alone.

    python experiments/semi_supervised.py                                  # moons, noise 0.1 and 0.25, 10 labels
    python experiments/semi_supervised.py --noise 0.25 --seeds 3 --trainable-means --covariance class_diagonal
    python experiments/semi_supervised.py --dataset mnist --labels 100 --time-budget 20 --data-dir DIR

Both models are the same flow with the same loss, :func:`flowclass.losses.make_semi_supervised_loss`
(labelled examples by ``−log p(x, y)``, unlabelled ones, label ``-1``, by ``−λ log p(x)``); the
baseline sees only the labelled examples. A balanced labelled subset (``--labels``, chosen by
seed) is repeated so that it makes up ``--labelled-share`` of the training rows; the baseline
trains on those repeated rows for as many steps (moons) or as long (MNIST) as the
semi-supervised model. Model selection uses no labels: the lowest marginal NLL ``−log p(x)``
on held-out unlabelled examples.

Moons: the slides' 8500 training points (10 % held out, unlabelled, for selection), scored on
200,000 fresh points against the Bayes-optimal accuracy, as in ``experiments/moons.py``.
MNIST: the fast image flow; 5,000 held-out training images (labels hidden) for selection;
test accuracy and bits/dim; figures of class prototypes ``f⁻¹(μ_k)`` and latent interpolations.
Writes ``results.json``, ``table.md`` and figures to ``--out``.
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

LATENT_MEANS = ((-4.0, 0.0), (4.0, 0.0))
QUADRATURE_NODES = 2048  # as experiments/moons.py, whose Bayes-label cache this shares


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("moons", "mnist"), default="moons")
    p.add_argument("--labels", type=int, default=None, help="labelled examples, balanced over classes "
                   "(default: 10 for moons, 100 for MNIST)")
    p.add_argument("--seed", type=int, default=0, help="first seed (labelled subset, initialisation, shuffling)")
    p.add_argument("--seeds", type=int, default=3, help="moons: number of seeds")
    p.add_argument("--unlabelled-weight", type=float, default=1.0, help="λ, the weight of −log p(x) of unlabelled data")
    p.add_argument("--beta", type=float, default=None, help="weight of the labelled posterior cross-entropy "
                   "(default: 0 for moons, 3 for MNIST, with the NLL in bits/dim as in experiments/mnist.py)")
    p.add_argument("--labelled-share", type=float, default=0.1, help="share of training rows that are (repeated) "
                   "labelled examples")
    p.add_argument("--trainable-means", action="store_true", help="learn the class means")
    p.add_argument("--covariance", choices=("identity", "diagonal", "class_diagonal"), default="identity")
    p.add_argument("--trainable-weights", action="store_true", help="learn the class weights π_k")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (MNIST: peak of warm-up + cosine)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=None, help="semi-supervised epochs (default 100 for moons; for "
                   "MNIST, the length of the learning-rate schedule, 10)")
    moons = p.add_argument_group("moons")
    moons.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.25])
    moons.add_argument("--val-fraction", type=float, default=0.1)
    moons.add_argument("--fresh-size", type=int, default=200_000)
    moons.add_argument("--fresh-random-state", type=int, default=20_260_101)
    mnist = p.add_argument_group("mnist")
    mnist.add_argument("--data-dir", default=None, help="directory with IDX files or mnist.pkl.gz")
    mnist.add_argument("--time-budget", type=float, default=10.0, metavar="MIN", help="minutes for each model")
    mnist.add_argument("--val-size", type=int, default=5000)
    mnist.add_argument("--shift", type=int, default=2, help="random translation augmentation, in pixels")
    mnist.add_argument("--train-subset", type=int, default=None, help="use only this many training images (smoke)")
    mnist.add_argument("--test-subset", type=int, default=None, help="score only this many test images (smoke)")
    mnist.add_argument("--host-devices", type=int, default=min(os.cpu_count() or 1, 8),
                       help="on CPU, split the host into this many devices and shard each batch over them")
    p.add_argument("--out", type=Path, default=None, help="output directory (default results/semi_supervised/...)")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    mnist_mode = args.dataset == "mnist"
    args.labels = args.labels if args.labels is not None else (100 if mnist_mode else 10)
    args.beta = args.beta if args.beta is not None else (3.0 if mnist_mode else 0.0)
    args.epochs = args.epochs if args.epochs is not None else (10 if mnist_mode else 100)
    if not 0.0 < args.labelled_share < 1.0:
        p.error(f"--labelled-share must be in (0, 1); got {args.labelled_share}")
    if args.seeds < 1 or args.epochs < 1:
        p.error("--seeds and --epochs must be >= 1")
    if args.out is None:
        args.out = Path("results") / "semi_supervised" / f"{args.dataset}-labels{args.labels}"
    return args


def repeats_for(n_labelled: int, n_unlabelled: int, share: float) -> int:
    """How often to repeat the labelled rows so they make up about ``share`` of all rows."""
    return max(1, round(share * n_unlabelled / ((1.0 - share) * n_labelled)))


def training_sets(x, y, keep, unlabelled, share: float):
    """``(repeats, {"semi_supervised": (x, y), "labelled_only": (x, y)})``: the labelled rows ``keep``
    repeated to about ``share`` of the semi-supervised set, the ``unlabelled`` rows labelled -1."""
    import numpy as np

    from flowclass.data.labels import UNLABELLED

    reps = repeats_for(len(keep), len(unlabelled), share)
    x_lab, y_lab = np.repeat(x[keep], reps, axis=0), np.repeat(y[keep], reps, axis=0)
    return reps, {
        "semi_supervised": (np.concatenate([x_lab, x[unlabelled]]),
                            np.concatenate([y_lab, np.full(len(unlabelled), UNLABELLED, np.int32)])),
        "labelled_only": (x_lab, y_lab),
    }


def make_loss(args, *, image: bool):
    from flowclass.losses import make_semi_supervised_loss

    return make_semi_supervised_loss(
        unlabelled_weight=args.unlabelled_weight, cross_entropy_weight=args.beta,
        nll_unit="bits_per_dim" if image else "nats", num_bins=256 if image else None,
    )


def base_options(args) -> dict:
    return {"trainable_means": args.trainable_means, "covariance": args.covariance,
            "trainable_weights": args.trainable_weights}


def summarize(values) -> dict:
    import numpy as np

    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


# ------------------------------------------------------------------------------------ moons


def run_moons(args) -> dict:
    import jax
    import numpy as np
    import optax

    import flowclass as fc
    from flowclass.data import bayes_predict, make_moons, moons_splits
    from flowclass.data.labels import UNLABELLED, balanced_label_subset

    summary = {"dataset": "moons", "labels": args.labels, "epochs": args.epochs, "lr": args.lr,
               "batch_size": args.batch_size, "unlabelled_weight": args.unlabelled_weight, "beta": args.beta,
               "labelled_share": args.labelled_share, "base": base_options(args),
               "seeds": list(range(args.seed, args.seed + args.seeds)), "n_fresh": args.fresh_size, "noise": {}}
    figures = {}
    cache_dir = Path(os.environ.get("FLOWCLASS_CACHE", Path.home() / ".cache" / "flowclass"))
    for noise in args.noise:
        (x, y), _ = moons_splits(noise)
        x_fresh, y_fresh = make_moons(args.fresh_size, noise, args.fresh_random_state)
        cache = cache_dir / (f"moons_bayes_noise{noise:g}_n{args.fresh_size}_rs{args.fresh_random_state}"
                             f"_q{QUADRATURE_NODES}.npy")
        bayes_fresh = np.load(cache) if cache.exists() else bayes_predict(x_fresh, noise, num_nodes=QUADRATURE_NODES)
        runs = {"semi_supervised": [], "labelled_only": []}
        for seed in summary["seeds"]:
            keep = balanced_label_subset(y, args.labels, seed=seed)
            rest = np.random.default_rng(seed).permutation(np.setdiff1d(np.arange(len(y)), keep))
            n_val = int(round(args.val_fraction * len(rest)))
            val = (x[rest[:n_val]], np.full(n_val, UNLABELLED, np.int32))  # selection sees no labels
            unlabelled = rest[n_val:]
            reps, trains = training_sets(x, y, keep, unlabelled, args.labelled_share)
            steps = args.epochs * (len(trains["semi_supervised"][0]) // args.batch_size)
            for name, train in trains.items():
                epochs = math.ceil(steps / (len(train[0]) // args.batch_size))  # equal optimiser steps
                model = fc.tabular_realnvp(2, 2, num_couplings=5, hidden=(100, 100), means=LATENT_MEANS,
                                           **base_options(args))
                init_key, fit_key = jax.random.split(jax.random.key(seed))
                state = fc.create_train_state(model, init_key, x[:1], optax.adam(args.lr), make_loss(args, image=False))
                result = fc.fit(state, train, val, key=fit_key, epochs=epochs, batch_size=args.batch_size,
                                num_classes=2, allow_unlabelled=True, progress=not args.quiet,
                                desc=f"noise {noise:g} {name} seed {seed}")
                logits = fc.predict_logits(result.state.apply_fn, result.state.variables, x_fresh)
                runs[name].append({
                    "seed": seed, "fresh_acc": float(np.mean(np.argmax(logits, -1) == y_fresh)),
                    "best_epoch": result.best_epoch, "epochs": epochs,
                    "val_marginal_nll": float(result.history["val_marginal_nll"][result.best_epoch - 1]),
                    "train_s": result.train_s, "labelled_rows": len(trains["labelled_only"][0]),
                    "train_rows": len(train[0]),
                })
                if seed == args.seed:
                    figures[(noise, name)] = (result.state, x[keep], y[keep])
        entry = {"bayes_fresh_acc": float(np.mean(bayes_fresh == y_fresh))}
        for name, per_seed in runs.items():
            acc = summarize([r["fresh_acc"] for r in per_seed])
            entry[name] = {"fresh_acc": acc["mean"], "fresh_acc_std": acc["std"], "per_seed": per_seed}
        entry["gain_points"] = 100 * (entry["semi_supervised"]["fresh_acc"] - entry["labelled_only"]["fresh_acc"])
        summary["noise"][f"{noise:g}"] = entry
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_figures:
        save_moons_figure(args, figures)
    table = moons_table(summary)
    (args.out / "table.md").write_text(table)
    print("\n" + table)
    return summary


def moons_table(s: dict) -> str:
    pct = lambda m, sd: f"{100 * m:.2f} ± {100 * sd:.2f}"  # noqa: E731
    lines = [f"Two moons, {s['labels']} labels (balanced), the rest of the 8500 unlabelled; accuracy (%) on "
             f"{s['n_fresh']:,} fresh points, mean ± std over seeds {s['seeds']}; base {s['base']}.", "",
             "| noise | semi-supervised | labelled only | gain (points) | Bayes |", "|---|---|---|---|---|"]
    for noise, e in s["noise"].items():
        ssl, lab = e["semi_supervised"], e["labelled_only"]
        lines.append(f"| {noise} | {pct(ssl['fresh_acc'], ssl['fresh_acc_std'])} | "
                     f"{pct(lab['fresh_acc'], lab['fresh_acc_std'])} | {e['gain_points']:+.2f} | "
                     f"{100 * e['bayes_fresh_acc']:.2f} |")
    return "\n".join(lines) + "\n"


def save_moons_figure(args, figures) -> None:
    import jax
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import flowclass as fc
    from flowclass.data import make_moons
    from flowclass.plotting import plot_decision_regions

    names = ("semi_supervised", "labelled_only")
    fig, axes = plt.subplots(len(args.noise), 2, figsize=(11, 4.3 * len(args.noise)), squeeze=False,
                             constrained_layout=True)
    for row, noise in enumerate(args.noise):
        x_show, y_show = make_moons(1500, noise, 1)
        for col, name in enumerate(names):
            state, x_lab, y_lab = figures[(noise, name)]
            proba = lambda pts, s=state: jax.nn.softmax(fc.predict_logits(s.apply_fn, s.variables, pts))  # noqa: E731
            ax = axes[row, col]
            plot_decision_regions(ax, proba, x_show, y_show, title=f"noise {noise:g}: {name.replace('_', ' ')}")
            ax.scatter(x_lab[:, 0], x_lab[:, 1], c=np.where(y_lab == 0, "tab:blue", "tab:orange"), s=140, marker="*",
                       edgecolors="k", linewidths=1.0, label="labelled", zorder=5)
            ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"{args.labels} labels (stars), decision boundary p = 0.5 (black); seed {args.seed}")
    fig.savefig(args.out / "decision_boundaries.png", dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------ MNIST


def run_mnist(args) -> dict:
    import jax
    import numpy as np

    import flowclass as fc
    from flowclass.data.labels import UNLABELLED, balanced_label_subset
    from flowclass.flows import image_realnvp

    from mnist import image_augment, load_splits, optimizer

    (x_train, y_train), (x_val, _), (x_test, y_test) = load_splits(args, bin_centred=True)
    val = (x_val, np.full(len(x_val), UNLABELLED, np.int32))  # selection sees no labels
    keep = balanced_label_subset(y_train, args.labels, seed=args.seed, num_classes=10)
    unlabelled = np.setdiff1d(np.arange(len(x_train)), keep)
    reps, trains = training_sets(x_train, y_train, keep, unlabelled, args.labelled_share)
    augment = image_augment(args.shift, dequantise=True)
    total_steps = max(1, args.epochs * (len(trains["semi_supervised"][0]) // args.batch_size))  # both models
    print(f"mnist: {args.labels} labels x {reps} repeats, {len(unlabelled)} unlabelled, {len(x_val)} val "
          f"(unlabelled), {len(x_test)} test; {jax.device_count()} device(s)", file=sys.stderr)

    summary = {"dataset": "mnist", "labels": args.labels, "labelled_repeats": reps,
               "n_unlabelled": len(unlabelled), "time_budget_min": args.time_budget, "beta": args.beta,
               "unlabelled_weight": args.unlabelled_weight, "base": base_options(args), "models": {},
               "args": {k: str(v) for k, v in vars(args).items()}}
    states = {}
    for name, train in trains.items():
        steps_per_epoch = len(train[0]) // args.batch_size
        tx = optimizer(args, len(trains["semi_supervised"][0]))
        model = image_realnvp("fast", input_shape=x_train.shape[1:], num_classes=10, **base_options(args))
        key_init, key_fit = jax.random.split(jax.random.key(args.seed))
        state = fc.create_train_state(model, key_init, x_train[:512], tx, make_loss(args, image=True))
        result = fc.fit(state, train, val, key=key_fit, epochs=math.ceil(total_steps / steps_per_epoch),
                        batch_size=args.batch_size, num_classes=10, augment=augment, eval_batch_size=500,
                        time_budget_s=60 * args.time_budget, allow_unlabelled=True, progress=not args.quiet,
                        desc=f"mnist {args.labels} labels: {name}")
        test = fc.evaluate(result.state, x_test, y_test, batch_size=500)
        summary["models"][name] = {
            "test_acc": test["accuracy"], "test_bits_per_dim": test["bits_per_dim"],
            "test_marginal_bits_per_dim": test["marginal_bits_per_dim"], "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run, "steps": int(result.last_state.step), "train_s": result.train_s,
            "compile_s": result.compile_s, "train_images_per_s": result.train_samples_per_s,
        }
        states[name] = (model, result.state)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_figures:
        save_generation_figures(args, states, x_test, y_test)
    table = mnist_table(summary)
    (args.out / "table.md").write_text(table)
    print("\n" + table)
    return summary


def mnist_table(s: dict) -> str:
    lines = [f"MNIST, {s['labels']} labels (balanced), {s['n_unlabelled']:,} unlabelled; fast image flow, "
             f"{s['time_budget_min']:g} min per model; base {s['base']}.", "",
             "| model | test acc (%) | bits/dim p(x|y) | bits/dim p(x) | epochs | steps | train s |",
             "|---|---|---|---|---|---|---|"]
    for name, m in s["models"].items():
        lines.append(f"| {name.replace('_', ' ')} | {100 * m['test_acc']:.2f} | {m['test_bits_per_dim']:.3f} | "
                     f"{m['test_marginal_bits_per_dim']:.3f} | {m['epochs_run']} | {m['steps']} | "
                     f"{m['train_s']:.0f} |")
    return "\n".join(lines) + "\n"


def save_generation_figures(args, states, x_test, y_test) -> None:
    import jax
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowclass.generation import class_samples, image_grid, interpolate, prototypes

    pairs = [(int(np.flatnonzero(y_test == a)[0]), int(np.flatnonzero(y_test == b)[0]))
             for a, b in ((0, 6), (1, 7), (3, 8), (4, 9), (2, 5)) if np.any(y_test == a) and np.any(y_test == b)]
    for name, (model, state) in states.items():
        v = state.variables
        rows = [np.asarray(prototypes(model, v))[None]]
        rows.append(np.asarray(class_samples(model, v, jax.random.key(args.seed), 6, temperature=0.7)).swapaxes(0, 1))
        fig, ax = plt.subplots(figsize=(8, 6), constrained_layout=True)
        ax.imshow(np.clip(image_grid(np.concatenate(rows)), 0, 1), cmap="gray")
        ax.set_axis_off()
        ax.set_title(f"{name.replace('_', ' ')}: top row prototypes f⁻¹(μ_k), k = 0..9; below, samples at T = 0.7")
        fig.savefig(args.out / f"prototypes_{name}.png", dpi=110)
        if pairs:
            a, b = (np.stack([x_test[i] for i in idx]) for idx in zip(*pairs, strict=True))
            path = np.asarray(interpolate(model, v, a, b, 10))
            fig, ax = plt.subplots(figsize=(8, 0.9 * len(pairs) + 0.6), constrained_layout=True)
            ax.imshow(np.clip(image_grid(path), 0, 1), cmap="gray")
            ax.set_axis_off()
            ax.set_title(f"{name.replace('_', ' ')}: latent interpolations between test images")
            fig.savefig(args.out / f"interpolations_{name}.png", dpi=110)
        plt.close("all")


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
