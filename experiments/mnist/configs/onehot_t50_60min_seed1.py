"""One-hot means, posterior temperature 50, a 60-minute budget, seed 1.

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 60 --model flow --config fast
--beta 1 --means onehot --ce-temperature 50 --epochs 80 --seed 1``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "model.means=onehot",
        "loss.posterior_temperature=50.0",
        "train.epochs=80",
        "train.time_budget_s=3600.0",
        "seed=1",
    ])
