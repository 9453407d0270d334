"""Classification with the class likelihood marginalised over small image translations.

A flow trained on randomly translated images models ``p(x | k) = Σ_s p(s) p_θ(shift_s⁻¹(x) | k)``
with the translation ``s`` a latent variable. With a uniform ``p(s)`` over a set ``S`` (a translation
of a digit with empty borders only permutes pixels, so it has unit Jacobian):

    log p(x | k) ≈ log (1/|S|) Σ_{s ∈ S} p_θ(shift_s(x) | k)

and Bayes' rule over it gives the shift-marginal logits ``log π_k + log p(x | k)``.

Which rule classifies better is an empirical question, answered on validation data:
:func:`decision_rule_metrics` scores both rules after every epoch of :func:`flowclass.fit`, and
:func:`selected_rule` picks the rule at the selected epoch; :func:`rule_logits` then scores the
test set with it.

Every function checks its arguments eagerly: ``x`` a non-empty, finite batch of NHWC float
images (lists accepted) inside the model's input box (``[0, 1]`` for the image flows, read from
``apply_fn``'s module when it is a :class:`~flowclass.FlowClassifier`'s ``apply``), shifts pairs of
integers, sizes positive integers; errors are ``ValueError`` (``TypeError`` for ``None`` or a
string where an array belongs) naming the argument. The batched forward passes behind them
(:func:`flowclass.predict_logits`) are jitted and check no values.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from flowclass._validation import as_array, check_inputs, check_int, check_labels, check_positive_int
from flowclass.data.pixels import translate
from flowclass.training import predict_logits

Shift = tuple[int, int]

ONE_PIXEL_CROSS: tuple[Shift, ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
"""The identity and the four one-pixel translations: the smallest symmetric shift set."""


def shift_logits(
    apply_fn: Callable,
    variables: Mapping[str, Any],
    x: np.ndarray,
    shifts: Sequence[Shift],
    *,
    batch_size: int = 4096,
) -> np.ndarray:
    """The logits of every translated copy ``shift_s(x)``, ``s ∈ shifts`` (``(dy, dx)`` pixels,
    zero fill), stacked as ``(len(shifts), N, K)``.

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.image_realnvp("fast", input_shape=(8, 8, 1), num_classes=3)
      >>> x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
      >>> variables = model.init(jax.random.key(0), x)  # ActNorm initialises on the data
      >>> shift_logits(model.apply, variables, x, ONE_PIXEL_CROSS).shape
      (5, 4, 3)

    Raises:
      ValueError: ``x`` is not a non-empty finite batch of NHWC float images inside the model's
        input box; ``shifts`` is empty or not pairs of integers; ``batch_size`` not a positive integer.
    """
    x = _check_images(x, "x", _input_bounds(apply_fn))
    shifts = _check_shifts(shifts)
    check_positive_int(batch_size, "batch_size")
    batch_size = int(batch_size)
    images = jnp.asarray(x)
    return np.stack([
        predict_logits(apply_fn, variables, np.asarray(translate(images, jnp.tile(jnp.asarray(s), (len(x), 1)))),
                       batch_size=batch_size)
        for s in shifts
    ])


def marginalise_shifts(per_shift_logits: np.ndarray) -> np.ndarray:
    """``log (1/|S|) Σ_s exp(ℓ_s)`` over the leading (shift) axis of :func:`shift_logits`' output:
    the shift-marginal logits (the class weights ``log π_k`` are the same in every ``ℓ_s``).

    Example:
      >>> ell = np.log(np.array([[[0.2, 0.8]], [[0.6, 0.4]]]))  # 2 shifts, 1 image, 2 classes
      >>> np.exp(marginalise_shifts(ell)).round(3).tolist()
      [[0.4, 0.6]]
    """
    logits = np.asarray(as_array(per_shift_logits, "per_shift_logits"))
    if logits.ndim != 3 or 0 in logits.shape:
        raise ValueError(f"per_shift_logits must have shape (shifts, N, K), none empty; got {logits.shape}.")
    if not (np.issubdtype(logits.dtype, np.floating) or np.issubdtype(logits.dtype, np.integer)):
        raise ValueError(f"per_shift_logits must hold real numbers; got dtype {logits.dtype}.")
    if np.isnan(logits).any():
        raise ValueError(f"per_shift_logits must not hold NaN; got {int(np.isnan(logits).sum())}.")
    return np.logaddexp.reduce(logits, axis=0) - math.log(len(logits))


def shift_marginal_logits(
    apply_fn: Callable,
    variables: Mapping[str, Any],
    x: np.ndarray,
    shifts: Sequence[Shift] = ONE_PIXEL_CROSS,
    *,
    batch_size: int = 4096,
) -> np.ndarray:
    """Shift-marginal logits ``log π_k + log (1/|S|) Σ_{s ∈ S} p_θ(shift_s(x) | k)`` of a flow
    classifier over NHWC images ``x``: costs ``|S|`` forward passes.

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.image_realnvp("fast", input_shape=(8, 8, 1), num_classes=3)
      >>> x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
      >>> variables = model.init(jax.random.key(0), x)  # ActNorm initialises on the data
      >>> plain = fc.predict_logits(model.apply, variables, x)
      >>> bool(np.all(np.isfinite(plain)))
      True
      >>> bool(np.allclose(shift_marginal_logits(model.apply, variables, x, [(0, 0)]), plain, atol=1e-4))
      True
    """
    return marginalise_shifts(shift_logits(apply_fn, variables, x, shifts, batch_size=batch_size))


def _input_bounds(apply_fn: Callable) -> tuple[float, float] | None:
    """The input box of the model behind ``apply_fn`` (``model.apply`` of a FlowClassifier), else ``None``."""
    return getattr(getattr(apply_fn, "__self__", None), "input_bounds", None)


def _check_images(x: Any, name: str, bounds: tuple[float, float] | None) -> np.ndarray:
    x = as_array(x, name)
    if np.ndim(x) != 4:
        raise ValueError(f"{name} must be a batch of NHWC images (4 axes); got shape {np.shape(x)}.")
    return np.asarray(check_inputs(x, np.shape(x)[1:], name=name, bounds=bounds))


def _check_shifts(shifts: Any) -> tuple[Shift, ...]:
    message = f"shifts must name at least one (dy, dx) translation, as a sequence of integer pairs; got {shifts!r}."
    if shifts is None or isinstance(shifts, (str, bytes)) or not isinstance(shifts, (Sequence, np.ndarray)):
        raise ValueError(message)
    pairs = []
    for shift in shifts:
        if isinstance(shift, (str, bytes)) or not isinstance(shift, (Sequence, np.ndarray)) or len(shift) != 2:
            raise ValueError(message)
        try:
            pairs.append((check_int(shift[0], "shifts dy"), check_int(shift[1], "shifts dx")))
        except ValueError:
            raise ValueError(message) from None
    if not pairs:
        raise ValueError(message)
    return tuple(pairs)


DECISION_RULES: tuple[str, ...] = ("plain", "shift_marginal")
"""The decision rules of a flow classifier over images: ``"plain"``, ``argmax_k`` of the logits
of ``x`` itself, and ``"shift_marginal"``, ``argmax_k`` of the likelihood marginalised over
:data:`ONE_PIXEL_CROSS` (:func:`shift_marginal_logits`)."""


def rule_logits(
    apply_fn: Callable,
    variables: Mapping[str, Any],
    x: np.ndarray,
    *,
    rules: Sequence[str] = DECISION_RULES,
    batch_size: int = 500,
) -> dict[str, np.ndarray]:
    """The logits of each decision rule in ``rules`` over NHWC images ``x``, ``{rule: (N, K)}``.

    One set of forward passes serves both rules: the plain logits are the identity shift's among
    the :data:`ONE_PIXEL_CROSS` passes of the shift-marginal rule (5 passes with
    ``"shift_marginal"``, 1 without).

    Raises:
      ValueError: ``rules`` is empty, repeats a rule or names one not in :data:`DECISION_RULES`
        or is not a sequence (a single string included); ``x`` as in :func:`shift_logits`.

    Example:
      >>> import jax, flowclass as fc
      >>> model = fc.image_realnvp("fast", input_shape=(8, 8, 1), num_classes=3)
      >>> x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
      >>> variables = model.init(jax.random.key(0), x)  # ActNorm initialises on the data
      >>> logits = rule_logits(model.apply, variables, x)
      >>> {rule: value.shape for rule, value in logits.items()}
      {'plain': (4, 3), 'shift_marginal': (4, 3)}
    """
    if rules is None or isinstance(rules, str) or not isinstance(rules, Sequence):
        raise ValueError(f"rules must name decision rules of {DECISION_RULES} in a sequence (a tuple or list); "
                         f"got {rules!r}.")
    rules = tuple(rules)
    unknown = [rule for rule in rules if rule not in DECISION_RULES]
    if not rules or unknown or len(set(rules)) != len(rules):
        raise ValueError(f"rules must name each of {DECISION_RULES} at most once, and at least one; got {rules}.")
    shifts = ONE_PIXEL_CROSS if "shift_marginal" in rules else ((0, 0),)
    per_shift = shift_logits(apply_fn, variables, x, shifts, batch_size=batch_size)
    logits = {}
    for rule in rules:
        logits[rule] = per_shift[shifts.index((0, 0))] if rule == "plain" else marginalise_shifts(per_shift)
    return logits


def decision_rule_metrics(
    x_val: np.ndarray, y_val: np.ndarray, *, from_step: int = 0, batch_size: int = 500
) -> Callable[[Any], dict[str, float]]:
    """Validation metrics of the decision rules, for :func:`flowclass.fit`'s ``extra_val_metrics``.

    The returned callable takes a train state (``.apply_fn``, ``.variables``, ``.step``) and
    returns ``{"plain_rule_accuracy", "shift_marginal_accuracy", "best_rule_accuracy"}``
    (fractions in ``[0, 1]``; the best is the larger of the two), counted on ``(x_val, y_val)``
    from one set of forward passes (:func:`rule_logits`). Select with
    ``select="best_rule_accuracy"`` to choose the epoch and the rule together, then
    :func:`selected_rule` on the history at the selected epoch.

    The shift-marginal rule costs 5 forward passes over the split; before training step
    ``from_step`` (e.g. the first half of the schedule, long before the best epoch) only the plain
    rule is scored and ``shift_marginal_accuracy`` is NaN, so that those epochs can still be
    selected.

    Raises:
      ValueError: ``x_val`` is not a non-empty finite batch of NHWC images in ``[0, 1]``,
        ``y_val`` is not one integer label ``≥ 0`` per image, ``from_step`` is not an integer
        ``≥ 0``, or ``batch_size`` not a positive integer.

    Example:
      >>> import jax, flowclass as fc
      >>> from types import SimpleNamespace
      >>> model = fc.image_realnvp("fast", input_shape=(8, 8, 1), num_classes=3)
      >>> x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype(np.float32)
      >>> y = np.array([0, 1, 2, 0], np.int32)
      >>> state = SimpleNamespace(apply_fn=model.apply, variables=model.init(jax.random.key(0), x), step=0)
      >>> metrics = decision_rule_metrics(x, y, from_step=1)(state)  # step 0 < from_step: plain only
      >>> sorted(metrics), bool(np.isnan(metrics["shift_marginal_accuracy"]))
      (['best_rule_accuracy', 'plain_rule_accuracy', 'shift_marginal_accuracy'], True)
      >>> metrics["best_rule_accuracy"] == metrics["plain_rule_accuracy"]
      True
    """
    x_val = np.asarray(_check_images(x_val, "x_val", (0.0, 1.0)))
    y_val = np.asarray(as_array(y_val, "y_val"))
    if y_val.shape != (len(x_val),) or not np.issubdtype(y_val.dtype, np.integer):
        raise ValueError(f"y_val must hold one integer label per image of x_val, shape ({len(x_val)},); "
                         f"got shape {y_val.shape}, dtype {y_val.dtype}.")
    y_val = np.asarray(check_labels(y_val, int(y_val.max()) + 1, name="y_val"))
    from_step = check_int(from_step, "from_step", minimum=0)
    check_positive_int(batch_size, "batch_size")

    def metrics(state: Any) -> dict[str, float]:
        rules = DECISION_RULES if int(state.step) >= from_step else ("plain",)
        logits = rule_logits(state.apply_fn, state.variables, x_val, rules=rules, batch_size=batch_size)
        accuracy = {rule: float(np.mean(ell.argmax(-1) == y_val)) for rule, ell in logits.items()}
        plain, marginal = accuracy["plain"], accuracy.get("shift_marginal", float("nan"))
        return {"plain_rule_accuracy": plain, "shift_marginal_accuracy": marginal,
                "best_rule_accuracy": float(np.fmax(plain, marginal))}

    return metrics


def selected_rule(metrics_at_best: Mapping[str, float]) -> str:
    """The decision rule to use: ``"shift_marginal"`` when its validation accuracy is strictly
    higher than the plain rule's, else ``"plain"`` (ties, NaN or an unscored marginal rule).

    ``metrics_at_best`` holds the metrics of :func:`decision_rule_metrics` at the selected epoch,
    either as it returns them or as :func:`flowclass.fit`'s history names them (``val_`` prefix,
    preferred when both are present), e.g. ``{k: v[result.best_epoch - 1] for k, v in
    result.history.items()}``.

    Raises:
      ValueError: the plain rule's accuracy is not in ``metrics_at_best``.

    Example:
      >>> selected_rule({"plain_rule_accuracy": 0.990, "shift_marginal_accuracy": 0.992})
      'shift_marginal'
      >>> selected_rule({"val_plain_rule_accuracy": 0.99, "val_shift_marginal_accuracy": 0.99})
      'plain'
    """
    if not isinstance(metrics_at_best, Mapping):
        raise TypeError(f"metrics_at_best must be a mapping of metric names to values; got "
                        f"{type(metrics_at_best).__name__}.")

    def lookup(name: str) -> float | None:
        for key in (f"val_{name}", name):
            if key in metrics_at_best:
                value = metrics_at_best[key]
                try:
                    return float(value)
                except (TypeError, ValueError):
                    raise ValueError(f"metrics_at_best[{key!r}] must be a number; got {value!r}.") from None
        return None

    plain, marginal = lookup("plain_rule_accuracy"), lookup("shift_marginal_accuracy")
    if plain is None:
        raise ValueError("metrics_at_best must hold 'plain_rule_accuracy' (or 'val_plain_rule_accuracy'), as "
                         f"decision_rule_metrics returns it; got keys {sorted(metrics_at_best)}.")
    return "shift_marginal" if marginal is not None and marginal > plain else "plain"
