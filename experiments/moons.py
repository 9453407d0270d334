"""Two moons: a 5-coupling RealNVP classifier vs the slides' 3-layer FNN, against the Bayes limit.

    python experiments/moons.py --noise 0.5             # one seed, ~10 s on a 2-core CPU
    python experiments/moons.py --noise 0.25 --seeds 3  # mean ± std over seeds 0, 1, 2

The command users were given, kept as a thin entry over the package experiments/moons/ (run that
as ``python -m experiments.moons.main --config noise0p5``; see experiments/moons/README.md): the
flags below set the fields of its default config, and the same ``train_and_evaluate`` runs.
Data as in the slides: ``make_moons(10000, noise, random_state=170)``, the first 8500 for
training (10 % of them held out for model selection), the last 1500 for test; both models and
the Bayes-optimal classifier are also scored on 200,000 fresh points (another random_state).
Writes ``results.json``, the runs and the figures to ``--out``, replacing what an earlier run
left there (``--resume`` continues it instead).
"""

from __future__ import annotations

import time

_START = time.perf_counter()  # the wall time printed counts the imports, as it always has

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# the package experiments/moons/ (this file's directory is sys.path[0], and a package wins over a module)
from moons import train  # noqa: E402
from moons.configs import MoonsConfig, default  # noqa: E402

from flowclass.cli import check_writable  # noqa: E402

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
    for flag in ("epochs", "batch_size", "seeds", "fresh_size"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1; got {getattr(args, flag)}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0; got {args.seed}")
    if not args.lr > 0:
        p.error(f"--lr must be > 0; got {args.lr}")
    if not 0 < args.val_fraction < 1:
        p.error(f"--val-fraction must be in (0, 1); got {args.val_fraction}")
    if args.out is None:
        args.out = Path("results") / "moons" / f"noise{args.noise:g}"
    try:
        args.config = config_from_flags(args)
        check_writable(args.out)
    except (ValueError, TypeError, OSError) as error:
        p.error(str(error).replace("--workdir", "--out"))
    return args


def config_from_flags(args: argparse.Namespace) -> MoonsConfig:
    """The package's default config with the flags' values."""
    base = default.get_config()

    def run(config):
        return dataclasses.replace(
            config,
            data=dataclasses.replace(config.data, noise=args.noise, val_size=round(args.val_fraction * N_TRAIN)),
            train=dataclasses.replace(config.train, epochs=args.epochs, batch_size=args.batch_size),
            optim=dataclasses.replace(config.optim, learning_rate=args.lr),
        )

    return dataclasses.replace(base, flow=run(base.flow), fnn=run(base.fnn),
                               seeds=tuple(range(args.seed, args.seed + args.seeds)),
                               fresh_size=args.fresh_size, fresh_random_state=args.fresh_random_state)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    summary = train.train_and_evaluate(args.config, args.out, resume=args.resume, overwrite=not args.resume,
                                       progress=not args.quiet, figures=not args.no_figures)
    print(train.table(summary))
    print(f"wrote {args.out / 'results.json'}; wall {time.perf_counter() - _START:.1f} s", file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
