"""One-hot means, peak learning rate 2e-3.

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 20 --model flow --config fast
--beta 1 --means onehot --lr 2e-3 --epochs 27``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "model.means=onehot",
        "optim.learning_rate=2e-3",
    ])
