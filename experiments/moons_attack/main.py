"""Attacks on two moons (confidence, class likelihood, latent), measured against the true data density.

    python -m experiments.moons_attack.main --config default --workdir results/moons_attack/default
    python -m experiments.moons_attack.main --config quick --workdir results/moons_attack/quick
    python -m experiments.moons_attack.main --config default grid=20 max_steps=200 fnn.train.epochs=50

Configs (configs/*.py): default (the study experiments/moons_attack/README.md reports) and quick (a
smoke run). Override any field as section.field=value: fnn.*, flow_classifier.* and
unconditional_flow.* are the three runs (flowclass.config.RunConfig; keep their data equal), seed,
grid, test_starts, max_steps, likelihood_steps, attack_lr, threshold and percentile the experiment's.
Writes experiment.json, one run per model (fnn/, flow_classifier/, unconditional_flow/),
results.json, table.md and the figures.
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
    print(f"wrote {invocation.workdir}: table.md, results.json, figures; wall {summary['wall_s']:.1f} s",
          file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
