"""The README's robustness table: the fast flow with β = 1 after 12 epochs (``experiments.mnist``
config ``epochs12``, 99.07 % test accuracy) and the CNN (config ``cnn``), with the Fashion-MNIST
runs ``fashion_epochs12`` and ``fashion_cnn`` for out-of-distribution detection both ways;
ε from half a grey level (0.002) to 0.3.

Measured (1,071 s on the README's 2-core CPU) with the former
``python experiments/robustness.py --data-dir DIR --flow-run RUNS/mnist-flow --cnn-run RUNS/mnist-cnn
--fashion-flow-run RUNS/fashion-flow --fashion-cnn-run RUNS/fashion-cnn
--eps 0.002 0.005 0.01 0.02 0.05 0.1 0.2 0.3`` on runs of the former ``experiments/mnist.py``
with these settings; the other settings are the defaults of both. Train the runs first:

    python -m experiments.mnist.main --config epochs12 --data-dir DIR     # and cnn, fashion_epochs12, fashion_cnn
"""

from . import RobustnessConfig


def get_config() -> RobustnessConfig:
    return RobustnessConfig(
        runs=("results/mnist/epochs12", "results/mnist/cnn", "results/mnist/fashion_epochs12",
              "results/mnist/fashion_cnn"),
        eps=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3),
    )
