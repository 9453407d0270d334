"""The fast flow, β = 1, 24 epochs (20-minute budget).

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 20 --model flow --config fast
--beta 1 --epochs 24``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "train.epochs=24",
    ])
