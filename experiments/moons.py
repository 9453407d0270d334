"""Two moons: a 5-coupling RealNVP classifier vs the slides' 3-layer FNN, against the Bayes limit.

    python experiments/moons.py --noise 0.5             # one seed, ~10 s on a 2-core CPU
    python experiments/moons.py --noise 0.25 --seeds 3  # mean ± std over seeds 0, 1, 2

The command users were given, kept as a thin entry: it translates the flags below into overrides of
the default config of the package experiments/moons/ and hands over to that package's own entry,
``python -m experiments.moons.main`` (run from the repository root; see experiments/moons/README.md).
Data as in the slides: ``make_moons(10000, noise, random_state=170)``, the first 8500 for
training (10 % of them held out for model selection), the last 1500 for test; both models and
the Bayes-optimal classifier are also scored on 200,000 fresh points (another random_state).
Writes ``results.json``, the runs and the figures to ``--out``, replacing what an earlier run
left there (``--resume`` continues it instead).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN = 8500  # the slides' training points, of which --val-fraction are held out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--noise", type=float, default=0.5, help="make_moons noise (the slides: 0.1, 0.25, 0.5)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate for both models")
    p.add_argument("--seed", type=int, default=0, help="first seed (initialisation and shuffling)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds; reports mean ± std")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of the 8500 held out for selection")
    p.add_argument("--fresh-size", type=int, default=200_000, help="size of the fresh test set")
    p.add_argument("--fresh-random-state", type=int, default=20_260_101)
    p.add_argument("--out", type=Path, default=None, help="output directory (default results/moons/noise<N>)")
    p.add_argument("--resume", action="store_true", help="continue the experiment in --out instead of replacing it")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if not args.noise > 0:
        p.error(f"--noise must be > 0 (the Bayes reference needs noise); got {args.noise}")
    if not 0 < args.val_fraction < 1:
        p.error(f"--val-fraction must be in (0, 1); got {args.val_fraction}")
    if args.out is None:
        args.out = Path("results") / "moons" / f"noise{args.noise:g}"
    return args


def package_argv(args: argparse.Namespace) -> list[str]:
    """The arguments of ``python -m experiments.moons.main`` that run what the flags ask for; the
    package validates every value (errors name the config field) before any training."""
    overrides = [f"seeds={tuple(range(args.seed, args.seed + args.seeds))}", f"fresh_size={args.fresh_size}",
                 f"fresh_random_state={args.fresh_random_state}"]
    for run in ("flow", "fnn"):
        overrides += [f"{run}.data.noise={args.noise}", f"{run}.data.val_size={round(args.val_fraction * N_TRAIN)}",
                      f"{run}.train.epochs={args.epochs}", f"{run}.train.batch_size={args.batch_size}",
                      f"{run}.optim.learning_rate={args.lr}"]
    flags = ["--config", "default", "--workdir", str(args.out.absolute()), "--resume" if args.resume else "--overwrite"]
    flags += ["--quiet"] * args.quiet + ["--no-figures"] * args.no_figures
    return [*flags, *overrides]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.chdir(ROOT)  # python -m finds the experiments package from the repository root; --out is absolute
    os.execv(sys.executable, [sys.executable, "-m", "experiments.moons.main", *package_argv(args)])


if __name__ == "__main__":
    main()
