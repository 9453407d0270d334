"""Fashion-MNIST: the fast flow, β = 1, 12 epochs.

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 20 --model flow --config fast
--dataset fashion_mnist --beta 1 --epochs 12``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "data.dataset=fashion_mnist",
        "train.epochs=12",
    ])
