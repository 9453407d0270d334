"""Input checks at the public boundary, shared by every module that validates its arguments.

Shape checks run always (shapes are static, also under ``jit``). Value checks
(finite entries, label range) need concrete arrays and are skipped for tracers,
so the same public function validates fully when called eagerly and costs
nothing inside a compiled graph.

Every check raises :class:`ValueError` with a message that names the argument, what was
expected and what came. The module is private (its name starts with ``_``) but its
functions are public: other ``flowclass`` modules import them by name, and no module
imports another module's ``_private`` helpers (``tests/test_architecture.py``).

Example:
  >>> import numpy as np
  >>> check_positive_int(3, "steps")
  >>> check_positive(0.0, "eps")
  Traceback (most recent call last):
  ...
  ValueError: eps must be a finite number > 0; got 0.0.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, overload

import jax
import jax.numpy as jnp
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


def check_positive_int(value: Any, name: str) -> None:
    """Checks that ``value`` is a Python or NumPy integer ``≥ 1``, not a ``bool``: a count of steps, examples, ...

    Raises:
      ValueError: ``"{name} must be a positive integer; got ..."``.

    >>> check_positive_int(np.int64(5), "restarts")
    >>> check_positive_int(2.0, "steps")
    Traceback (most recent call last):
    ...
    ValueError: steps must be a positive integer; got 2.0.
    """
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")


def check_positive(value: Any, name: str) -> None:
    """Checks that ``value`` is a finite real number ``> 0`` (a radius, a step size, a temperature).

    Raises:
      ValueError: ``"{name} must be a finite number > 0; got ..."``, also for NaN, inf and non-numbers.

    >>> check_positive(0.5, "step_size")
    >>> check_positive(float("nan"), "eps")
    Traceback (most recent call last):
    ...
    ValueError: eps must be a finite number > 0; got nan.
    """
    try:
        ok = bool(np.isfinite(value) and value > 0)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite number > 0; got {value}.")


def check_probability(value: Any, name: str) -> None:
    """Checks that ``value`` is a probability strictly inside ``(0, 1)`` (e.g. a success threshold).

    Raises:
      ValueError: ``"{name} must be a probability in (0, 1); got ..."``.

    >>> check_probability(0.99, "threshold")
    >>> check_probability(1.0, "threshold")
    Traceback (most recent call last):
    ...
    ValueError: threshold must be a probability in (0, 1); got 1.0.
    """
    try:
        ok = 0.0 < float(value) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a probability in (0, 1); got {value}.")


def check_norm(norm: Any) -> None:
    """Checks that ``norm`` names a supported threat model of the attacks: ``"linf"`` or ``"l2"``.

    Raises:
      ValueError: ``"norm must be 'linf' or 'l2'; got ..."``.

    >>> check_norm("l2")
    >>> check_norm("l1")
    Traceback (most recent call last):
    ...
    ValueError: norm must be 'linf' or 'l2'; got 'l1'.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2'; got {norm!r}.")


@overload
def check_bounds(bounds: None, x: Any = None, *, name: str = "x") -> None: ...


@overload
def check_bounds(bounds: Sequence[float], x: Any = None, *, name: str = "x") -> jax.Array: ...


def check_bounds(bounds: Sequence[float] | None, x: Any = None, *, name: str = "x") -> jax.Array | None:
    """Checks a box ``bounds = (lo, hi)`` with ``lo < hi`` and, for a concrete ``x``, that ``lo ≤ x ≤ hi``.

    Returns ``None`` for ``bounds=None`` (no box), else ``[lo, hi]`` as a ``float32`` array of
    shape ``(2,)``: a jit *input*, so new bounds of the same shape do not recompile. A traced
    ``x`` is not range-checked (its values are unknown).

    Raises:
      ValueError: ``bounds`` is not a pair, ``lo ≥ hi``, or ``x`` leaves ``[lo, hi]`` (the
        message names ``name`` and the span of its values).

    >>> check_bounds((0.0, 1.0), np.array([[0.2, 0.9]])).tolist()
    [0.0, 1.0]
    >>> check_bounds((0.0, 1.0), np.array([[1.5]]), name="x0")
    Traceback (most recent call last):
    ...
    ValueError: x0 must lie inside bounds [0.0, 1.0]; its values span [1.5, 1.5].
    """
    if bounds is None:
        return None
    if len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (lo, hi); got {bounds!r}.")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds must satisfy lo < hi; got ({lo}, {hi}).")
    if x is not None and _is_concrete(x):
        low, high = float(jnp.min(x)), float(jnp.max(x))
        if low < lo or high > hi:
            raise ValueError(f"{name} must lie inside bounds [{lo}, {hi}]; its values span [{low}, {high}].")
    return jnp.asarray([lo, hi], jnp.float32)


def check_scores(logits: Any, labels: Any) -> tuple[jax.Array, jax.Array]:
    """Checks per-class scores ``(n, K)`` (logits or probabilities) against labels ``(n,)`` in ``[0, K)``.

    Returns ``(logits, labels)`` as JAX arrays, ``labels`` as ``int32``.

    Raises:
      ValueError: ``logits`` is not 2-D with ``n ≥ 1`` rows; ``labels`` is not ``n`` integers;
        a label lies outside ``[0, K − 1]``; ``logits`` holds NaN or inf.

    >>> logits, labels = check_scores(np.zeros((2, 3)), np.array([0, 2]))
    >>> logits.shape, labels.dtype
    ((2, 3), dtype('int32'))
    >>> check_scores(np.zeros((2, 3)), np.array([0, 3]))
    Traceback (most recent call last):
    ...
    ValueError: labels must be in [0, 2]; got values in [0, 3].
    """
    logits = jnp.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"logits must have shape (n, num_classes) with n >= 1; got shape {logits.shape}.")
    if labels.shape != (logits.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {logits.shape[0]} integers (one per row of logits); "
                         f"got shape {labels.shape}, dtype {labels.dtype}.")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must be in [0, {logits.shape[1] - 1}]; got values in "
                         f"[{labels.min()}, {labels.max()}].")
    if not bool(jnp.all(jnp.isfinite(logits))):
        raise ValueError("logits contain NaN or inf.")
    return logits, jnp.asarray(labels, jnp.int32)


def check_classifier_inputs(
    fn: Callable, x: Any, labels: Any, *, name: str = "target", x_name: str = "x0"
) -> tuple[jax.Array, jax.Array, int]:
    """Checks a batch ``x`` and its class labels against a model function ``fn: (b, ...) -> (b, K)``.

    ``x`` must be a finite floating-point batch ``(n, *event_shape)``, ``n ≥ 1``; ``labels``
    an integer class for every point or one label per point, in ``[0, K)``, where ``K``
    comes from ``fn``'s output shape (found with :func:`jax.eval_shape`, so ``fn`` is not
    run). Returns ``(x, labels, K)`` with ``x`` a JAX array and ``labels`` ``int32`` of shape ``(n,)``.

    Raises:
      ValueError: ``x`` is not a batch, is empty, not floating-point or not finite; ``fn``
        does not map ``(1, ...)`` to ``(1, K)``; ``labels`` is not an integer (array), has
        the wrong length, or leaves ``[0, K)``. Messages name ``x_name`` and ``name``.

    >>> x, y, k = check_classifier_inputs(lambda v: v[:, :3], np.zeros((4, 5), np.float32), 2)
    >>> x.shape, y.tolist(), k
    ((4, 5), [2, 2, 2, 2], 3)
    """
    if np.ndim(x) < 2:
        raise ValueError(
            f"{x_name} must be a batch of start points, shape (n, *event_shape); got shape {np.shape(x)}."
        )
    check_inputs(x, np.shape(x)[1:], name=x_name)
    x = jnp.asarray(x)
    out = jax.eval_shape(fn, x[:1])
    if not (hasattr(out, "shape") and len(out.shape) == 2 and out.shape[0] == 1):
        raise ValueError(f"the model function must map a batch (b, ...) to (b, K) scores; got {out} for b = 1.")
    num_classes = out.shape[1]
    if np.ndim(labels) == 0:
        if not isinstance(labels, (int, np.integer)) and not np.issubdtype(np.asarray(labels).dtype, np.integer):
            raise ValueError(f"{name} must be an integer class or one per start point; got {labels!r}.")
        labels = np.full((x.shape[0],), int(labels), np.int32)
    check_labels(labels, num_classes, batch=x.shape[0], name=name)
    return x, jnp.asarray(labels, jnp.int32), num_classes
