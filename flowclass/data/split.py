"""Holding out a validation split from the training data."""

from __future__ import annotations

import numpy as np


def train_val_split(
    x: np.ndarray, y: np.ndarray, *, val_fraction: float = 0.1, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Randomly splits ``(x, y)`` into ``(x_train, y_train), (x_val, y_val)``.

    Model selection uses the validation part; the test set stays untouched.

    >>> (xt, yt), (xv, yv) = train_val_split(np.zeros((10, 2)), np.zeros(10, int), val_fraction=0.2)
    >>> len(xt), len(xv)
    (8, 2)
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}.")
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x has {n} examples but y has {len(y)} labels.")
    n_val = int(round(n * val_fraction))
    if not 0 < n_val < n:
        raise ValueError(f"val_fraction={val_fraction} of {n} examples leaves an empty split.")
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])
