"""The fast flow, β = 10, 12 epochs.

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 20 --model flow --config fast
--beta 10 --epochs 12``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "loss.cross_entropy_weight=10.0",
        "train.epochs=12",
    ])
