"""The fast flow, β = 1, 12 epochs (20-minute budget).

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 20 --model flow --config fast
--beta 1 --epochs 12``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "train.epochs=12",
    ])
