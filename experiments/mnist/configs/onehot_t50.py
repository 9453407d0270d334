"""One-hot means, the cross-entropy at posterior temperature 50 (a margin loss).

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 20 --model flow --config fast
--beta 1 --means onehot --ce-temperature 50 --epochs 27``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "model.means=onehot",
        "loss.posterior_temperature=50.0",
    ])
