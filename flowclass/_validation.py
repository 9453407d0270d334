"""Input checks at the public boundary.

Shape checks run always (shapes are static, also under ``jit``). Value checks
(finite entries, label range) need concrete arrays and are skipped for tracers,
so the same public function validates fully when called eagerly and costs
nothing inside a compiled graph.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from flowclass.data.labels import UNLABELLED


def _dtype(x) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_inputs(x, event_shape: Sequence[int], *, name: str = "x", check_values: bool = True):
    """Checks that ``x`` is a non-empty, finite batch of shape ``(batch, *event_shape)``.

    ``check_values=False`` checks only shape and dtype: for layers behind a boundary that
    already checked the values, so eager calls do not copy every intermediate to the host.
    """
    event_shape = tuple(event_shape)
    shape = tuple(np.shape(x))
    expected = "(batch, " + ", ".join(str(d) for d in event_shape) + ")"
    if len(shape) != len(event_shape) + 1:
        raise ValueError(
            f"{name} must have shape {expected} (rank {len(event_shape) + 1}); "
            f"got shape {shape} (rank {len(shape)})."
        )
    if shape[1:] != event_shape:
        raise ValueError(
            f"{name} must have shape {expected}; got {shape}: "
            f"feature shape {shape[1:]} does not match {event_shape}."
        )
    if shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {shape}); expected at least one example.")
    dtype = _dtype(x)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"{name} must be a floating-point array; got dtype {dtype}.")
    if check_values and _is_concrete(x):
        finite = np.isfinite(np.asarray(x))
        if not finite.all():
            bad = int((~finite).sum())
            raise ValueError(
                f"{name} must be finite; got {bad} NaN/inf value(s) out of {finite.size}."
            )


def check_labels(
    y, num_classes: int, *, batch: int | None = None, name: str = "y", allow_unlabelled: bool = False
):
    """Checks that ``y`` is a 1-D integer array of labels in ``[0, num_classes)``.

    With ``allow_unlabelled``, :data:`~flowclass.data.labels.UNLABELLED` (``-1``) is accepted too.
    """
    shape = tuple(np.shape(y))
    if len(shape) != 1:
        raise ValueError(f"{name} must be a 1-D array of class labels; got shape {shape}.")
    if batch is not None and shape[0] != batch:
        raise ValueError(f"{name} has {shape[0]} labels but the inputs have {batch} examples.")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty; expected at least one label.")
    dtype = _dtype(y)
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels; got dtype {dtype}.")
    if _is_concrete(y):
        y = np.asarray(y)
        low, high = int(y.min()), int(y.max())
        lowest = UNLABELLED if allow_unlabelled else 0
        if low < lowest or high >= num_classes:
            allowed = f"[0, {num_classes})" + (f" or {UNLABELLED} (unlabelled)" if allow_unlabelled else "")
            hint = (
                f"; {UNLABELLED} marks an unlabelled example only where allow_unlabelled=True"
                if low == UNLABELLED and not allow_unlabelled
                else ""
            )
            raise ValueError(f"{name} must hold labels in {allowed}; got values in [{low}, {high}]{hint}.")


def check_no_unlabelled(y, *, name: str = "y"):
    """Rejects :data:`~flowclass.data.labels.UNLABELLED` (or any negative) labels where they are not allowed."""
    if _is_concrete(y) and np.issubdtype(_dtype(y), np.integer) and np.size(y) and int(np.min(y)) < 0:
        raise ValueError(
            f"{name} holds negative labels (min {int(np.min(y))}); {UNLABELLED} marks an unlabelled example, "
            "which needs allow_unlabelled=True and a loss that handles it (make_semi_supervised_loss)."
        )
