"""Semi-supervised FlowGMM vs the same flow on the labels alone, on two moons or MNIST.

    python -m experiments.semi_supervised.main --config moons_noise0p1 --workdir results/semi_supervised/moons_noise0p1
    python -m experiments.semi_supervised.main --config mnist_100labels --data-dir DIR \
        --workdir results/semi_supervised/mnist_100labels

Configs are the modules of experiments/semi_supervised/configs/ (one per row of its README.md);
override any field as field=value or run.section.field=value (e.g. num_seeds=3
run.data.noise=0.25). --host-devices N (default 1) splits a CPU into N devices and shards each
batch over them; the script also restarts itself under tcmalloc when it is installed and sets the
XLA CPU compiler options (flowclass.runtime.configure_cpu, as the MNIST experiment).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> dict:
    from flowclass.runtime import configure_cpu

    argv = configure_cpu(sys.argv[1:] if argv is None else argv)  # before JAX starts its backends
    from flowclass import cli

    invocation = cli.parse(argv, description=__doc__, configs=f"{__package__}.configs")
    from . import train

    try:
        summary = train.train_and_evaluate(invocation.config, invocation.workdir, **invocation.options)
    except FileExistsError as error:  # flowclass.runs.RunExistsError: refused before any training
        sys.exit(f"error: {error}")
    print(train.table(summary))
    return summary


if __name__ == "__main__":
    from flowclass.runtime import restart_with_tcmalloc

    restart_with_tcmalloc()  # XLA's per-step buffers: 1.5x faster image-flow steps than glibc malloc
    main()
