"""One-hot means, posterior temperature 50, a 60-minute budget, seed 1.

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 60 --model flow --config fast
--beta 1 --means onehot --ce-temperature 50 --epochs 80 --seed 1``.
"""

from flowclass.config import RunConfig, override

from . import onehot_t50_60min


def get_config() -> RunConfig:
    return override(onehot_t50_60min.get_config(), ["seed=1"])
