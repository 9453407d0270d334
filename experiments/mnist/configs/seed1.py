"""The default with seed 1 (initialisation, shuffling and its own validation split).

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 20 --model flow --config fast
--beta 1 --epochs 27 --seed 1``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "seed=1",
    ])
