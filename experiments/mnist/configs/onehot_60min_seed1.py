"""One-hot means, a 60-minute budget, seed 1.

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 60 --model flow --config fast
--beta 1 --means onehot --epochs 80 --seed 1``.
"""

from flowclass.config import RunConfig, override

from . import onehot_60min


def get_config() -> RunConfig:
    return override(onehot_60min.get_config(), ["seed=1"])
