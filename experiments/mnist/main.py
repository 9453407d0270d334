"""MNIST / Fashion-MNIST: an image flow classifier or the CNN baseline, one run per workdir.

    python -m experiments.mnist.main --config default --workdir results/mnist/default --data-dir DIR
    python -m experiments.mnist.main --config cnn --workdir results/mnist/cnn --data-dir DIR train.epochs=3

Configs are the modules of experiments/mnist/configs/ (one per row of experiments/mnist/README.md);
override any field as section.field=value. On a CPU, --host-devices N (default 1)
splits the host into N devices and shards each batch over them; the script also restarts itself
under tcmalloc when it is installed and sets the XLA CPU compiler options (flowclass.runtime).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> dict:
    from flowclass.runtime import configure_cpu

    argv = configure_cpu(sys.argv[1:] if argv is None else argv)  # before JAX starts its backends
    from flowclass import cli

    from . import train

    invocation = cli.parse(argv, description=__doc__, configs=f"{__package__}.configs")
    try:
        train.check_config(invocation.config)
    except ValueError as error:
        sys.exit(f"error: {error}")
    try:
        summary = train.train_and_evaluate(invocation.config, invocation.workdir, **invocation.options)
    except FileExistsError as error:  # flowclass.runs.RunExistsError: refused before any training
        sys.exit(f"error: {error}")
    print(train.table(summary, invocation.config_name))
    return summary


if __name__ == "__main__":
    from flowclass.runtime import restart_with_tcmalloc

    restart_with_tcmalloc()  # XLA's per-step buffers: 1.5x faster image-flow steps than glibc malloc
    main()
