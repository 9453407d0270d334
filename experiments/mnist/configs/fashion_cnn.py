"""The CNN baseline on Fashion-MNIST, 10 epochs.

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 20 --dataset fashion_mnist --model cnn
--epochs 10``.
"""

from flowclass.config import RunConfig, override

from . import cnn


def get_config() -> RunConfig:
    return override(cnn.get_config(), [
        "data.dataset=fashion_mnist",
    ])
