"""MNIST and Fashion-MNIST: a normalizing-flow classifier (the fast or the multi-scale RealNVP)
against the CNN baseline: test accuracy, test bits/dim, class-conditional samples.

    python -m experiments.mnist.main --config default --workdir results/mnist/default --data-dir DIR

One run per invocation, in the workdir itself (``flowclass.load_run(workdir)`` reloads it); the
configs in ``configs/`` reproduce the rows of ``experiments/mnist/README.md``.
"""
