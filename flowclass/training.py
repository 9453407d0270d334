"""Functional training on optax: a train state, a jitted step, evaluation and a ``fit`` loop.

    state = create_train_state(model, key, x[:1], optax.adam(1e-3), loss_fn=flow_nll)
    state, aux = train_step(state, (x_batch, y_batch))      # jitted, donates ``state``
    result = fit(state, (x_train, y_train), (x_val, y_val), key=key, config=TrainConfig(epochs=100))

``fit`` is a composition of small pieces, each usable and tested on its own:
:class:`EpochRunner` (one epoch of steps in compiled ``fori_loop`` blocks, data kept on the
device), :func:`evaluate` (validation), :class:`Selection` (the best epoch on a validation
metric: model selection never sees the test set) and :class:`FitCheckpoint` (atomic,
resumable checkpoints). Metrics are :class:`~flowclass.losses.Mean` ``(total, count)`` pairs
summed over steps and batches, so each is averaged over the examples it is defined on.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from tqdm.auto import tqdm

from flowclass import sharding
from flowclass._validation import check_inputs, check_key, check_labels, check_no_unlabelled
from flowclass.averaging import averaged_params, find_ema
from flowclass.checkpoint import Checkpointer
from flowclass.config import TrainConfig
from flowclass.losses import LossFn, Mean, needs_key
from flowclass.runtime import quick_compile_options

Augment = Callable[[jax.Array, jnp.ndarray], jnp.ndarray]
Metrics = dict[str, Mean]


class TrainState(struct.PyTreeNode):
    """Everything that changes during training, plus the static pieces that define it.

    ``params`` are optimised; ``collections`` holds any other Flax variable
    collections (kept as they are by the step). Make one with :func:`create_train_state`.

    Example:
      >>> import jax, jax.numpy as jnp, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> int(state.step), sorted(state.variables)
      (0, ['params'])
      >>> state.apply_fn(state.variables, jnp.zeros((3, 2))).shape  # the model's logits
      (3, 2)
    """

    step: jnp.ndarray
    params: Any
    opt_state: optax.OptState
    collections: Mapping[str, Any]
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    loss_fn: LossFn = struct.field(pytree_node=False)

    @property
    def variables(self) -> dict:
        """``{'params': params, **collections}``, what ``apply_fn`` takes."""
        return {"params": self.params, **self.collections}


def create_train_state(
    model: nn.Module,
    key: jax.Array,
    sample_x: jnp.ndarray,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
) -> TrainState:
    """Initialises ``model`` on ``sample_x`` and the optimiser.

    One example is enough, except for layers with data-dependent initialisation
    (:class:`~flowclass.bijectors.ActNorm`), which want a representative batch.
    ``loss_fn(apply_fn, variables, x, y) -> (loss, aux)`` is the objective the steps minimise.

    Raises:
      TypeError: ``model`` is not a Flax module, ``key`` not a JAX PRNG key, ``tx`` not an optax
        transformation, ``loss_fn`` not callable.
      ValueError: ``sample_x`` is not a finite float batch the model takes (for an image flow:
        pixels in [0, 1]), or the initialised variables are not finite (the path is named).

    Example:
      >>> import jax, jax.numpy as jnp, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> int(state.step), state.loss_fn is fc.flow_nll
      (0, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a flax.linen.Module; got {type(model).__name__}.")
    key = check_key(key, "key")
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise TypeError(f"tx must be an optax.GradientTransformation (with init and update); got {type(tx).__name__}.")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a function loss_fn(apply_fn, variables, x, y) -> (loss, aux); "
                        f"got {type(loss_fn).__name__}.")
    sample_x = _as_array(sample_x, "sample_x")
    try:
        event_shape = tuple(model.event_shape)  # a FlowClassifier knows its inputs
    except Exception:  # a model that does not say: its own call checks the shape
        event_shape = tuple(np.shape(sample_x)[1:])
    check_inputs(sample_x, event_shape, name="sample_x")
    _check_domain(model.apply, sample_x, name="sample_x")
    variables = dict(_initialise(model, key, jnp.asarray(sample_x)))
    bad = _non_finite_paths(variables)
    if bad:
        # sample_x was checked finite above, and ClassGaussians and ActNorm refuse or bound degenerate values,
        # so what remains is a layer's own initialiser or a data-dependent one overflowing on huge inputs.
        raise ValueError(f"the model's initial variables hold NaN/inf at {_describe_paths(bad)}: sample_x is finite, "
                         "so check the initialisers and fixed values of the layers named (e.g. a custom layer's), "
                         "and whether sample_x's magnitudes (largest |value| "
                         f"{float(np.max(np.abs(np.asarray(sample_x, np.float64)))):.3g}) overflow a data-dependent "
                         "initialisation such as ActNorm's in the model's dtype.")
    params = variables.pop("params", {})
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=jax.jit(tx.init)(params),  # one program, not an eager zeros per parameter shape
        collections=variables,
        apply_fn=model.apply,
        tx=tx,
        loss_fn=loss_fn,
    )



def _as_means(aux: Mapping[str, Any], batch: int) -> Metrics:
    """A loss's ``aux`` as :class:`Mean` pairs: plain scalars are means over the ``batch`` examples."""
    count = jnp.asarray(batch, jnp.result_type(float))  # float32, or float64 under jax_enable_x64
    return {k: v if isinstance(v, Mean) else Mean(v * batch, count) for k, v in aux.items()}


def _values(metrics: Metrics) -> dict:
    return {k: m.total / m.count for k, m in metrics.items()}


def _train_step(state: TrainState, batch: tuple[jnp.ndarray, jnp.ndarray],
                key: jax.Array | None = None) -> tuple[TrainState, Metrics]:
    x, y = batch
    extra = {"key": key, "step": state.step} if needs_key(state.loss_fn) else {}

    def objective(params):
        return state.loss_fn(state.apply_fn, {"params": params, **state.collections}, x, y, **extra)

    (_, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), _as_means(aux, x.shape[0])


def _eval_sums(state: TrainState, batch: tuple[jnp.ndarray, jnp.ndarray]) -> Metrics:
    x, y = batch
    return _as_means(state.loss_fn(state.apply_fn, state.variables, x, y)[1], x.shape[0])


_eval_sums_jit = jax.jit(_eval_sums)
_train_step_jit = jax.jit(lambda state, batch, key: _values_step(state, batch, key), donate_argnums=0)


def _values_step(state: TrainState, batch, key=None) -> tuple[TrainState, dict]:
    state, metrics = _train_step(state, batch, key)
    return state, _values(metrics)


_eval_step_jit = jax.jit(lambda state, batch: _values(_eval_sums(state, batch)))


def train_step(state: TrainState, batch: tuple[jnp.ndarray, jnp.ndarray], *,
               key: jax.Array | None = None) -> tuple[TrainState, dict]:
    """One optimiser step on ``batch = (x, y)``: ``(state, batch) -> (state, metrics)``, the batch's
    metrics as scalar means (a semi-supervised loss's labelled-only metrics are NaN on a batch
    without labels). ``key`` (a JAX PRNG key) is required when the loss takes one
    (:func:`~flowclass.losses.needs_key`: a consistency term, or a weight ramped over the optimiser
    steps) and ignored otherwise.

    Jitted with ``state`` donated: do not reuse the ``state`` you passed in. The batch is checked
    first as :func:`check_data` says (shapes and dtypes always; values, i.e. finiteness, pixel
    range and label range, when the arrays are concrete, which costs a copy of the batch to the
    host for device arrays; inside your own ``jax.jit`` only shapes are checked). :func:`fit`
    runs its steps on an unchecked compiled path after checking the whole training set once.

    Raises:
      TypeError: ``state`` is not a :class:`TrainState`, or ``batch`` not a pair ``(x, y)``.
      ValueError: bad inputs or labels, named ``batch x`` / ``batch y`` (see :func:`check_data`);
        no ``key`` for a loss that needs one.

    Example:
      >>> import jax, jax.numpy as jnp, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> state, aux = train_step(state, (jnp.ones((8, 2)), jnp.zeros(8, jnp.int32)))
      >>> int(state.step), sorted(aux)[:3]
      (1, ['accuracy', 'bits_per_dim', 'cross_entropy'])
      >>> train_step(state, (jnp.ones((8, 2)), jnp.full(8, 2)))
      Traceback (most recent call last):
      ValueError: batch y must hold labels in [0, 2); got values in [2, 2].
    """
    if needs_key(getattr(state, "loss_fn", None)):
        if key is None:
            raise ValueError("key must be a JAX PRNG key (jax.random.key(seed)): state.loss_fn takes one (a "
                             "consistency term draws random numbers, a ramped weight reads the step); got key=None.")
        key = check_key(key)
    else:
        key = None
    return _train_step_jit(state, _check_batch(state, batch), key)


def eval_step(state: TrainState, batch: tuple[jnp.ndarray, jnp.ndarray]) -> dict:
    """The loss function's metrics on ``batch = (x, y)`` as scalar means, without updating.

    Checks ``batch`` as :func:`train_step` does; the computation is jitted.

    Example:
      >>> import jax, jax.numpy as jnp, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> aux = eval_step(state, (jnp.ones((8, 2)), jnp.zeros(8, jnp.int32)))
      >>> float(aux["loss"]) == float(aux["nll"]), int(state.step)
      (True, 0)
    """
    return _eval_step_jit(state, _check_batch(state, batch))


def _check_batch(state: TrainState, batch) -> tuple:
    _check_state(state)
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(f"batch must be a pair (x, y) of arrays; got {type(batch).__name__}.")
    x, y = (_as_array(a, f"batch {n}") for a, n in zip(batch, "xy", strict=True))
    check_data(state, x, y, name="batch")
    return x, y


def _state_mesh(state_or_variables) -> jax.sharding.Mesh | None:
    """The mesh a (replicated) state or variable tree lives on, if it spans several devices."""
    params = state_or_variables.params if isinstance(state_or_variables, TrainState) else state_or_variables
    leaves = jax.tree.leaves(params)
    spec = getattr(leaves[0], "sharding", None) if leaves else None
    if (
        isinstance(spec, jax.sharding.NamedSharding)
        and isinstance(spec.mesh, jax.sharding.Mesh)
        and spec.mesh.devices.size > 1
    ):
        return spec.mesh
    return None


def _place(batch, mesh: jax.sharding.Mesh | None):
    """Puts a batch next to a state on ``mesh``: split over devices when it divides evenly."""
    if mesh is None:
        return jax.tree.map(jnp.asarray, batch)
    divisible = len(jax.tree.leaves(batch)[0]) % mesh.devices.size == 0
    target = sharding.batch_sharding(mesh) if divisible else sharding.replicated(mesh)
    return jax.device_put(batch, target)



def accepts_unlabelled(loss_fn: LossFn) -> bool:
    """Whether ``loss_fn`` handles unlabelled examples (label ``-1``): its ``accepts_unlabelled``
    attribute (:class:`~flowclass.losses.SemiSupervisedLoss`), false for a plain function.

    >>> import flowclass as fc
    >>> accepts_unlabelled(fc.flow_nll), accepts_unlabelled(fc.make_semi_supervised_loss())
    (False, True)
    """
    return bool(getattr(loss_fn, "accepts_unlabelled", False))


def check_data(state: TrainState, x: np.ndarray | jax.Array, y: np.ndarray | jax.Array, *, name: str) -> None:
    """Validates a split ``(x, y)`` for ``state``'s model and loss before any work is done.

    ``x``: a non-empty, finite float batch (for an image flow, whose first layer is a
    :class:`~flowclass.bijectors.LogitTransform`: pixels in ``[0, 1]``); ``y``: one integer label
    per example (any integer dtype), in ``[0, K)`` with ``K`` the model's ``num_classes`` (else read
    from its logits), or
    ``-1`` (unlabelled) when the loss accepts it. Raises ValueError naming ``name`` (e.g. ``'train'``).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> check_data(state, np.zeros((3, 2), np.float32), np.array([0, 1, 2]), name="train")
      Traceback (most recent call last):
      ValueError: train y must hold labels in [0, 2); got values in [0, 2].
    """
    if not isinstance(x, (np.ndarray, jax.Array)) or not isinstance(y, (np.ndarray, jax.Array)):
        raise TypeError(f"{name} must be a pair (x, y) of arrays; got ({type(x).__name__}, {type(y).__name__}).")
    check_inputs(x, np.shape(x)[1:], name=f"{name} x")
    if np.ndim(y) == 1 and len(y) != len(x):
        raise ValueError(f"{name} y has {len(y)} labels but {name} x has {len(x)} examples.")
    _check_domain(state.apply_fn, x, name=f"{name} x")
    unlabelled_ok = accepts_unlabelled(state.loss_fn)
    if not unlabelled_ok and isinstance(y, np.ndarray) and np.issubdtype(y.dtype, np.integer) and np.any(y == -1):
        raise ValueError(f"{name} y holds unlabelled examples (label -1), but this loss does not accept them; "
                         "use a loss that handles unlabelled examples, such as make_semi_supervised_loss().")
    if not unlabelled_ok:
        check_no_unlabelled(y, name=f"{name} y")
    num_classes = _num_classes(state.apply_fn, state.variables, np.shape(x)[1:], np.dtype(x.dtype))
    if num_classes is not None:
        check_labels(y, num_classes, batch=len(x), name=f"{name} y", allow_unlabelled=unlabelled_ok)
    elif len(y) != len(x):
        raise ValueError(f"{name} y has {len(y)} labels but {name} x has {len(x)} examples.")


_NUM_CLASSES: dict = {}


def _num_classes(apply_fn, variables, event_shape: tuple, dtype: np.dtype) -> int | None:
    """``K``: the model's ``num_classes`` attribute (:class:`~flowclass.FlowClassifier`,
    :class:`~flowclass.FNN`, :class:`~flowclass.CNN`), else the shape of its logits (traced once per
    model and input shape), or ``None`` for a model whose call does not give ``(batch, K)`` logits.
    The attribute spares tracing the whole model once more (the multi-scale flow's train step
    lowered in 1.63-1.64 s instead of 1.83 s, separate processes, not alternated)."""
    declared = getattr(getattr(apply_fn, "__self__", None), "num_classes", None)
    if isinstance(declared, int) and not isinstance(declared, bool) and declared >= 1:
        return declared
    try:
        cache_key: Any = (apply_fn, tuple(event_shape), dtype)
        hash(cache_key)
    except TypeError:
        cache_key = None
    if cache_key is not None and cache_key in _NUM_CLASSES:
        return _NUM_CLASSES[cache_key]
    try:
        logits = jax.eval_shape(apply_fn, variables, jax.ShapeDtypeStruct((1, *event_shape), dtype))
        num_classes = int(logits.shape[-1]) if len(logits.shape) == 2 else None
    except Exception:  # a model whose call does not give logits: the loss checks its labels itself
        num_classes = None
    if cache_key is not None:
        _NUM_CLASSES[cache_key] = num_classes
    return num_classes


def _input_bounds(apply_fn: Callable) -> tuple[float, float] | None:
    """The box the inputs of ``apply_fn``'s model must lie in (:attr:`FlowClassifier.input_bounds
    <flowclass.FlowClassifier.input_bounds>`: ``(0.0, 1.0)`` for the image flows), else ``None``.

    Example:
      >>> import flowclass as fc
      >>> _input_bounds(fc.image_realnvp().apply), _input_bounds(fc.tabular_realnvp(2, 2).apply)
      ((0.0, 1.0), None)
    """
    bounds = getattr(getattr(apply_fn, "__self__", None), "input_bounds", None)
    return (float(bounds[0]), float(bounds[1])) if bounds is not None else None


def _check_domain(apply_fn: Callable, x, *, name: str) -> None:
    """Rejects inputs outside the model's :func:`input_bounds` (concrete arrays only)."""
    bounds = _input_bounds(apply_fn)
    if bounds is None or isinstance(x, jax.core.Tracer):
        return
    low, high = float(np.min(x)), float(np.max(x))
    if low < bounds[0] or high > bounds[1]:
        hint = " (8-bit pixels? divide by 255)" if high > 1.0 and high <= 255.0 and low >= 0.0 else ""
        raise ValueError(f"{name} must hold pixels in [{bounds[0]:g}, {bounds[1]:g}] for this image flow (its first "
                         f"layer is a LogitTransform); got values in [{low:g}, {high:g}]{hint}.")


def _check_state(state: Any, name: str = "state") -> None:
    if not isinstance(state, TrainState):
        raise TypeError(f"{name} must be a flowclass.TrainState (see create_train_state); got {type(state).__name__}.")


def _as_array(value: Any, name: str):
    """A JAX or NumPy array as it is; anything NumPy reads as an array (lists, scalars) as a NumPy array."""
    if isinstance(value, (np.ndarray, jax.Array)):
        return value
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be an array; got {type(value).__name__} ({error}).") from error
    if array.dtype == object:
        raise TypeError(f"{name} must be an array of numbers; got {type(value).__name__} that NumPy reads as objects.")
    if np.issubdtype(array.dtype, np.floating) and array.dtype != np.float32 and not jax.config.read("jax_enable_x64"):
        array = array.astype(np.float32)  # Python floats: float32 unless 64-bit mode is on
    return array


def _as_split(split: Any, name: str) -> tuple:
    if not isinstance(split, (tuple, list)) or len(split) != 2:
        raise TypeError(f"{name} must be a pair (x, y); got {type(split).__name__}.")
    return _as_array(split[0], f"{name} x"), _as_array(split[1], f"{name} y")


def evaluate(state: TrainState, x: np.ndarray | jax.Array, y: np.ndarray | jax.Array, *,
             batch_size: int = 4096) -> dict[str, float]:
    """The loss function's metrics over ``(x, y)``, each averaged over the examples it is defined
    on (in batches of ``batch_size``; e.g. a semi-supervised loss's accuracy over the labelled
    examples, NaN when there are none).

    Raises:
      TypeError: ``state`` is not a :class:`TrainState`.
      ValueError: bad inputs or labels (see :func:`check_data`), ``batch_size`` not an integer ``>= 1``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> metrics = evaluate(state, jnp.zeros((10, 2)), jnp.zeros(10, jnp.int32), batch_size=4)
      >>> sorted(metrics)
      ['accuracy', 'bits_per_dim', 'cross_entropy', 'loss', 'nll', 'nll_per_dim']
    """
    _check_state(state)
    _check_size(batch_size, "batch_size")
    x, y = _as_split((x, y), "evaluate")
    check_data(state, x, y, name="evaluate")
    return _mean_values(_evaluate_sums(state, x, y, batch_size))


def _evaluate_sums(state: TrainState, x, y, batch_size: int, eval_sums: Callable = _eval_sums_jit) -> dict[str, Mean]:
    mesh = _state_mesh(state)
    parts = [eval_sums(state, _place((x[i : i + batch_size], y[i : i + batch_size]), mesh))
             for i in range(0, len(x), batch_size)]
    return _sum_metrics(jax.device_get(parts))


def _sum_metrics(parts: list[Metrics]) -> dict[str, Mean]:
    """Sums a list of metric dicts on the host (float64)."""
    return {k: Mean(math.fsum(float(p[k].total) for p in parts), math.fsum(float(p[k].count) for p in parts))
            for k in parts[0]}


def _mean_values(metrics: Mapping[str, Mean]) -> dict[str, float]:
    return {k: m.total / m.count if m.count else float("nan") for k, m in metrics.items()}


def _check_size(value, name: str) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")


_INPUT_SPACE_METHODS = (None, "logits", "predict", "predict_proba", "class_log_likelihoods", "marginal_log_prob",
                        "encode", "log_prob", "bits_per_dim")


@functools.partial(jax.jit, static_argnames=("apply_fn", "method"))
def _apply(apply_fn, variables, x, method=None):
    return apply_fn(variables, x, method=method) if method else apply_fn(variables, x)


def predict_logits(
    apply_fn: Callable,
    variables: Mapping[str, Any],
    x: np.ndarray | jax.Array,
    *,
    batch_size: int = 4096,
    method: str | None = None,
) -> np.ndarray:
    """``apply_fn(variables, x)`` (logits, or another ``method``'s output) over ``x`` in batches.

    ``x`` is anything NumPy reads as a float array of shape ``(n, ...)``, ``n >= 1``.

    Raises:
      TypeError: ``apply_fn`` not callable, ``variables`` not a mapping, ``method`` not a string.
      ValueError: ``x`` not a non-empty finite float batch (for an image flow and a method on
        inputs: pixels outside [0, 1]); ``batch_size`` not an integer ``>= 1``.

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> predict_logits(model.apply, variables, jnp.zeros((10, 2)), batch_size=4).shape
      (10, 2)
      >>> predict_logits(model.apply, variables, jnp.zeros((10, 2)), method="marginal_log_prob").shape
      (10,)
    """
    if not callable(apply_fn):
        raise TypeError(f"apply_fn must be a model's apply function (e.g. model.apply); got {type(apply_fn).__name__}.")
    if not isinstance(variables, Mapping):
        raise TypeError(f"variables must be a mapping of variable collections ({{'params': ...}}); "
                        f"got {type(variables).__name__}.")
    _check_size(batch_size, "batch_size")
    if method is not None and not isinstance(method, str):
        raise TypeError(f"method must be the name of a model method (a str) or None; got {type(method).__name__}.")
    x = _as_array(x, "x")
    check_inputs(x, np.shape(x)[1:], name="x")
    if method in _INPUT_SPACE_METHODS:
        _check_domain(apply_fn, x, name="x")
    mesh = _state_mesh(variables)
    return np.concatenate([
        np.asarray(_apply(apply_fn, variables, _place(x[i : i + batch_size], mesh), method))
        for i in range(0, len(x), batch_size)
    ])



class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss or state.

    Attributes:
      best_state: the selected state of the last completed epoch (finite), or ``None`` when no
        epoch completed (the state passed to :func:`fit` is then untouched: ``fit`` trains a copy).
      epoch: the 1-based epoch that failed (``None`` when not known).
      quantity: the first non-finite quantity: ``'train_loss'``, or the path of the first
        non-finite array of the state (e.g. ``'params/flow/layers_0/...'``, ``'opt_state/...'``).

    The message names the quantity and the causes that fit it.
    """

    def __init__(self, message: str, best_state: TrainState | None, *, epoch: int | None = None,
                 quantity: str | None = None):
        super().__init__(message)
        self.best_state = best_state
        self.epoch = epoch
        self.quantity = quantity


def _leaf_name(path) -> str:
    def name(key) -> str:
        for attribute in ("key", "name", "idx"):
            if hasattr(key, attribute):
                return str(getattr(key, attribute))
        return str(key)
    return "/".join(name(k) for k in path)


def _float_leaves(tree) -> tuple[list[str], list]:
    """Paths and leaves of the floating-point arrays of ``tree`` (integer counters cannot be NaN)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    pairs = [(_leaf_name(path), leaf) for path, leaf in flat
             if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return [p for p, _ in pairs], [leaf for _, leaf in pairs]


def _non_finite_paths(tree: Any) -> list[str]:
    """The paths (``'params/flow/layers_0/kernel'``) of the floating-point arrays of ``tree`` that
    hold a NaN or inf: parameters first, then other variable collections, then the optimiser
    state, each in tree order.

    Example:
      >>> import jax.numpy as jnp
      >>> _non_finite_paths({"params": {"a": jnp.ones(2), "b": jnp.array([1.0, jnp.nan])}, "step": jnp.int32(3)})
      ['params/b']
    """
    # Checked on the host after one transfer: a jitted check compiles once per tree structure, and over
    # the 552 arrays of the multi-scale image flow's state (4.7 M numbers) that compile took 1.5 s
    # against 11 ms on the host (2-core CPU), two or three times per fit. On an accelerator it costs one
    # host copy of the state per epoch (tens of MB for this library's image flows).
    paths, leaves = _float_leaves(tree)
    bad = [path for path, leaf in zip(paths, jax.device_get(leaves), strict=True) if not np.isfinite(leaf).all()]
    return sorted(bad, key=_blame_order)  # stable: parameters first, then other variables, then the optimiser


def _blame_order(path: str) -> int:
    parts = path.split("/")
    return next((i for i, part in enumerate(("params", "collections", "opt_state")) if part in parts[:2]), 3)


def _describe_paths(paths: list[str]) -> str:
    more = f" (and {len(paths) - 1} more array(s))" if len(paths) > 1 else ""
    return f"{paths[0]}{more}"


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
      state: the train state with the best validation score (the selected model; with
        :func:`~flowclass.params_ema` in the optimiser, its averaged parameters).
      last_state: the state after the last step.
      best_epoch: 1-based epoch of the selected model.
      epochs_run: epochs completed (fewer than asked when the time budget ran out).
      history: per-epoch arrays ``train_<metric>`` (means over the epoch's steps),
        ``val_<metric>`` and ``epoch_s``.
      compile_s: time to compile the epoch's step-block program; train_s: time spent training after that.
      train_samples_per_s: training examples processed per second of ``train_s``.

    Example (see :func:`fit` for a full run):
      >>> import dataclasses
      >>> [field.name for field in dataclasses.fields(FitResult)][:4]
      ['state', 'last_state', 'best_epoch', 'epochs_run']
    """

    state: TrainState
    last_state: TrainState
    best_epoch: int
    epochs_run: int
    history: dict[str, np.ndarray]
    compile_s: float
    train_s: float
    train_samples_per_s: float


_LOSS_KEY_DATA = 0x7F4A7C15  # fold_in(key, d) equals split(key, n)[d] for d < n: keep clear of augment's splits


def _run_block(state, data, order, count, key, augment=None, batch_spec=None):
    """Train steps over the first ``count`` rows of ``order`` (``(max_steps, batch)`` indices into
    ``data``; the rows past ``count`` are padding); returns the state and the step metrics summed.

    The trip count is an argument, so one compiled program serves every block length of a fit;
    step ``i`` draws its key as ``split(key, max_steps)[i]``, which does not depend on ``max_steps``
    (threefry's partitionable split)."""
    keys = jax.random.split(key, order.shape[0])

    # Jitted inside the block so that its one trace (by eval_shape, for the sums' shapes) serves the
    # loop body too: tracing the model and its gradient twice cost each fit about 0.2 s (moons flow)
    # to 1 s (multi-scale image flow). XLA inlines the call: the compiled block is the same. The
    # loop index is a strong int32 on both sides (a weak one in the loop, or int64 under x64, would
    # miss the trace cache and trace again).
    @jax.jit
    def one_step(state, i, data, order, keys):
        (x_all, y_all), idx, step_key = data, order[i], keys[i]
        x, y = x_all[idx], y_all[idx]
        if batch_spec is not None:
            x = jax.lax.with_sharding_constraint(x, batch_spec)
            y = jax.lax.with_sharding_constraint(y, batch_spec)
        if augment is not None:
            x = augment(step_key, x)
        return _train_step(state, (x, y), jax.random.fold_in(step_key, _LOSS_KEY_DATA))

    def body(i, carry):
        state, sums = one_step(carry[0], i, data, order, keys)
        return state, jax.tree.map(jnp.add, carry[1], sums)

    sums = jax.eval_shape(one_step, state, jax.ShapeDtypeStruct((), jnp.int32), data, order, keys)[1]
    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), sums)
    return jax.lax.fori_loop(jnp.int32(0), count, body, (state, zeros))


def _initialise(model: nn.Module, key: jax.Array, sample_x: jax.Array) -> Any:
    """``model.init(key, sample_x)``, compiled with :func:`flowclass.runtime.quick_compile_options`
    on a CPU: it runs once, and XLA's CPU compiler spends about 0.2 s on each of its random draws
    (7.7 s for the ``'fast'`` image flow, 3.1 s this way; 9.9 s / 5.0 s multi-scale). The values
    differ from a default-compiled ``jax.jit(model.init)`` in the last bits (data-dependent
    initialisations sum in another order)."""
    lowered = jax.jit(model.init).lower(key, sample_x)
    return lowered.compile(quick_compile_options() if jax.default_backend() == "cpu" else None)(key, sample_x)


def _fresh(fn: Callable) -> Callable:
    """A new function object that calls ``fn``, to be jitted once per :func:`fit`.

    JAX keys its compilation caches on the jitted Python function (weakly) and on the static
    parts of the arguments (strongly): the state's optimiser, loss function and model, which are
    new objects in every ``fit`` of, e.g., :class:`flowclass.sklearn.RealNVPClassifier`. A
    module-level jit would therefore keep one set of executables per fit for the life of the
    process (about 450 memory maps each on CPU: after ~140 fits ``mmap`` hits Linux's
    ``vm.max_map_count`` and XLA's compiler crashes). Jitting a fresh function per fit lets its
    executables go with it.
    """

    @functools.wraps(fn)
    def call(*args, **kwargs):
        return fn(*args, **kwargs)

    return call


def _block_layout(steps: int, max_steps_per_call: int) -> list[int]:
    """Block lengths covering ``steps``: equal blocks of at most ``max_steps_per_call``, plus at
    most one shorter remainder block."""
    size = min(steps, max_steps_per_call)
    blocks = [size] * (steps // size)
    return blocks + [steps % size] if steps % size else blocks


class EpochRunner:
    """One training epoch over in-memory data, in compiled blocks of optimiser steps.

    The training set is put on the device(s) once; each epoch shuffles it with the epoch's key
    (dropping the last partial batch) and runs its ``len(x) // batch_size`` steps in blocks of at
    most ``max_steps_per_call``, with ``augment(key, x)`` inside the compiled step. A block is a
    loop whose trip count is an argument, so one program is compiled per runner whatever the
    block lengths (a shorter last block used to compile a second program of the whole train
    step). The metrics and the state are fetched once per epoch (the state's arrays then checked
    finite on the host): no host sync per block, except to read the clock when a ``deadline`` is
    set. The state passed in is donated.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> x, y = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32), np.zeros(64, np.int32)
      >>> runner = EpochRunner(state, (x, y), batch_size=16, max_steps_per_call=3)
      >>> runner.blocks
      [3, 1]
      >>> state, metrics, out_of_time, non_finite = runner.run(state, jax.random.key(1))
      >>> int(state.step), metrics["loss"].count, out_of_time, non_finite
      (4, 64.0, False, [])
    """

    def __init__(self, state: TrainState, train: tuple, *, batch_size: int, max_steps_per_call: int = 100,
                 augment: Augment | None = None, mesh: jax.sharding.Mesh | None = None):
        self.num_examples, self.batch_size = len(train[0]), batch_size
        self.steps = self.num_examples // batch_size
        self.blocks = _block_layout(self.steps, max_steps_per_call)
        self.block_steps = self.blocks[0]  # rows of the index array each compiled call takes
        batch_spec = sharding.batch_sharding(mesh) if mesh is not None else None
        place = (lambda a: jax.device_put(a, sharding.replicated(mesh))) if mesh is not None else jnp.asarray
        self.data = (place(train[0]), place(train[1]))
        start = time.perf_counter()
        run_block = jax.jit(_fresh(_run_block), static_argnames=("augment", "batch_spec"), donate_argnums=0)
        self._compiled = run_block.lower(state, self.data, jnp.zeros((self.block_steps, batch_size), jnp.int32),
                                         jnp.int32(0), jax.random.key(0), augment=augment,
                                         batch_spec=batch_spec).compile()
        self.compile_s = time.perf_counter() - start
        self.steps_run = 0  # steps trained by this runner, over all its epochs

    def run(self, state: TrainState, key: jax.Array, *, deadline: float | None = None,
            on_block: Callable[[int], None] | None = None) -> EpochOutcome:
        """Trains one epoch; returns an :class:`EpochOutcome` ``(state, metrics, out_of_time,
        non_finite)``. With ``deadline`` (a ``time.perf_counter()`` value) it stops after the first
        block that ends past it. The metrics and the state are fetched once, after the last block
        (the epoch's one host sync), and the state's arrays checked finite on the host."""
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 0), self.num_examples), np.int32)
        order = order[: self.steps * self.batch_size].reshape(self.steps, self.batch_size)
        parts, row, out_of_time = [], 0, False
        for call, size in enumerate(self.blocks):
            block_key = jax.random.fold_in(key, call + 1)
            rows = np.zeros((self.block_steps, self.batch_size), np.int32)  # padded past `size`
            rows[:size] = order[row : row + size]
            state, sums = self._compiled(state, self.data, rows, np.int32(size), block_key)
            parts.append(sums)  # fetched once per epoch
            row += size
            self.steps_run += size
            if on_block is not None:
                on_block(size)
            if deadline is not None:
                jax.block_until_ready(sums)  # the clock must see the work, not its dispatch
                if time.perf_counter() > deadline:
                    out_of_time = True
                    break
        arrays = _state_arrays(state)
        return EpochOutcome(state, _sum_metrics(jax.device_get(parts)), out_of_time, _non_finite_paths(arrays))


class EpochOutcome(NamedTuple):
    """What :meth:`EpochRunner.run` returns.

    Attributes:
      state: the state after the epoch's last step.
      metrics: the training metrics summed over the steps, as :class:`~flowclass.losses.Mean` pairs.
      out_of_time: the ``deadline`` stopped the epoch early.
      non_finite: paths of the state's arrays (``params/...``, ``opt_state/...``) that hold NaN or
        inf after the epoch, parameters first (see :func:`_non_finite_paths`); empty when the state is finite.

    >>> EpochOutcome._fields
    ('state', 'metrics', 'out_of_time', 'non_finite')
    """

    state: TrainState
    metrics: dict[str, Mean]
    out_of_time: bool
    non_finite: list[str]


def _weights(state: TrainState) -> dict:
    """What model selection keeps of a state: its parameters and other variable collections."""
    return {"params": state.params, "collections": state.collections}


def _state_arrays(state: TrainState) -> dict:
    """What a resumed run needs of a state: its weights, the optimiser state and the step."""
    return {"step": state.step, "opt_state": state.opt_state, **_weights(state)}


@dataclasses.dataclass
class Selection:
    """Keeps the weights of the epoch with the best validation ``select`` metric: the lowest, or the
    highest for ``'accuracy'`` and names ending in ``'_accuracy'``. A NaN score is never selected.

    Example:
      >>> sel = Selection("accuracy")
      >>> sel.offer(1, {"accuracy": 0.9}, weights={"w": 1}), sel.offer(2, {"accuracy": 0.8}, weights={"w": 2})
      (True, False)
      >>> sel.best_epoch, int(sel.best["w"])
      (1, 1)
    """

    select: str
    best_epoch: int = 0
    best_score: float = math.inf
    best: Any = None

    @property
    def maximize(self) -> bool:
        return self.select == "accuracy" or self.select.endswith("_accuracy")

    def offer(self, epoch: int, metrics: Mapping[str, float], *, weights: Any) -> bool:
        """Keeps ``weights`` (copied) if ``metrics[select]`` beats the best so far; returns whether it did."""
        if self.select not in metrics:
            raise ValueError(f"select={self.select!r} is not a validation metric; they are {sorted(metrics)}.")
        score = -metrics[self.select] if self.maximize else metrics[self.select]
        if not score < self.best_score:
            return False
        self.best_epoch, self.best_score = epoch, float(score)
        self.best = jax.tree.map(jnp.copy, weights)
        return True


class FitCheckpoint:
    """:func:`fit`'s checkpoints in ``directory``: after every epoch the full train state, the
    selected weights and the history (atomic; the newest two kept; see :class:`~flowclass.Checkpointer`).

    Opening it refuses, before any training, a directory that is not a writable directory with
    room for a checkpoint, and one that already holds checkpoints unless ``resume`` (they belong
    to an earlier run: nothing of it is overwritten or deleted).

    Example:
      >>> import jax, jax.numpy as jnp, optax, tempfile, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> directory, selection = tempfile.mkdtemp(), Selection("loss")
      >>> checkpoint = FitCheckpoint(directory, state, resume=False)
      >>> checkpoint.save(1, state, selection, history=[{"val_loss": 1.0}])
      >>> checkpoint.restore(state, selection)[1:]
      ([{'val_loss': 1.0}], 1)
      >>> checkpoint.close()
    """

    def __init__(self, directory: str | Path, state: TrainState, *, resume: bool):
        self.checkpointer = Checkpointer(directory)
        if self.checkpointer.steps and not resume:
            steps = self.checkpointer.steps
            self.checkpointer.close()
            raise FileExistsError(
                f"{self.checkpointer.directory} holds checkpoints of an earlier run (epochs {steps}); "
                "pass resume=True to continue it, or use an empty directory."
            )
        size = sum(leaf.nbytes for leaf in jax.tree.leaves(_state_arrays(state)) + jax.tree.leaves(_weights(state)))
        self.checkpointer.check_writable(needed_bytes=2 * size)

    def restore(self, state: TrainState, selection: Selection) -> tuple[TrainState, list[dict], int]:
        """``(state, history, epochs done)`` from the newest checkpoint (``state`` unchanged if none);
        fills ``selection``."""
        if self.checkpointer.latest_step is None:
            return state, [], 0
        items, meta = self.checkpointer.restore({"state": _state_arrays(state), "best": _weights(state)})
        if meta["select"] != selection.select:
            raise ValueError(f"the checkpoints in {self.checkpointer.directory} selected on {meta['select']!r}; "
                             f"this run selects on {selection.select!r}.")
        selection.best_epoch, selection.best_score = meta["best_epoch"], meta["best_score"]
        selection.best = items["best"]
        return state.replace(**items["state"]), meta["history"], meta["epoch"]

    def save(self, epoch: int, state: TrainState, selection: Selection, history: list[dict]) -> None:
        """Writes checkpoint ``epoch``.

        Raises:
          FloatingPointError: ``state`` or the selected weights hold NaN/inf (named): a
            non-finite state is never checkpointed.
        """
        best = selection.best if selection.best is not None else _weights(state)
        bad = _non_finite_paths({"state": _state_arrays(state), "best": best})
        if bad:
            raise FloatingPointError(f"refusing to checkpoint epoch {epoch}: it holds NaN/inf at "
                                     f"{_describe_paths(bad)}.")
        meta = {"epoch": epoch, "best_epoch": selection.best_epoch, "best_score": selection.best_score,
                "select": selection.select, "history": history}
        self.checkpointer.save(epoch, {"state": _state_arrays(state), "best": best}, meta)

    def close(self) -> None:
        self.checkpointer.close()


def _epoch_row(sums: Mapping[str, Mean], val_metrics: Mapping[str, float], seconds: float) -> dict[str, float]:
    row = {f"train_{k}": v for k, v in _mean_values(sums).items()}
    row.update({f"val_{k}": float(v) for k, v in val_metrics.items()})
    row["epoch_s"] = seconds
    return row


def _check_fit_inputs(state, train, val, config: TrainConfig, extra_val_metrics,
                      eval_sums: Callable) -> tuple[tuple, tuple]:
    _check_state(state)
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a flowclass.TrainConfig; got {type(config).__name__}.")
    train, val = _as_split(train, "train"), _as_split(val, "validation")
    for name, split in (("train", train), ("validation", val)):
        check_data(state, *split, name=name)
    if np.shape(val[0])[1:] != np.shape(train[0])[1:]:
        raise ValueError(f"validation x has examples of shape {np.shape(val[0])[1:]}; train x has "
                         f"{np.shape(train[0])[1:]}.")
    if config.batch_size > len(train[0]):
        raise ValueError(f"config.batch_size (train.batch_size) must be in [1, {len(train[0])}] (the training set "
                         f"size); got {config.batch_size}.")
    bad = _non_finite_paths(_state_arrays(state))
    if bad:
        raise ValueError(f"state holds NaN/inf before training, at {_describe_paths(bad)}: the model was built or "
                         "initialised with non-finite values (e.g. NaN class means, or an initialisation batch with "
                         "NaN), or it comes from a failed run; create a fresh one with create_train_state.")
    # as many rows as the first validation batch, so the probe reuses that batch's compiled program
    rows = min(config.eval_batch_size, len(val[0]), len(train[0]))
    probe, train_probe = jax.device_get((eval_sums(state, _place((val[0][:rows], val[1][:rows]), None)),
                                         eval_sums(state, _place((train[0][:rows], train[1][:rows]), None))))
    for name, sums in (("train", train_probe), ("validation", probe)):
        if not math.isfinite(float(sums["loss"].total)):
            raise ValueError(f"the loss is {float(sums['loss'].total)} on the first {name} examples at the state "
                             "passed in, before any update: the model cannot evaluate these inputs (they are finite "
                             "and their labels in range), so look at the model's fixed values or the data's scale.")
    if config.select not in probe:
        if extra_val_metrics is None:
            raise ValueError(f"config.select={config.select!r} is not a validation metric; they are {sorted(probe)}.")
    elif np.all(np.asarray(val[1]) == -1) and float(probe[config.select].count) == 0:
        raise ValueError(f"config.select={config.select!r} is computed on labelled examples, but the validation "
                         "set has none.")
    return train, val


def _first_bad_batch(state: TrainState, x, y, batch_size: int, eval_sums: Callable) -> int | None:
    """The first example of the first batch of ``(x, y)`` on which the loss at ``state`` is not finite."""
    mesh = _state_mesh(state)
    totals = [eval_sums(state, _place((x[i : i + batch_size], y[i : i + batch_size]), mesh))["loss"].total
              for i in range(0, len(x), batch_size)]
    bad = np.flatnonzero(~np.isfinite(np.asarray(jax.device_get(totals), np.float64)))
    return int(bad[0]) * batch_size if bad.size else None


def _non_finite_error(epoch: int, outcome: EpochOutcome, initial: TrainState, selection: Selection, train: tuple,
                      config: TrainConfig, *, augment, checkpoint: FitCheckpoint | None,
                      eval_sums: Callable) -> NonFiniteLossError:
    """The error for a failed epoch, naming the first non-finite quantity and the causes that fit it."""
    loss = outcome.metrics["loss"].total
    if not math.isfinite(loss):
        quantity = "train_loss"
        what = f"the training loss became {loss} in epoch {epoch}"
        if outcome.non_finite:
            what += f" (and the state holds NaN/inf, first at {_describe_paths(outcome.non_finite)})"
    else:
        quantity = outcome.non_finite[0]
        what = (f"the state after epoch {epoch}'s last update holds NaN/inf at {_describe_paths(outcome.non_finite)}, "
                "while the training loss (computed before each update) stayed finite: an update was non-finite")
    bad_at = _first_bad_batch(initial, train[0], train[1], config.eval_batch_size, eval_sums)
    if bad_at is not None:
        cause = (f"The loss is already non-finite at the parameters fit started from, on the training examples "
                 f"[{bad_at}, {bad_at + config.eval_batch_size}): the inputs passed the checks (finite, labels in "
                 "range, pixels in [0, 1] for image flows), so the model cannot evaluate them: look at its fixed "
                 "values (class means, scales) and the data's scale; a lower learning rate will not help.")
    else:
        cause = ("The loss was finite on every training example at the parameters fit started from, and the inputs "
                 "passed the checks (finite, labels in range, pixels in [0, 1] for image flows), so the data are not "
                 "the cause: the optimisation diverged. Try a lower learning rate, gradient clipping "
                 "(OptimConfig.clip_norm, make_optimizer(clip_norm=...)) or a warm-up (schedule='warmup_cosine').")
        if augment is not None:
            cause += " Also check that augment returns finite inputs in the model's domain (it runs after the checks)."
    if selection.best is not None:
        kept = (f"The best state so far (epoch {selection.best_epoch}, val_{selection.select} = "
                f"{abs(selection.best_score):.6g}) is in .best_state, with the optimiser state fit started from.")
        best_state = initial.replace(opt_state=jax.tree.map(jnp.copy, initial.opt_state), **selection.best)
    else:
        kept = ("No epoch completed, so .best_state is None; the state passed to fit is unchanged (fit trains a "
                "copy of it).")
        best_state = None
    if checkpoint is not None:
        last = checkpoint.checkpointer.latest_step
        kept += (f" Epoch {epoch} was not checkpointed; the newest checkpoint is "
                 + (f"epoch {last} (resume=True continues from it)." if last is not None else "none."))
    return NonFiniteLossError(f"{what}; stopped. {cause} {kept}", best_state, epoch=epoch, quantity=quantity)


def fit(
    state: TrainState,
    train: tuple,
    val: tuple,
    *,
    key: jax.Array,
    config: TrainConfig | None = None,
    augment: Augment | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    extra_val_metrics: Callable[[TrainState], Mapping[str, float]] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = True,
    desc: str = "train",
) -> FitResult:
    """Trains on in-memory ``train = (x, y)`` and selects the best epoch on ``val``.

    Every epoch runs an :class:`EpochRunner` (``config.epochs``, ``config.batch_size``,
    ``config.max_steps_per_call``; ``augment(key, x_batch)`` inside the compiled step), then
    :func:`evaluate` on ``val`` (``config.eval_batch_size``) and :class:`Selection` on
    ``val_<config.select>``. With parameter averaging in the optimiser (:func:`flowclass.params_ema`)
    the averaged parameters are validated, selected and returned in ``result.state``.
    Labels ``-1`` (unlabelled) are accepted when the loss accepts them (:func:`accepts_unlabelled`).

    Args:
      state: where training starts; not donated (``fit`` trains a copy), so it stays usable
        whatever happens, e.g. after a :class:`NonFiniteLossError`.
      key: a JAX PRNG key (``jax.random.key(seed)``; a legacy ``PRNGKey`` is accepted) for the
        shuffles and ``augment``.
      config: the loop's options (:class:`flowclass.config.TrainConfig`, default ``TrainConfig()``); ``time_budget_s``
        stops training after the block in which that much training time has passed.
      checkpoint_dir: save a :class:`FitCheckpoint` every ``config.checkpoint_every_s`` seconds and
        after the last epoch; a directory that already holds checkpoints is refused unless
        ``resume=True``, which continues from the newest.
      extra_val_metrics: called after every epoch with the validated state; its metrics join the
        history as ``val_<name>`` and ``config.select`` may name one.
      mesh: data-parallel mesh (:mod:`flowclass.sharding`); default: all devices when there are
        several. ``config.batch_size`` must divide evenly over it.

    Raises:
      ValueError, TypeError: before any training: bad data (see :func:`check_data`; also
        ``train``/``val`` length mismatches and a validation feature shape unlike the training
        one), a ``state`` that is not a finite :class:`TrainState` or whose loss is already
        non-finite on the data, a ``key`` that is not a PRNG key, a ``config`` that is not a
        :class:`~flowclass.config.TrainConfig` or a batch larger than the training set.
      OSError, FileExistsError: an unusable or occupied ``checkpoint_dir``, before any training.
      NonFiniteLossError: after an epoch whose training loss (summed over its steps) or
        resulting state (parameters, other variables, optimiser state; checked on the device,
        fetched with the epoch's metrics) is NaN/inf. That epoch is neither validated, selected
        nor checkpointed: a checkpoint never holds a non-finite state. The error names the
        first non-finite quantity and its likely cause, and carries the last selected state
        (``None`` if no epoch completed); the ``state`` passed in is untouched.

    Example:
      >>> import jax, optax, flowclass as fc
      >>> from flowclass.data import moons_splits, train_val_split
      >>> (x, y), _ = moons_splits(noise=0.1, n_samples=1000, n_train=800)
      >>> train, val = train_val_split(x, y, val_fraction=0.25, seed=0)
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), x[:1], optax.adam(1e-3), fc.flow_nll)
      >>> result = fc.fit(state, train, val, key=jax.random.key(1), config=fc.TrainConfig(epochs=3, batch_size=100),
      ...                 progress=False)
      >>> result.epochs_run, sorted(result.history)[:3]
      (3, ['epoch_s', 'train_accuracy', 'train_bits_per_dim'])
      >>> bool(result.history["val_loss"][-1] < result.history["val_loss"][0])
      True
    """
    config = TrainConfig() if config is None else config
    key = check_key(key, "key")
    eval_sums = jax.jit(_fresh(_eval_sums))  # this fit's executables go with it (see _fresh)
    train, val = _check_fit_inputs(state, train, val, config, extra_val_metrics, eval_sums)
    mesh = mesh if mesh is not None or jax.device_count() == 1 else sharding.data_mesh()
    if mesh is not None:
        sharding.check_divisible(config.batch_size, mesh)
        state = jax.device_put(state, sharding.replicated(mesh))
    selection, start_epoch = Selection(config.select), 0
    history: list[dict] = []
    checkpoint = FitCheckpoint(checkpoint_dir, state, resume=resume) if checkpoint_dir is not None else None
    try:
        if checkpoint is not None:
            state, history, start_epoch = checkpoint.restore(state, selection)
        initial, state = state, jax.tree.map(jnp.copy, state)  # the steps donate the copy; ``initial`` survives
        runner = EpochRunner(state, train, batch_size=config.batch_size, max_steps_per_call=config.max_steps_per_call,
                             augment=augment, mesh=mesh)
        averaging, train_start, epochs_run = find_ema(state.opt_state) is not None, time.perf_counter(), start_epoch
        deadline = None if config.time_budget_s is None else train_start + config.time_budget_s
        saved_at = train_start
        with tqdm(total=config.epochs * runner.steps, initial=start_epoch * runner.steps, desc=desc, unit="step",
                  disable=not progress, leave=False) as bar:
            for epoch in range(start_epoch + 1, config.epochs + 1):
                epoch_start = time.perf_counter()
                outcome = runner.run(state, jax.random.fold_in(key, epoch - 1), deadline=deadline,
                                     on_block=bar.update)
                state, sums, out_of_time = outcome.state, outcome.metrics, outcome.out_of_time
                if outcome.non_finite or not math.isfinite(sums["loss"].total):  # before validation and saving
                    raise _non_finite_error(epoch, outcome, initial, selection, train, config, augment=augment,
                                            checkpoint=checkpoint, eval_sums=eval_sums)
                selected = averaged(state) if averaging else state
                val_metrics = _mean_values(_evaluate_sums(selected, val[0], val[1], config.eval_batch_size, eval_sums))
                if extra_val_metrics is not None:
                    val_metrics.update({k: float(v) for k, v in extra_val_metrics(selected).items()})
                selection.offer(epoch, val_metrics, weights=_weights(selected))
                history.append(_epoch_row(sums, val_metrics, time.perf_counter() - epoch_start))
                bar.set_postfix(loss=f"{history[-1]['train_loss']:.4f}", val_loss=f"{history[-1]['val_loss']:.4f}")
                if checkpoint is not None and (out_of_time or epoch == config.epochs
                                               or time.perf_counter() - saved_at >= config.checkpoint_every_s):
                    checkpoint.save(epoch, state, selection, history)
                    saved_at = time.perf_counter()
                epochs_run = epoch
                if out_of_time:
                    break
    finally:
        if checkpoint is not None:
            checkpoint.close()
    train_s = time.perf_counter() - train_start
    examples = runner.steps_run * config.batch_size  # a time budget may stop an epoch after any block
    return FitResult(
        state=state.replace(**selection.best) if selection.best is not None else state,
        last_state=state, best_epoch=selection.best_epoch, epochs_run=epochs_run,
        history={k: np.asarray([row[k] for row in history]) for k in history[0]} if history else {},
        compile_s=runner.compile_s, train_s=train_s,
        train_samples_per_s=examples / train_s if train_s > 0 else float("nan"),
    )


def averaged(state: TrainState) -> TrainState:
    """``state`` with its parameters replaced by their running average (:func:`flowclass.params_ema`).

    Example:
      >>> import jax, jax.numpy as jnp, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> tx = optax.chain(optax.adam(1e-3), fc.params_ema(0.99))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), tx, fc.flow_nll)
      >>> state, _ = fc.train_step(state, (jnp.ones((8, 2)), jnp.zeros(8, jnp.int32)))
      >>> smooth = fc.averaged(state)  # after one step the average is the parameters themselves
      >>> jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.allclose(a, b)), smooth.params, state.params))
      True
    """
    return state.replace(params=averaged_params(state.opt_state))



def restore_selected(checkpoint_dir: str | Path, like: Mapping[str, Any]) -> tuple[dict, dict]:
    """The weights :func:`fit` selected, from its checkpoints in ``checkpoint_dir``, and the newest
    checkpoint's metadata (``epoch``, ``best_epoch``, ``best_score``, ``select``, ``history``).

    ``like = {"params": ..., "collections": ...}`` gives the shapes (arrays or
    ``jax.ShapeDtypeStruct``); only the selected weights are read.

    Raises:
      FileNotFoundError: ``checkpoint_dir`` is missing (it is not created) or holds no checkpoint.
      ValueError: the checkpoints were written by another model (the first difference is named).

    Example:
      >>> restore_selected("no/such/dir", {"params": {}, "collections": {}})
      Traceback (most recent call last):
      FileNotFoundError: no checkpoint directory .../no/such/dir.
    """
    with Checkpointer(checkpoint_dir, create=False) as checkpointer:
        if checkpointer.latest_step is None:
            raise FileNotFoundError(f"no checkpoint in {checkpointer.directory}: train with fit(checkpoint_dir=...).")
        items, meta = checkpointer.restore({"best": {"params": like["params"], "collections": like["collections"]}})
    return items["best"], meta


def restore_best(checkpoint_dir: str | Path, state: TrainState) -> tuple[TrainState, dict]:
    """The model :func:`fit` selected, from the checkpoints it wrote to ``checkpoint_dir``.

    ``state`` is a freshly created state of the same model (it gives the shapes); returns it
    with the selected epoch's parameters and collections (e.g. ActNorm's data-dependent
    initialisation), and the newest checkpoint's metadata (``epoch``, ``best_epoch``,
    ``best_score``, ``select``, ``history``). Only the selected weights are read.

    Raises:
      FileNotFoundError: ``checkpoint_dir`` is missing (it is not created) or holds no checkpoint.
      ValueError: the checkpoints were written by another model.

    Example:
      >>> import jax, optax, tempfile, flowclass as fc
      >>> from flowclass.data import moons_splits, train_val_split
      >>> (x, y), _ = moons_splits(noise=0.1, n_samples=600, n_train=500)
      >>> train, val = train_val_split(x, y, val_fraction=0.2, seed=0)
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> fresh = lambda: fc.create_train_state(model, jax.random.key(0), x[:1], optax.adam(1e-3), fc.flow_nll)
      >>> run_dir = tempfile.mkdtemp()
      >>> result = fc.fit(fresh(), train, val, key=jax.random.key(1), config=fc.TrainConfig(epochs=2, batch_size=100),
      ...                 checkpoint_dir=run_dir, progress=False)
      >>> restored, meta = fc.restore_best(run_dir, fresh())
      >>> meta["best_epoch"] == result.best_epoch
      True
      >>> jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), restored.params, result.state.params))
      True
    """
    weights, meta = restore_selected(checkpoint_dir, _weights(state))
    return state.replace(**weights), meta
