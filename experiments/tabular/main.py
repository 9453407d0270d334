"""The tabular benchmark: flowclass.sklearn.RealNVPClassifier against scikit-learn's classifiers,
novelty detectors and semi-supervised learners, on data that installs with scikit-learn.

    python -m experiments.tabular.main --config default --workdir results/tabular/default
    python -m experiments.tabular.main --config quick --workdir results/tabular/quick
    python -m experiments.tabular.main --config default tasks='("novelty",)' flow_steps=2000

Configs (configs/*.py): default (what experiments/tabular/README.md reports) and quick (a smoke
run). Override any field of configs.TabularConfig as field=value. Writes experiment.json, one
results file per task (results/<task>.json; --resume skips the tasks already there),
results.json, table.md (one table per task) and tabular.png.
"""

from __future__ import annotations

import sys

from flowclass import cli, runs

from . import train


def main(argv: list[str] | None = None) -> dict:
    invocation = cli.parse(argv, description=__doc__, configs=f"{__package__}.configs")
    try:
        summary = train.train_and_evaluate(invocation.config, invocation.workdir, **invocation.options)
    except (runs.RunExistsError, ValueError) as error:
        sys.exit(f"error: {error}")
    print((invocation.workdir / train.TABLE_FILE).read_text())
    print(f"wrote {invocation.workdir}: table.md, results.json, {train.FIGURE_FILE}; wall {summary['wall_s']:.1f} s",
          file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
