"""The multi-scale RealNVP (Dinh et al.; the slides' architecture), 10 epochs in a 60-minute budget.

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 60 --model flow --config seed
--beta 1 --epochs 10``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "model.preset=multiscale",
        "train.epochs=10",
        "train.time_budget_s=3600.0",
    ])
