"""Semi-supervised FlowGMM vs the same flow on the labels alone, on two moons or MNIST.

    python -m experiments.semi_supervised.main --config moons_noise0p1 --workdir results/semi_supervised/moons_noise0p1
    python -m experiments.semi_supervised.main --config mnist_100labels --data-dir DIR \
        --workdir results/semi_supervised/mnist_100labels

Configs are the modules of experiments/semi_supervised/configs/ (one per row of its README.md);
override any field as field=value or run.section.field=value (e.g. num_seeds=3
run.data.noise=0.25). On MNIST, --host-devices N (default 1) splits a CPU
into N devices and shards each batch over them; the script also restarts itself under tcmalloc
when it is installed and sets the XLA CPU compiler options (flowclass.runtime).
"""

from __future__ import annotations

import argparse
import sys

from flowclass.runtime import DEFAULT_HOST_DEVICES


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host-devices", type=int, default=DEFAULT_HOST_DEVICES)
    known, argv = parser.parse_known_args(sys.argv[1:] if argv is None else list(argv))
    from flowclass import cli

    invocation = cli.parse(argv, description=__doc__, configs=f"{__package__}.configs")
    if invocation.config.run.data.dataset != "moons":  # before JAX starts its backends (it reads XLA_FLAGS then)
        if known.host_devices < 1:
            sys.exit(f"error: --host-devices must be >= 1; got {known.host_devices}")
        from flowclass.runtime import use_fast_codegen, use_host_devices

        use_host_devices(known.host_devices)
        use_fast_codegen()  # XLA CPU flags measured in benchmarks/
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
