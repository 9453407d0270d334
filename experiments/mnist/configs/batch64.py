"""The fast flow at batch 64, 21 epochs (20-minute budget).

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 20 --model flow --config fast
--beta 1 --batch-size 64 --epochs 21``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "train.batch_size=64",
        "train.epochs=21",
    ])
