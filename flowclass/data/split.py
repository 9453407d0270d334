"""Holding out a validation split from the training data."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from flowclass._validation import as_array, check_int, check_real


def train_val_split(
    x: ArrayLike, y: ArrayLike, *, val_fraction: float = 0.1, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Randomly splits ``(x, y)`` into ``(x_train, y_train), (x_val, y_val)``.

    Model selection uses the validation part; the test set stays untouched. ``x`` and ``y`` are
    arrays (or what NumPy accepts as one) with the same number of examples; ``val_fraction`` in
    ``(0, 1)`` must leave both parts non-empty; ``seed`` an integer.

    Raises:
      TypeError: ``x`` or ``y`` is not an array.
      ValueError: ``x`` has no example axis, the lengths differ, ``val_fraction`` is not a number
        in ``(0, 1)`` leaving both parts non-empty, or ``seed`` is not an integer.

    >>> (xt, yt), (xv, yv) = train_val_split(np.zeros((10, 2)), np.zeros(10, int), val_fraction=0.2)
    >>> len(xt), len(xv)
    (8, 2)
    """
    x, y = np.asarray(as_array(x, "x")), np.asarray(as_array(y, "y"))
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"x and y must be arrays of examples (a leading example axis); got shapes {x.shape} and "
                         f"{y.shape}.")
    val_fraction = check_real(val_fraction, "val_fraction", minimum=0.0, maximum=1.0, open_min=True, open_max=True)
    seed = check_int(seed, "seed", minimum=0)
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x has {n} examples but y has {len(y)} labels.")
    n_val = int(round(n * val_fraction))
    if not 0 < n_val < n:
        raise ValueError(f"val_fraction={val_fraction} of {n} examples leaves an empty split.")
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])
