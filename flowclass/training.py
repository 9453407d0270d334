"""Functional training on optax: a train state, a jitted step, evaluation and a ``fit`` loop.

    state = create_train_state(model, key, x[:1], optax.adam(1e-3), loss_fn=flow_nll)
    state, aux = train_step(state, (x_batch, y_batch))      # jitted, donates ``state``
    result = fit(state, (x_train, y_train), (x_val, y_val), key=key, epochs=100)

``fit`` keeps the data on the device and runs blocks of steps inside ``lax.scan``,
evaluates the validation split after every epoch and keeps the parameters with the
best validation score: model selection never sees the test set.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from tqdm.auto import tqdm

from flowclass import sharding
from flowclass._validation import check_inputs, check_labels, check_no_unlabelled
from flowclass.averaging import averaged_params, find_ema
from flowclass.checkpoint import Checkpointer
from flowclass.data.labels import UNLABELLED
from flowclass.losses import LossFn


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

    Example:
      >>> import jax, jax.numpy as jnp, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> int(state.step), state.loss_fn is fc.flow_nll
      (0, True)
    """
    variables = dict(jax.jit(model.init)(key, jnp.asarray(sample_x)))
    params = variables.pop("params", {})
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        collections=variables,
        apply_fn=model.apply,
        tx=tx,
        loss_fn=loss_fn,
    )


def _train_step(state: TrainState, batch: tuple[jnp.ndarray, jnp.ndarray]) -> tuple[TrainState, dict]:
    x, y = batch

    def objective(params):
        return state.loss_fn(state.apply_fn, {"params": params, **state.collections}, x, y)

    (_, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), aux


def _eval_step(state: TrainState, batch: tuple[jnp.ndarray, jnp.ndarray]) -> dict:
    x, y = batch
    return state.loss_fn(state.apply_fn, state.variables, x, y)[1]


train_step = jax.jit(_train_step, donate_argnums=0)
train_step.__doc__ = """One optimiser step on ``batch = (x, y)``: ``(state, batch) -> (state, aux)``.

Jitted with ``state`` donated: do not reuse the ``state`` you passed in.

Example:
  >>> import jax, jax.numpy as jnp, optax, flowclass as fc
  >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
  >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
  >>> state, aux = train_step(state, (jnp.ones((8, 2)), jnp.zeros(8, jnp.int32)))
  >>> int(state.step), sorted(aux)[:3]
  (1, ['accuracy', 'bits_per_dim', 'cross_entropy'])
"""

eval_step = jax.jit(_eval_step)
eval_step.__doc__ = """The loss function's ``aux`` metrics on ``batch = (x, y)``, without updating.

Example:
  >>> import jax, jax.numpy as jnp, optax, flowclass as fc
  >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
  >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
  >>> aux = eval_step(state, (jnp.ones((8, 2)), jnp.zeros(8, jnp.int32)))
  >>> float(aux["loss"]) == float(aux["nll"]), int(state.step)
  (True, 0)
"""


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


def _labelled_metrics(loss_fn: LossFn) -> tuple[str, ...]:
    """The metrics a loss computes over labelled examples only (see ``make_semi_supervised_loss``)."""
    return tuple(getattr(loss_fn, "labelled_metrics", ()))


def _check_unlabelled(loss_fn: LossFn, allow_unlabelled: bool, labels: dict[str, Any]) -> None:
    if not allow_unlabelled:
        for name, y in labels.items():
            check_no_unlabelled(y, name=name)
    elif not _labelled_metrics(loss_fn):
        raise ValueError(
            "allow_unlabelled=True needs a loss that handles unlabelled examples (label -1), "
            "such as make_semi_supervised_loss(); this loss has no 'labelled_metrics'."
        )


def evaluate(
    state: TrainState,
    x: np.ndarray | jax.Array,
    y: np.ndarray | jax.Array,
    *,
    batch_size: int = 4096,
    allow_unlabelled: bool = False,
) -> dict[str, float]:
    """Example-weighted means of the loss function's metrics over ``(x, y)``, in batches.

    With ``allow_unlabelled``, labels may be ``-1`` (unlabelled; the loss must handle them, as
    :func:`make_semi_supervised_loss`'s does): the metrics the loss computes over labelled
    examples only (``accuracy``, ...) are then weighted by each batch's number of labelled
    examples, and are NaN when ``y`` has none.

    Example:
      >>> import jax, jax.numpy as jnp, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> metrics = evaluate(state, jnp.zeros((10, 2)), jnp.zeros(10, jnp.int32), batch_size=4)
      >>> sorted(metrics)
      ['accuracy', 'bits_per_dim', 'cross_entropy', 'loss', 'nll', 'nll_per_dim']
    """
    n = len(x)
    if n == 0:
        raise ValueError("cannot evaluate on an empty set.")
    _check_unlabelled(state.loss_fn, allow_unlabelled, {"y": y})
    labelled_metrics = _labelled_metrics(state.loss_fn)
    mesh = _state_mesh(state)
    totals: dict[str, float] = {}
    n_labelled = 0
    for start in range(0, n, batch_size):
        y_batch = y[start : start + batch_size]
        batch = _place((x[start : start + batch_size], y_batch), mesh)
        aux = jax.device_get(eval_step(state, batch))
        weight = len(y_batch)
        batch_labelled = int(np.sum(np.asarray(y_batch) != UNLABELLED)) if labelled_metrics else weight
        n_labelled += batch_labelled
        for name, value in aux.items():
            w = batch_labelled if name in labelled_metrics else weight
            totals[name] = totals.get(name, 0.0) + float(value) * w
    return {
        name: (total / n_labelled if n_labelled else float("nan")) if name in labelled_metrics else total / n
        for name, total in totals.items()
    }


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

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> predict_logits(model.apply, variables, jnp.zeros((10, 2)), batch_size=4).shape
      (10, 2)
      >>> predict_logits(model.apply, variables, jnp.zeros((10, 2)), method="marginal_log_prob").shape
      (10,)
    """
    mesh = _state_mesh(variables)
    return np.concatenate([
        np.asarray(_apply(apply_fn, variables, _place(x[i : i + batch_size], mesh), method))
        for i in range(0, len(x), batch_size)
    ])


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; ``best_state`` holds the last good selection."""

    def __init__(self, message: str, best_state: TrainState | None):
        super().__init__(message)
        self.best_state = best_state


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
      compile_s: time to compile the step block; train_s: time spent training after that.
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


_LABELLED_COUNT = "_labelled_count"  # the step metrics' key for the number of labelled examples


def _run_block(state, data, order, key, augment=None, batch_spec=None):
    """Train steps over the rows of ``order`` (``(steps, batch)`` indices into ``data``).

    Returns the state and the sums of the step metrics; metrics the loss computes over labelled
    examples only are weighted by each step's labelled count, summed in ``_LABELLED_COUNT``.
    A single row runs without a loop.
    """
    x_all, y_all = data
    labelled_metrics = _labelled_metrics(state.loss_fn)

    def one_step(state, idx, step_key):
        x, y = x_all[idx], y_all[idx]
        if batch_spec is not None:
            x = jax.lax.with_sharding_constraint(x, batch_spec)
            y = jax.lax.with_sharding_constraint(y, batch_spec)
        if augment is not None:
            x = augment(step_key, x)
        state, aux = _train_step(state, (x, y))
        if labelled_metrics:
            count = jnp.sum(y != UNLABELLED).astype(jnp.float32)
            aux = {k: v * count if k in labelled_metrics else v for k, v in aux.items()}
            aux[_LABELLED_COUNT] = count
        return state, aux

    if order.shape[0] == 1:
        return one_step(state, order[0], key)
    state, aux = jax.lax.scan(
        lambda s, inputs: one_step(s, *inputs), state, (order, jax.random.split(key, order.shape[0]))
    )
    return state, jax.tree.map(jnp.sum, aux)


_run_block_jit = jax.jit(_run_block, static_argnames=("augment", "batch_spec"), donate_argnums=0)


def _block_layout(steps: int, max_steps_per_call: int) -> list[int]:
    """Block sizes covering ``steps``: equal blocks of at most ``max_steps_per_call``, plus
    at most one smaller remainder block (so at most two compiled shapes)."""
    size = min(steps, max_steps_per_call)
    blocks = [size] * (steps // size)
    return blocks + [steps % size] if steps % size else blocks


def fit(
    state: TrainState,
    train: tuple,
    val: tuple,
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int = 128,
    num_classes: int | None = None,
    augment: Callable[[jax.Array, jnp.ndarray], jnp.ndarray] | None = None,
    select: str = "loss",
    eval_batch_size: int = 4096,
    max_steps_per_call: int | None = None,
    time_budget_s: float | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    mesh: jax.sharding.Mesh | None = None,
    progress: bool = True,
    desc: str = "train",
    allow_unlabelled: bool = False,
    extra_val_metrics: Callable[[TrainState], Mapping[str, float]] | None = None,
) -> FitResult:
    """Trains on in-memory ``train = (x, y)`` and selects the best epoch on ``val``.

    Each epoch shuffles the training set (dropping the last partial batch) and runs
    its steps in blocks of at most ``max_steps_per_call`` (default 100) inside ``lax.scan``,
    so a block runs without returning to Python;
    ``augment(key, x_batch)`` runs inside the compiled step. After every epoch the
    validation metrics are computed and the state with the best ``val_<select>`` (lowest,
    or highest for ``'accuracy'`` and names ending in ``'_accuracy'``) is kept. When the
    optimiser averages the parameters (:func:`flowclass.params_ema`), the averaged parameters
    are the ones validated, selected and returned in ``result.state`` (``result.last_state``
    keeps the raw ones).

    Args:
      time_budget_s: stop after the block in which this much training time has passed.
      checkpoint_dir: save a checkpoint (atomically, with Orbax) after every epoch;
        with ``resume=True``, continue from the newest one found there.
      mesh: data-parallel mesh (see :mod:`flowclass.sharding`); the default uses all
        devices when there are several. ``batch_size`` must divide evenly over it.
      allow_unlabelled: accept the label ``-1`` (unlabelled) in ``train`` and ``val``, for a
        loss that handles it (:func:`make_semi_supervised_loss`); its labelled-only metrics
        (``accuracy``, ...) are averaged over the labelled examples (NaN without any).
      extra_val_metrics: called after every epoch with the validated state; the metrics it
        returns join the loss function's as ``val_<name>`` in the history, and ``select`` may
        name one (e.g. the accuracy of another decision rule, to select it on validation).

    Raises:
      NonFiniteLossError: the training loss became NaN/inf; no checkpoint is written
        for that epoch, and the error carries the last good selected state.

    Example:
      >>> import jax, optax, flowclass as fc
      >>> from flowclass.data import seed_moons, train_val_split
      >>> (x, y), _ = seed_moons(noise=0.1, n_samples=1000, n_train=800)
      >>> train, val = train_val_split(x, y, val_fraction=0.25, seed=0)
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), x[:1], optax.adam(1e-3), fc.flow_nll)
      >>> result = fc.fit(state, train, val, key=jax.random.key(1), epochs=3, batch_size=100, progress=False)
      >>> result.epochs_run, sorted(result.history)[:3]
      (3, ['epoch_s', 'train_accuracy', 'train_bits_per_dim'])
      >>> bool(result.history["val_loss"][-1] < result.history["val_loss"][0])
      True
    """
    train_x, train_y = train
    val_x, val_y = val
    event_shape = np.shape(train_x)[1:]
    check_inputs(train_x, event_shape, name="train x")
    check_inputs(val_x, event_shape, name="validation x")
    _check_unlabelled(state.loss_fn, allow_unlabelled, {"train y": train_y, "validation y": val_y})
    if num_classes is not None:
        check_labels(train_y, num_classes, batch=len(train_x), name="train y", allow_unlabelled=allow_unlabelled)
        check_labels(val_y, num_classes, batch=len(val_x), name="validation y", allow_unlabelled=allow_unlabelled)
    labelled_metrics = _labelled_metrics(state.loss_fn)
    if select in labelled_metrics and not np.any(np.asarray(val_y) != UNLABELLED):
        raise ValueError(f"select={select!r} is computed on labelled examples, but the validation set has none.")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}.")
    if not 1 <= batch_size <= len(train_x):
        raise ValueError(f"batch_size must be in [1, {len(train_x)}] (the training set size); got {batch_size}.")
    if mesh is None and jax.device_count() > 1:
        mesh = sharding.data_mesh()
    batch_spec = None
    if mesh is not None:
        sharding.check_divisible(batch_size, mesh)
        batch_spec = sharding.batch_sharding(mesh)
        state = jax.device_put(state, sharding.replicated(mesh))
    averaging = find_ema(state.opt_state) is not None
    maximize = select == "accuracy" or select.endswith("_accuracy")
    sign = -1.0 if maximize else 1.0

    place = (lambda a: jax.device_put(a, sharding.replicated(mesh))) if mesh is not None else jnp.asarray
    data = (place(train_x), place(train_y))
    steps = len(train_x) // batch_size
    if max_steps_per_call is None:
        max_steps_per_call = 100
    blocks = _block_layout(steps, max_steps_per_call)

    checkpointer = Checkpointer(checkpoint_dir) if checkpoint_dir is not None else None
    start_epoch, best_score, best_epoch, best, history = 0, np.inf, 0, None, []
    if checkpointer is not None and resume and checkpointer.latest_step is not None:
        arrays, meta = checkpointer.restore(_checkpoint_template(state))
        state = state.replace(**arrays["state"])
        best = arrays["best"]
        start_epoch, best_epoch, best_score = meta["epoch"], meta["best_epoch"], meta["best_score"]
        history = [{k: np.asarray(v) for k, v in row.items()} for row in meta["history"]]

    def best_state() -> TrainState:
        return state if best is None else state.replace(**best)

    start = time.perf_counter()
    runners = {
        size: _run_block_jit.lower(
            state, data, jnp.zeros((size, batch_size), jnp.int32), key, augment=augment, batch_spec=batch_spec
        ).compile()
        for size in sorted(set(blocks))
    }
    compile_s = time.perf_counter() - start

    train_start = time.perf_counter()
    examples = 0
    epochs_run = start_epoch
    out_of_time = False
    with tqdm(total=epochs * steps, initial=start_epoch * steps, desc=desc, unit="step",
              disable=not progress, leave=False) as bar:
        for epoch in range(start_epoch, epochs):
            epoch_start = time.perf_counter()
            epoch_key = jax.random.fold_in(key, epoch)
            order = np.asarray(jax.random.permutation(jax.random.fold_in(epoch_key, 0), len(train_x)))
            order = order[: steps * batch_size].reshape(steps, batch_size)
            block_sums, count, row_start = [], 0, 0
            for call, size in enumerate(blocks):
                rows = order[row_start : row_start + size]
                row_start += size
                state, sums_on_device = runners[size](state, data, rows, jax.random.fold_in(epoch_key, call + 1))
                block_sums.append(sums_on_device)  # fetched once per epoch: no host sync per block
                count += size
                examples += size * batch_size
                bar.update(size)
                if time_budget_s is not None:
                    jax.block_until_ready(sums_on_device)  # the clock must see the work, not its dispatch
                    if time.perf_counter() - train_start > time_budget_s:
                        out_of_time = True
                        break
            sums = jax.tree.map(lambda *parts: float(np.sum(parts)), *jax.device_get(block_sums))
            if not np.isfinite(sums["loss"]):
                _close(checkpointer)
                raise NonFiniteLossError(
                    f"training loss became non-finite in epoch {epoch + 1}; stopped without saving it. "
                    f"The best state so far (epoch {best_epoch}) is in .best_state. Try a lower learning rate.",
                    best_state(),
                )
            selected = averaged(state) if averaging else state
            val_metrics = evaluate(selected, val_x, val_y, batch_size=eval_batch_size,
                                   allow_unlabelled=allow_unlabelled)
            if extra_val_metrics is not None:
                val_metrics.update({k: float(v) for k, v in extra_val_metrics(selected).items()})
            if select not in val_metrics:
                _close(checkpointer)
                raise ValueError(f"select={select!r} is not a validation metric; they are {sorted(val_metrics)}.")
            labelled_count = sums.pop(_LABELLED_COUNT, 0.0)
            row: dict[str, Any] = {
                f"train_{k}": (v / labelled_count if labelled_count else float("nan")) if k in labelled_metrics
                else v / count
                for k, v in sums.items()
            }
            row.update({f"val_{k}": v for k, v in val_metrics.items()})
            row["epoch_s"] = time.perf_counter() - epoch_start
            history.append(row)
            epochs_run = epoch + 1
            score = sign * val_metrics[select]
            if score < best_score:
                best_score, best_epoch = score, epoch + 1
                best = jax.tree.map(jnp.copy, _weights(selected))
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_loss=f"{row['val_loss']:.4f}",
                            val_acc=f"{row.get('val_accuracy', float('nan')):.4f}")
            if checkpointer is not None:
                checkpointer.save(
                    epoch + 1,
                    {"state": _state_arrays(state), "best": best},
                    {"epoch": epoch + 1, "best_epoch": best_epoch, "best_score": float(best_score),
                     "history": [{k: float(v) for k, v in h.items()} for h in history]},
                )
            if out_of_time:
                break
    train_s = time.perf_counter() - train_start
    _close(checkpointer)
    history_arrays = {k: np.asarray([h[k] for h in history]) for k in history[0]} if history else {}
    return FitResult(
        state=best_state(),
        last_state=state,
        best_epoch=best_epoch,
        epochs_run=epochs_run,
        history=history_arrays,
        compile_s=compile_s,
        train_s=train_s,
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


def _state_arrays(state: TrainState) -> dict:
    """What a resumed run needs of a state: its weights, the optimiser state and the step."""
    return {"step": state.step, "opt_state": state.opt_state, **_weights(state)}


def _weights(state: TrainState) -> dict:
    """What model selection keeps of a state: its parameters and other variable collections."""
    return {"params": state.params, "collections": state.collections}


def _checkpoint_template(state: TrainState) -> dict:
    """The layout of :func:`fit`'s checkpoints: the latest full state and the selected weights."""
    return {"state": _state_arrays(state), "best": _weights(state)}


def restore_best(checkpoint_dir: str | Path, state: TrainState) -> tuple[TrainState, dict]:
    """The model :func:`fit` selected, from the checkpoints it wrote to ``checkpoint_dir``.

    ``state`` is a freshly created state of the same model and optimiser (it gives the shapes);
    returns it with the selected epoch's parameters and collections (e.g. ActNorm's data-dependent
    initialisation), and the newest checkpoint's metadata (``epoch``, ``best_epoch``,
    ``best_score``, ``history``).

    Example:
      >>> import jax, optax, tempfile, flowclass as fc
      >>> from flowclass.data import seed_moons, train_val_split
      >>> (x, y), _ = seed_moons(noise=0.1, n_samples=600, n_train=500)
      >>> train, val = train_val_split(x, y, val_fraction=0.2, seed=0)
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> fresh = fc.create_train_state(model, jax.random.key(0), x[:1], optax.adam(1e-3), fc.flow_nll)
      >>> run_dir = tempfile.mkdtemp()
      >>> result = fc.fit(fresh, train, val, key=jax.random.key(1), epochs=2, batch_size=100,
      ...                 checkpoint_dir=run_dir, progress=False)
      >>> restored, meta = fc.restore_best(run_dir, fresh)
      >>> meta["best_epoch"] == result.best_epoch
      True
      >>> jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), restored.params, result.state.params))
      True
    """
    checkpointer = Checkpointer(checkpoint_dir)
    try:
        if checkpointer.latest_step is None:
            raise FileNotFoundError(f"no checkpoint in {checkpointer.directory}: train with fit(checkpoint_dir=...).")
        arrays, meta = checkpointer.restore(_checkpoint_template(state))
    finally:
        checkpointer.close()
    return state.replace(**arrays["best"]), meta


def _close(checkpointer: Checkpointer | None) -> None:
    if checkpointer is not None:
        checkpointer.close()
