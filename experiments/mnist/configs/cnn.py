"""The CNN baseline (the slides' network) on MNIST, 10 epochs, with the flows' optimiser, data
split and ±2-pixel shifts; the pixels as they are (no dequantisation).

Formerly ``python experiments/mnist.py --data-dir DIR --time-budget 20 --model cnn --epochs 10``.
"""

import dataclasses

from flowclass.config import LossConfig, RunConfig

from . import default


def get_config() -> RunConfig:
    config = default.get_config()
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, kind="cnn"),
        loss=LossConfig(kind="cross_entropy"),
        train=dataclasses.replace(config.train, epochs=10),
    )
