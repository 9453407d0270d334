"""Where to put the class means: the moons flow with its means at ±(d/2) u, for distances d and directions u.

    python -m experiments.geometry.main --config default --workdir results/geometry/default
    python -m experiments.geometry.main --config default run.data.noise=0.1 seeds=(0,1,2,3,4)

Configs (configs/*.py, one per result in experiments/geometry/README.md): default (noise 0.25,
d in 0.5 ... 16 along x, y and the diagonal, seeds 0, 1, 2). Override any field as
section.field=value: run.* is the flow every placement trains (flowclass.config.RunConfig),
distances, directions, seeds, fresh_size and fresh_random_state the sweep's. Writes
experiment.json, one run per placement and seed (<direction>_d<d>/seed<s>), results.json,
table.md and geometry.png.
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
    print("\n" + train.table(summary))
    print(f"wrote {invocation.workdir / runs.RESULTS_FILE}; wall {summary['wall_s']:.1f} s", file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
