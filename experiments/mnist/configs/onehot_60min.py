"""One-hot means, a 60-minute budget (80 epochs scheduled).

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 60 --model flow --config fast
--beta 1 --means onehot --epochs 80``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "model.means=onehot",
        "train.epochs=80",
        "train.time_budget_s=3600.0",
    ])
