"""Semi-supervised FlowGMM: a flow classifier trained on a few labels plus unlabelled data (the
mixture marginal ``log p(x) = logsumexp_k log p(x, k)``) against the same flow on the labels alone.

    python -m experiments.semi_supervised.main --config moons_noise0p1 --workdir results/semi_supervised/moons_noise0p1

Two moons (10 labels, scored on fresh points against the Bayes-optimal classifier) and MNIST
(100 or 1,000 labels); the configs in ``configs/`` reproduce the rows of
``experiments/semi_supervised/README.md``.
"""
