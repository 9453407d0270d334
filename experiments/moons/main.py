"""Two moons: the slides' flow classifier vs their FNN, against the exact Bayes-optimal classifier.

    python -m experiments.moons.main --config noise0p5 --workdir results/moons/noise0p5
    python -m experiments.moons.main --config default flow.train.epochs=50 fnn.train.epochs=50 seeds=(0,1)

Configs (configs/*.py, one per row of experiments/moons/README.md): default (noise 0.5, one seed),
noise0p1, noise0p25, noise0p5 (three seeds each). Override any field as section.field=value:
flow.* and fnn.* are the two runs (flowclass.config.RunConfig; keep flow.data and fnn.data equal),
seeds, fresh_size and fresh_random_state the experiment's. Writes experiment.json, one run per model
and seed (seed<s>/flow, seed<s>/fnn), results.json, decision_boundaries.png and latent_space.png.
"""

from __future__ import annotations

import sys

from flowclass import cli, runs

from . import train


def main(argv: list[str] | None = None) -> dict:
    invocation = cli.parse(argv, description=__doc__, configs=f"{__package__}.configs")
    try:
        summary = train.train_and_evaluate(invocation.config, invocation.workdir, **invocation.options)
    except runs.RunExistsError as error:
        sys.exit(f"error: {error}")
    print(train.table(summary))
    print(f"wrote {invocation.workdir / runs.RESULTS_FILE}; wall {summary['wall_s']:.1f} s", file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
