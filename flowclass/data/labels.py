"""Few labels: choosing a balanced labelled subset and marking the rest unlabelled.

Semi-supervised training keeps every example in one array and marks an unlabelled
example with the label :data:`UNLABELLED` (``-1``), so batches mix labelled and
unlabelled examples and the training loop stays the same.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from flowclass._validation import as_array, check_positive_int

UNLABELLED = -1
"""The label of an example whose class is not known."""


def balanced_label_subset(y: ArrayLike, n_labels: int, *, seed: int = 0, num_classes: int | None = None) -> np.ndarray:
    """Indices of ``n_labels`` examples, ``n_labels / K`` drawn at random from each of the ``K`` classes.

    ``K`` is ``num_classes`` (default: ``max(y) + 1``). The same seed gives the same
    indices; they come back sorted.

    >>> y = np.array([0, 1, 0, 1, 0, 1, 2, 2, 2])
    >>> idx = balanced_label_subset(y, 3, seed=0)
    >>> np.bincount(y[idx]).tolist()
    [1, 1, 1]
    """
    y = np.asarray(as_array(y, "y"))
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) == 0:
        raise ValueError(f"y must be a non-empty 1-D array of integer labels; got shape {y.shape}, dtype {y.dtype}.")
    if y.min() < 0:
        raise ValueError(f"y must hold the true labels (>= 0) to choose from; got a minimum of {int(y.min())}.")
    if num_classes is not None:
        check_positive_int(num_classes, "num_classes")
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.max() >= k:
        raise ValueError(f"y holds labels up to {int(y.max())} but num_classes is {k}.")
    check_positive_int(n_labels, "n_labels")
    if n_labels < k or n_labels % k:
        raise ValueError(
            f"n_labels must be a positive multiple of the number of classes ({k}) for a balanced "
            f"subset; got {n_labels}."
        )
    per_class = n_labels // k
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(k):
        members = np.flatnonzero(y == c)
        if len(members) < per_class:
            raise ValueError(f"class {c} has {len(members)} examples; {per_class} are needed.")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def hide_labels(y: ArrayLike, keep: ArrayLike) -> np.ndarray:
    """A copy of ``y`` (``int32``) with every label outside the indices ``keep`` set to :data:`UNLABELLED`.

    Raises:
      ValueError: ``y`` is not a 1-D array of integer labels; ``keep`` is not integer indices
        into ``y`` (in ``[-len(y), len(y))``).

    >>> hide_labels(np.array([3, 1, 4, 1]), keep=[0, 2]).tolist()
    [3, -1, 4, -1]
    """
    y = np.asarray(as_array(y, "y"))
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be a 1-D array of integer labels; got shape {y.shape}, dtype {y.dtype}.")
    hidden = np.full(len(y), UNLABELLED, np.int32)
    keep = np.asarray(as_array(keep, "keep"))
    if keep.size == 0:
        keep = keep.astype(np.int64)
    if keep.ndim != 1 or not np.issubdtype(keep.dtype, np.integer):
        raise ValueError(f"keep must be a 1-D array of integer indices into y; got shape {keep.shape}, "
                         f"dtype {keep.dtype}.")
    if keep.size and (keep.min() < -len(y) or keep.max() >= len(y)):
        raise ValueError(f"keep must hold indices in [-{len(y)}, {len(y)}) (y has {len(y)} labels); got values in "
                         f"[{keep.min()}, {keep.max()}].")
    hidden[keep] = y[keep]
    return hidden
