"""Robust accuracy (FGSM, PGD, random search, sanity checks), likelihood detection, calibration and OOD
of finished MNIST / Fashion-MNIST runs.

    python -m experiments.robustness.main --config epochs12_cnn --workdir results/robustness/epochs12_cnn \\
        --data-dir DIR
    python -m experiments.robustness.main --config default "runs=('results/mnist/default', 'results/mnist/cnn')" \\
        ood=False eps=(0.01,0.1) num_attack=200

Configs (configs/*.py, one per row of experiments/robustness/README.md): default and epochs12_cnn.
Override any field as field=value: runs (workdirs of finished runs of python -m experiments.mnist.main),
eps, num_attack, steps, restarts, sanity_eps, sanity_size, queries, batch_size, seed, ood,
fashion_data_dir. --host-devices N (default 1) splits the CPU into N devices and
shards each attack batch over them. Writes experiment.json, results.json, table.md and the figures.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> dict:
    from flowclass.runtime import configure_cpu

    argv = configure_cpu(sys.argv[1:] if argv is None else argv)  # before JAX starts its backends
    from flowclass import cli, runs

    from . import train

    invocation = cli.parse(argv, description=__doc__, configs=f"{__package__}.configs")
    try:
        summary = train.train_and_evaluate(invocation.config, invocation.workdir, **invocation.options)
    except (runs.RunExistsError, FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    print((invocation.workdir / train.TABLE_FILE).read_text())
    print(f"wrote {invocation.workdir}: table.md, results.json, figures; wall {summary['wall_s']:.0f} s",
          file=sys.stderr)
    return summary


if __name__ == "__main__":
    from flowclass.runtime import restart_with_tcmalloc

    restart_with_tcmalloc()  # XLA's per-step buffers: 1.5x faster image-flow steps than glibc malloc
    main()
