"""One-hot means twice as far apart.

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 20 --model flow --config fast
--beta 1 --means onehot --mean-scale 2 --epochs 27``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "model.means=onehot",
        "model.mean_scale=2.0",
    ])
