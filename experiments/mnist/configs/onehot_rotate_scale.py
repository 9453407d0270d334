"""One-hot means, random rotations (±10°) and scalings (±10 %) on top of the shifts.

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 20 --model flow --config fast
--beta 1 --means onehot --rotate 10 --scale 0.1 --epochs 27``.
"""

from flowclass.config import RunConfig, override

from . import default


def get_config() -> RunConfig:
    return override(default.get_config(), [
        "model.means=onehot",
        "data.rotate=10.0",
        "data.scale=0.1",
    ])
