"""Data: loaders return NumPy arrays (tabular ``(N, D)`` float32; labels int32). No model imports."""

from flowclass.data.moons import (
    bayes_predict,
    make_moons,
    moons_class_log_density,
    moons_log_density,
    seed_moons,
)
from flowclass.data.split import train_val_split

__all__ = [
    "bayes_predict",
    "make_moons",
    "moons_class_log_density",
    "moons_log_density",
    "seed_moons",
    "train_val_split",
]
