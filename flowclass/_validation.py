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

import math
import operator
from typing import Any, Callable, Sequence, overload

import jax
import jax.numpy as jnp
import numpy as np

UNLABELLED = -1
"""The label of an unlabelled example, as :data:`flowclass.data.labels.UNLABELLED` (not imported from
there: ``flowclass.data`` imports this module; ``tests/test_validation.py`` checks they agree)."""


def _dtype(x) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _describe(value: Any) -> str:
    """A short description of a value for an error message: its type, and dtype and shape for arrays."""
    if hasattr(value, "dtype") and hasattr(value, "shape"):
        return f"a {type(value).__name__} of dtype {value.dtype} and shape {tuple(value.shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def as_array(x: Any, name: str = "x") -> Any:
    """``x`` as an array: JAX and NumPy arrays (and tracers) as they are, what NumPy accepts as an
    array (nested lists, tuples, scalars of a number type) through :func:`numpy.asarray`.

    Raises:
      TypeError: ``x`` is ``None``, a string, or something NumPy cannot make an array of (ragged
        lists), naming ``name``.

    >>> as_array([[0.0, 1.0]], "x").shape
    (1, 2)
    >>> as_array(None, "x0")
    Traceback (most recent call last):
    ...
    TypeError: x0 must be an array; got NoneType None.
    """
    if isinstance(x, (jax.Array, np.ndarray)) or isinstance(x, jax.core.Tracer):
        return x
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be an array; got {_describe(x)}.")
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as error:
        raise TypeError(f"{name} must be an array (what numpy.asarray accepts); got {_describe(x)}: {error}") from None


def is_floating(dtype: Any) -> bool:
    """Whether ``dtype`` is a real floating-point dtype, ``bfloat16`` and ``float16`` included.

    >>> is_floating(jnp.bfloat16), is_floating(np.int32), is_floating(np.complex64)
    (True, False, False)
    """
    return bool(jnp.issubdtype(dtype, jnp.floating))


def is_real_number_dtype(dtype: Any) -> bool:
    """Whether ``dtype`` holds real numbers: integers or floats (``bfloat16`` included), not bool or complex."""
    return bool(jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer))


def _finite_mask(x) -> np.ndarray:
    x = np.asarray(x)
    return np.isfinite(x.astype(np.float32) if x.dtype.itemsize < 4 else x)


def check_inputs(
    x,
    event_shape: Sequence[int],
    *,
    name: str = "x",
    check_values: bool = True,
    bounds: tuple[float, float] | None = None,
):
    """Checks that ``x`` is a non-empty, finite float batch ``(batch, *event_shape)``; returns it as an array.

    What NumPy accepts as an array (nested lists) is converted; any real floating dtype is
    accepted (``bfloat16``, ``float16``, ``float32``, ``float64``). ``bounds = (lo, hi)`` also
    checks that every value lies in ``[lo, hi]`` (e.g. pixels in ``[0, 1]``). Values (finiteness,
    bounds) are checked only for concrete arrays, not for tracers inside ``jit``.
    ``check_values=False`` checks only shape and dtype: for layers behind a boundary that already
    checked the values, so eager calls do not copy every intermediate to the host.

    Raises:
      TypeError: ``x`` is not an array (``None``, a string).
      ValueError: wrong rank or event shape, an empty batch, a dtype that is not real floating
        point (integers, bool, complex, strings, objects), NaN/inf, or values outside ``bounds``;
        the message names ``name``, what was expected and what came.

    >>> check_inputs([[0.5, 1.0]], (2,)).shape
    (1, 2)
    >>> check_inputs(np.full((1, 2), 255.0), (2,), bounds=(0.0, 1.0))
    Traceback (most recent call last):
    ...
    ValueError: x must lie in [0.0, 1.0] (e.g. pixels scaled to [0, 1]); got values in [255.0, 255.0].
    """
    x = as_array(x, name)
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
    if not is_floating(dtype):
        hint = " (scale integer pixels to [0, 1] floats first)" if jnp.issubdtype(dtype, jnp.integer) else ""
        raise ValueError(f"{name} must be a floating-point array; got dtype {dtype}{hint}.")
    if check_values and _is_concrete(x):
        values = np.asarray(x)  # one copy to the host for every value check
        finite = _finite_mask(values)
        if not finite.all():
            bad = int((~finite).sum())
            raise ValueError(
                f"{name} must be finite; got {bad} NaN/inf value(s) out of {finite.size}."
            )
        if bounds is not None:
            low, high = float(values.min()), float(values.max())
            if low < bounds[0] or high > bounds[1]:
                raise ValueError(
                    f"{name} must lie in [{float(bounds[0])}, {float(bounds[1])}] (e.g. pixels scaled to [0, 1]); "
                    f"got values in [{low}, {high}]."
                )
    return x if not isinstance(x, np.ndarray) else jnp.asarray(x)


def check_labels(
    y, num_classes: int, *, batch: int | None = None, name: str = "y", allow_unlabelled: bool = False
):
    """Checks that ``y`` is a 1-D integer array of labels in ``[0, num_classes)``; returns it as an array.

    With ``allow_unlabelled``, :data:`~flowclass.data.labels.UNLABELLED` (``-1``) is accepted too.
    Any integer array type is accepted (NumPy, JAX, lists of ints); bool, float, string and
    object arrays are not. The range is checked only for concrete arrays.

    Raises:
      TypeError: ``y`` is not an array (``None``, a string).
      ValueError: not 1-D, the wrong length, empty, not integers, or a label out of range.
    """
    y = as_array(y, name)
    shape = tuple(np.shape(y))
    if len(shape) != 1:
        raise ValueError(f"{name} must be a 1-D array of class labels; got shape {shape}.")
    if batch is not None and shape[0] != batch:
        raise ValueError(f"{name} has {shape[0]} labels but the inputs have {batch} examples.")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty; expected at least one label.")
    dtype = _dtype(y)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer class labels; got dtype {dtype}.")
    if _is_concrete(y):
        values = np.asarray(y)
        low, high = int(values.min()), int(values.max())
        lowest = UNLABELLED if allow_unlabelled else 0
        if low < lowest or high >= num_classes:
            allowed = f"[0, {num_classes})" + (f" or {UNLABELLED} (unlabelled)" if allow_unlabelled else "")
            hint = (
                f"; {UNLABELLED} marks an unlabelled example only where allow_unlabelled=True"
                if low == UNLABELLED and not allow_unlabelled
                else ""
            )
            raise ValueError(f"{name} must hold labels in {allowed}; got values in [{low}, {high}]{hint}.")
    return y if not isinstance(y, np.ndarray) else jnp.asarray(y)


def check_no_unlabelled(y, *, name: str = "y"):
    """Rejects :data:`~flowclass.data.labels.UNLABELLED` (or any negative) labels where they are not allowed."""
    if _is_concrete(y) and np.issubdtype(_dtype(y), np.integer) and np.size(y) and int(np.min(y)) < 0:
        raise ValueError(
            f"{name} holds negative labels (min {int(np.min(y))}); {UNLABELLED} marks an unlabelled example, "
            "which needs allow_unlabelled=True and a loss that handles it (make_semi_supervised_loss)."
        )


def _as_int(value: Any) -> int | None:
    """``value`` as a Python int if it is an integer (Python, NumPy, a 0-d integer array), not a bool; else ``None``."""
    if isinstance(value, (bool, np.bool_)) or getattr(value, "dtype", None) == np.bool_:
        return None
    if isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, (np.ndarray, jax.Array)) and (value.ndim or not jnp.issubdtype(value.dtype, jnp.integer)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


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
    number = _as_int(value)
    if number is None or number < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")


def check_widths(widths: Any, name: str) -> tuple[int, ...]:
    """``widths`` as a tuple: a sequence (not a string or a single int) of positive integers, e.g. layer widths.

    Raises:
      ValueError: ``"{name} must be a sequence of positive integers (layer widths); got ..."``, or naming
        the entry (``hidden[1]``).

    >>> check_widths([64, 64], "hidden")
    (64, 64)
    >>> check_widths(64, "hidden")
    Traceback (most recent call last):
    ...
    ValueError: hidden must be a sequence of positive integers (layer widths); got 64.
    """
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueError(f"{name} must be a sequence of positive integers (layer widths); got {widths!r}.")
    for i, width in enumerate(widths):
        check_positive_int(width, f"{name}[{i}]")
    return tuple(widths)


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """``value`` as a Python int: an integer (Python, NumPy, 0-d integer array), not a bool, ``≥ minimum``.

    Raises:
      ValueError: ``"{name} must be an integer >= {minimum}; got ..."``.

    >>> check_int(np.int64(0), "from_step", minimum=0)
    0
    >>> check_int(-1, "from_step", minimum=0)
    Traceback (most recent call last):
    ...
    ValueError: from_step must be an integer >= 0; got -1.
    """
    number = _as_int(value)
    if number is None or (minimum is not None and number < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name} must be an integer{bound}; got {value!r}.")
    return number


def check_real(value: Any, name: str, *, minimum: float | None = None, maximum: float | None = None,
               open_min: bool = False, open_max: bool = False) -> float:
    """``value`` as a finite Python float inside ``[minimum, maximum]`` (``open_*``: excluded); not a bool or string.

    Raises:
      ValueError: ``"{name} must be a finite number in ...; got ..."``.

    >>> check_real(np.float32(0.5), "temperature", minimum=0.0)
    0.5
    >>> check_real("1", "temperature", minimum=0.0)
    Traceback (most recent call last):
    ...
    ValueError: temperature must be a finite number >= 0.0; got '1'.
    """
    ok = not isinstance(value, (bool, np.bool_, str, bytes)) and value is not None
    number = float("nan")
    if ok:
        try:
            number = float(value)
        except (TypeError, ValueError):
            ok = False
    ok = ok and math.isfinite(number)
    if ok and minimum is not None:
        ok = number > minimum if open_min else number >= minimum
    if ok and maximum is not None:
        ok = number < maximum if open_max else number <= maximum
    if not ok:
        parts = []
        if minimum is not None:
            parts.append(f"{'>' if open_min else '>='} {minimum}")
        if maximum is not None:
            parts.append(f"{'<' if open_max else '<='} {maximum}")
        raise ValueError(f"{name} must be a finite number{' ' + ' and '.join(parts) if parts else ''}; got {value!r}.")
    return number


def check_callable(fn: Any, name: str) -> None:
    """Raises ``TypeError`` naming ``name`` unless ``fn`` is callable.

    >>> check_callable(None, "logits_fn")
    Traceback (most recent call last):
    ...
    TypeError: logits_fn must be a callable (a function of a batch); got NoneType None.
    """
    if not callable(fn):
        raise TypeError(f"{name} must be a callable (a function of a batch); got {_describe(fn)}.")


def check_class_index(k: Any, num_classes: int, name: str = "k") -> Any:
    """A class index in ``[0, num_classes)``: any integer scalar (Python, NumPy, 0-d NumPy or JAX array), not a bool.

    Returns a Python int, or the traced scalar as it is (its range unchecked) inside ``jit``.

    Raises:
      ValueError: not an integer scalar, or outside ``[0, num_classes)``.

    >>> check_class_index(np.array(2), 3)
    2
    >>> check_class_index(1.5, 3, "target")
    Traceback (most recent call last):
    ...
    ValueError: target must be an integer class in [0, 3); got 1.5.
    """
    if isinstance(k, jax.core.Tracer):
        if k.shape != () or not jnp.issubdtype(k.dtype, jnp.integer):
            raise ValueError(f"{name} must be an integer class in [0, {num_classes}); got {_describe(k)}.")
        return k
    number = _as_int(k)
    if number is None or not 0 <= number < num_classes:
        raise ValueError(f"{name} must be an integer class in [0, {num_classes}); got {k!r}.")
    return number


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
    ok = not isinstance(value, (bool, np.bool_, str, bytes))
    try:
        ok = ok and bool(np.isfinite(value) and value > 0)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite number > 0; got {value}.")


def check_probability(value: Any, name: str) -> None:
    """Checks that ``value`` is a probability strictly inside ``(0, 1)`` (e.g. a success threshold); not a string.

    Raises:
      ValueError: ``"{name} must be a probability in (0, 1); got ..."``.

    >>> check_probability(0.99, "threshold")
    >>> check_probability(1.0, "threshold")
    Traceback (most recent call last):
    ...
    ValueError: threshold must be a probability in (0, 1); got 1.0.
    """
    ok = not isinstance(value, (bool, np.bool_, str, bytes)) and value is not None
    try:
        ok = ok and 0.0 < float(value) < 1.0
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
      ValueError: ``bounds`` is not a pair of finite numbers, ``lo ≥ hi``, or ``x`` leaves
        ``[lo, hi]`` (the message names ``name`` and the span of its values).

    >>> check_bounds((0.0, 1.0), np.array([[0.2, 0.9]])).tolist()
    [0.0, 1.0]
    >>> check_bounds((0.0, 1.0), np.array([[1.5]]), name="x0")
    Traceback (most recent call last):
    ...
    ValueError: x0 must lie inside bounds [0.0, 1.0]; its values span [1.5, 1.5].
    """
    if bounds is None:
        return None
    if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__") or len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (lo, hi); got {bounds!r}.")
    lo = check_real(bounds[0], "bounds lo")
    hi = check_real(bounds[1], "bounds hi")
    if not lo < hi:
        raise ValueError(f"bounds must satisfy lo < hi; got ({lo}, {hi}).")
    if x is not None and _is_concrete(x):
        low, high = float(jnp.min(x)), float(jnp.max(x))
        if low < lo or high > hi:
            raise ValueError(f"{name} must lie inside bounds [{lo}, {hi}]; its values span [{low}, {high}].")
    return jnp.asarray([lo, hi], jnp.float32)


def check_scores(logits: Any, labels: Any) -> tuple[jax.Array, jax.Array]:
    """Checks per-class scores ``(n, K)`` (logits or probabilities) against labels ``(n,)`` in ``[0, K)``.

    Returns ``(logits, labels)`` as JAX arrays, ``labels`` as ``int32``. Lists and any real
    number dtype (``bfloat16`` included) are accepted for ``logits``; any integer array type for
    ``labels``.

    Raises:
      TypeError: ``logits`` or ``labels`` is not an array (``None``, a string).
      ValueError: ``logits`` is not 2-D with ``n ≥ 1`` rows of real numbers; ``labels`` is not
        ``n`` integers; a label lies outside ``[0, K − 1]``; ``logits`` holds NaN or inf.

    >>> logits, labels = check_scores(np.zeros((2, 3)), np.array([0, 2]))
    >>> logits.shape, labels.dtype
    ((2, 3), dtype('int32'))
    >>> check_scores(np.zeros((2, 3)), np.array([0, 3]))
    Traceback (most recent call last):
    ...
    ValueError: labels must be in [0, 2]; got values in [0, 3].
    """
    logits = as_array(logits, "logits")
    labels = as_array(labels, "labels")
    if np.ndim(logits) != 2 or np.shape(logits)[0] == 0:
        raise ValueError(f"logits must have shape (n, num_classes) with n >= 1; got shape {np.shape(logits)}.")
    if not is_real_number_dtype(_dtype(logits)):
        raise ValueError(f"logits must hold real numbers (floats); got dtype {_dtype(logits)}.")
    logits = jnp.asarray(logits)
    labels = np.asarray(labels)
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
    fn: Callable, x: Any, labels: Any, *, name: str = "target", x_name: str = "x0", fn_name: str = "logits_fn"
) -> tuple[jax.Array, jax.Array, int]:
    """Checks a batch ``x`` and its class labels against a model function ``fn: (b, ...) -> (b, K)``.

    ``x`` must be a finite floating-point batch ``(n, *event_shape)``, ``n ≥ 1`` (a list is
    converted); ``labels`` an integer class for every point (any integer scalar, not a bool) or
    one label per point, in ``[0, K)``, where ``K`` comes from ``fn``'s output shape (found with
    :func:`jax.eval_shape`, so ``fn`` is not run). Returns ``(x, labels, K)`` with ``x`` a JAX
    array and ``labels`` ``int32`` of shape ``(n,)``.

    Raises:
      TypeError: ``fn`` is not callable (naming ``fn_name``), ``x`` or ``labels`` not an array.
      ValueError: ``x`` is not a batch, is empty, not floating-point or not finite; ``fn``
        does not take ``x``'s examples or does not map ``(1, ...)`` to ``(1, K)``; ``labels`` is
        not an integer (array), has the wrong length, or leaves ``[0, K)``. Messages name
        ``x_name``, ``name`` and ``fn_name``.

    >>> x, y, k = check_classifier_inputs(lambda v: v[:, :3], np.zeros((4, 5), np.float32), 2)
    >>> x.shape, y.tolist(), k
    ((4, 5), [2, 2, 2, 2], 3)
    """
    check_callable(fn, fn_name)
    x = as_array(x, x_name)
    if np.ndim(x) < 2:
        raise ValueError(
            f"{x_name} must be a batch of start points, shape (n, *event_shape); got shape {np.shape(x)}."
        )
    x = jnp.asarray(check_inputs(x, np.shape(x)[1:], name=x_name))
    try:
        out = jax.eval_shape(fn, x[:1])
    except Exception as error:  # noqa: BLE001 - any failure here means fn cannot take these inputs
        raise ValueError(f"{fn_name} cannot take {x_name} of shape {x.shape} (examples of shape {x.shape[1:]}, "
                         f"dtype {x.dtype}): {type(error).__name__}: {str(error)[:300]}") from error
    if not (hasattr(out, "shape") and len(out.shape) == 2 and out.shape[0] == 1):
        raise ValueError(f"the model function {fn_name} must map a batch (b, ...) to (b, K) scores; "
                         f"got {out} for b = 1.")
    num_classes = out.shape[1]
    if np.ndim(labels) == 0 and not isinstance(labels, (list, tuple)):
        if labels is None or isinstance(labels, (str, bytes)):
            raise ValueError(f"{name} must be an integer class or one per start point; got {labels!r}.")
        if _as_int(labels) is None:
            raise ValueError(f"{name} must be an integer class or one per start point; got {labels!r}.")
        labels = np.full((x.shape[0],), check_class_index(labels, num_classes, name), np.int32)
    labels = check_labels(labels, num_classes, batch=x.shape[0], name=name)
    return x, jnp.asarray(labels, jnp.int32), num_classes


def check_optimizer(optimizer: Any, name: str = "optimizer") -> None:
    """Raises ``TypeError`` naming ``name`` unless ``optimizer`` looks like an optax
    ``GradientTransformation`` (callable ``init`` and ``update``).

    >>> check_optimizer("adam")
    Traceback (most recent call last):
    ...
    TypeError: optimizer must be an optax GradientTransformation (e.g. optax.adam(0.1)); got str 'adam'.
    """
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(f"{name} must be an optax GradientTransformation (e.g. optax.adam(0.1)); "
                        f"got {_describe(optimizer)}.")


def check_key(key: Any, name: str = "key") -> jax.Array:
    """``key`` as a typed JAX PRNG key: a ``jax.random.key(seed)`` as it is, a legacy
    ``jax.random.PRNGKey(seed)`` (``uint32[2]``) wrapped (same random numbers).

    Raises:
      TypeError: anything else, naming ``name``.

    Example:
      >>> import jax
      >>> check_key(jax.random.PRNGKey(0)).dtype
      key<fry>
      >>> check_key(1)
      Traceback (most recent call last):
      TypeError: key must be a JAX PRNG key (jax.random.key(seed)); got int 1.
    """
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if np.shape(key) != ():
            raise TypeError(f"{name} must be a single JAX PRNG key; got an array of keys of shape {np.shape(key)}.")
        return key
    if dtype is not None and dtype == np.uint32 and np.shape(key) == (2,):
        return jax.random.wrap_key_data(jnp.asarray(key))
    what = (f"{type(key).__name__} {key!r}" if dtype is None
            else f"{type(key).__name__} of dtype {dtype}, shape {np.shape(key)}")
    raise TypeError(f"{name} must be a JAX PRNG key (jax.random.key(seed)); got {what[:120]}.")
