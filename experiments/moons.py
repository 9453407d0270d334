"""Two moons: a 5-coupling RealNVP classifier vs the slides' 3-layer FNN, against the Bayes limit.

    python experiments/moons.py --noise 0.5             # one seed, ~10 s on a 2-core CPU
    python experiments/moons.py --noise 0.25 --seeds 3  # mean ± std over seeds 0, 1, 2

Data as in the slides: ``make_moons(10000, noise, random_state=170)``, the first 8500
for training (10 % of them held out for model selection), the last 1500 for test.
Because 1500 points carry about ±0.6 % sampling error, both models and the Bayes-optimal
classifier are also scored on 200,000 fresh points (another random_state).
Writes ``results.json`` and figures to ``--out``.
"""

from __future__ import annotations

import time

_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import flowclass as fc  # noqa: E402
from flowclass.data import bayes_predict, make_moons, moons_splits, train_val_split  # noqa: E402

SLIDES_REPORTED = {  # test accuracy (%) on the 1500-point split, from the slides
    0.1: {"flow": 100.0, "fnn": 100.0},
    0.25: {"flow": 94.73, "fnn": 94.54},
    0.5: {"flow": 82.80, "fnn": 82.87},
}
QUADRATURE_NODES = 2048  # midpoint nodes for the true class densities (converged to 1e-3 in log p)
LATENT_MEANS = ((-4.0, 0.0), (4.0, 0.0))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--noise", type=float, default=0.5, help="make_moons noise (seed: 0.1, 0.25, 0.5)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate for both models")
    p.add_argument("--seed", type=int, default=0, help="first seed (initialisation and shuffling)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds; reports mean ± std")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of the 8500 held out for selection")
    p.add_argument("--fresh-size", type=int, default=200_000, help="size of the fresh test set")
    p.add_argument("--fresh-random-state", type=int, default=20_260_101)
    p.add_argument("--out", type=Path, default=None, help="output directory (default results/moons/noise<N>)")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.noise <= 0:
        p.error(f"--noise must be > 0 (the Bayes reference needs noise); got {args.noise}")
    if args.seeds < 1 or args.epochs < 1:
        p.error("--seeds and --epochs must be >= 1")
    if args.out is None:
        args.out = Path("results") / "moons" / f"noise{args.noise:g}"
    return args


def bayes_labels(x: np.ndarray, noise: float, cache: Path | None) -> np.ndarray:
    """Bayes-optimal labels, cached on disk (they depend only on the points and the noise)."""
    if cache is not None and cache.exists():
        return np.load(cache)
    labels = bayes_predict(x, noise, num_nodes=QUADRATURE_NODES)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, labels)
        os.replace(tmp, cache)  # atomic: never a half-written cache
    return labels


def train_model(name, model, loss_fn, train, val, args, seed):
    init_key, fit_key = jax.random.split(jax.random.key(seed))
    state = fc.create_train_state(model, init_key, train[0][:1], optax.adam(args.lr), loss_fn)
    return fc.fit(
        state, train, val, key=fit_key, epochs=args.epochs, batch_size=args.batch_size,
        num_classes=2, progress=not args.quiet, desc=f"{name} seed {seed}",
    )


def accuracy(result: fc.FitResult, x, y) -> float:
    logits = fc.predict_logits(result.state.apply_fn, result.state.variables, x)
    return float(np.mean(np.argmax(logits, -1) == y))


def summarize(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def main(argv=None) -> dict:
    args = parse_args(argv)
    (x_all, y_all), (x_test, y_test) = moons_splits(args.noise)
    x_fresh, y_fresh = make_moons(args.fresh_size, args.noise, args.fresh_random_state)
    cache_dir = Path(os.environ.get("FLOWCLASS_CACHE", Path.home() / ".cache" / "flowclass"))
    tag = f"noise{args.noise:g}"
    fresh_name = f"moons_bayes_{tag}_n{args.fresh_size}_rs{args.fresh_random_state}_q{QUADRATURE_NODES}.npy"
    fresh_cache = cache_dir / fresh_name
    bayes = {
        "test_acc": float(np.mean(bayes_labels(x_test, args.noise, None) == y_test)),
        "fresh_acc": float(np.mean(bayes_labels(x_fresh, args.noise, fresh_cache) == y_fresh)),
    }

    models = {
        "flow": (fc.tabular_realnvp(2, 2, num_couplings=5, hidden=(100, 100), means=LATENT_MEANS), fc.flow_nll),
        "fnn": (fc.FNN(num_classes=2, hidden=(100, 100)), fc.cross_entropy),
    }
    runs = {name: [] for name in models}
    results = {}
    for seed in range(args.seed, args.seed + args.seeds):
        train, val = train_val_split(x_all, y_all, val_fraction=args.val_fraction, seed=seed)
        for name, (model, loss_fn) in models.items():
            start = time.perf_counter()
            result = train_model(name, model, loss_fn, train, val, args, seed)
            runs[name].append({
                "seed": seed,
                "test_acc": accuracy(result, x_test, y_test),
                "fresh_acc": accuracy(result, x_fresh, y_fresh),
                "val_acc": float(result.history["val_accuracy"][result.best_epoch - 1]),
                "best_epoch": result.best_epoch,
                "compile_s": result.compile_s,
                "train_s": result.train_s,
                "fit_wall_s": time.perf_counter() - start,
                "train_samples_per_s": result.train_samples_per_s,
            })
            results[(name, seed)] = result

    summary = {"noise": args.noise, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
               "seeds": list(range(args.seed, args.seed + args.seeds)), "n_train": len(train[0]),
               "n_val": len(val[0]), "n_test": len(x_test), "n_fresh": args.fresh_size, "bayes": bayes}
    for name, per_seed in runs.items():
        summary[name] = {
            "test_acc": summarize([r["test_acc"] for r in per_seed])["mean"],
            "fresh_acc": summarize([r["fresh_acc"] for r in per_seed])["mean"],
            "test_acc_std": summarize([r["test_acc"] for r in per_seed])["std"],
            "fresh_acc_std": summarize([r["fresh_acc"] for r in per_seed])["std"],
            "gap_to_bayes_fresh_points": 100 * (bayes["fresh_acc"] - np.mean([r["fresh_acc"] for r in per_seed])),
            "train_samples_per_s": summarize([r["train_samples_per_s"] for r in per_seed])["mean"],
            "slides_reported_test_acc": SLIDES_REPORTED.get(args.noise, {}).get(name),
            "per_seed": per_seed,
        }

    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_figures:
        save_figures(args, results[("flow", args.seed)], results[("fnn", args.seed)], x_test, y_test, train)
    summary["wall_s"] = time.perf_counter() - _START
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_table(summary)
    print(f"wrote {args.out / 'results.json'}; wall {summary['wall_s']:.1f} s", file=sys.stderr)
    return summary


def print_table(s: dict) -> None:
    pct = lambda m, sd: f"{100 * m:6.2f} ± {100 * sd:4.2f}"  # noqa: E731
    print(f"\nmoons, noise {s['noise']:g}, {len(s['seeds'])} seed(s), {s['epochs']} epochs")
    print(f"{'model':6} | {'test 1500 (%)':>15} | {'seed reported':>13} | {'fresh 200k (%)':>15} | "
          f"{'gap to Bayes':>12} | {'train samples/s':>15}")
    for name in ("flow", "fnn"):
        m = s[name]
        reported = m["slides_reported_test_acc"]
        print(f"{name:6} | {pct(m['test_acc'], m['test_acc_std'])} | {reported if reported is not None else '-':>13} | "
              f"{pct(m['fresh_acc'], m['fresh_acc_std'])} | {m['gap_to_bayes_fresh_points']:+10.2f} pt | "
              f"{m['train_samples_per_s']:15,.0f}")
    b = s["bayes"]
    print(f"{'Bayes':6} | {100 * b['test_acc']:15.2f} | {'':13} | {100 * b['fresh_acc']:15.2f} |")


def save_figures(args, flow_result, fnn_result, x_test, y_test, train):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flowclass.plotting import plot_decision_regions, plot_latent

    def proba(result):
        return lambda pts: jax.nn.softmax(fc.predict_logits(result.state.apply_fn, result.state.variables, pts))

    def bayes_proba(pts):
        from flowclass.data import moons_class_log_density

        return jax.nn.softmax(moons_class_log_density(pts, args.noise))

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), constrained_layout=True)
    plot_decision_regions(axes[0], proba(flow_result), x_test, y_test, title="flow classifier")
    plot_decision_regions(axes[1], proba(fnn_result), x_test, y_test, title="FNN")
    plot_decision_regions(axes[2], bayes_proba, x_test, y_test, title="Bayes optimal")
    fig.suptitle(f"two moons, noise {args.noise:g}: p(class 1 | x) on the test split")
    fig.savefig(args.out / "decision_boundaries.png", dpi=110)

    state = flow_result.state
    z, _ = state.apply_fn(state.variables, train[0], method="encode")
    fig, ax = plt.subplots(figsize=(6, 5), constrained_layout=True)
    plot_latent(ax, np.asarray(z), train[1], LATENT_MEANS,
                title=f"training data in latent space (noise {args.noise:g})")
    fig.savefig(args.out / "latent_space.png", dpi=110)
    plt.close("all")


if __name__ == "__main__":
    main()
