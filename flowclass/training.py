"""Functional training on optax: a train state, a jitted step, evaluation and a ``fit`` loop.

    state = create_train_state(model, key, x[:1], optax.adam(1e-3), loss_fn=flow_nll)
    state, aux = train_step(state, (x_batch, y_batch))      # jitted, donates ``state``
    result = fit(state, (x_train, y_train), (x_val, y_val), key=key, config=TrainConfig(epochs=100))

``fit`` is a composition of small pieces, each usable and tested on its own:
:class:`EpochRunner` (one epoch of steps in compiled ``lax.scan`` blocks, data kept on the
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
from flowclass.config import TrainConfig
from flowclass.losses import LossFn, Mean

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



def _as_means(aux: Mapping[str, Any], batch: int) -> Metrics:
    """A loss's ``aux`` as :class:`Mean` pairs: plain scalars are means over the ``batch`` examples."""
    return {k: v if isinstance(v, Mean) else Mean(v * batch, jnp.float32(batch)) for k, v in aux.items()}


def _values(metrics: Metrics) -> dict:
    return {k: m.total / m.count for k, m in metrics.items()}


def _train_step(state: TrainState, batch: tuple[jnp.ndarray, jnp.ndarray]) -> tuple[TrainState, Metrics]:
    x, y = batch

    def objective(params):
        return state.loss_fn(state.apply_fn, {"params": params, **state.collections}, x, y)

    (_, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), _as_means(aux, x.shape[0])


def _eval_sums(state: TrainState, batch: tuple[jnp.ndarray, jnp.ndarray]) -> Metrics:
    x, y = batch
    return _as_means(state.loss_fn(state.apply_fn, state.variables, x, y)[1], x.shape[0])


_eval_sums_jit = jax.jit(_eval_sums)


@functools.partial(jax.jit, donate_argnums=0)
def train_step(state: TrainState, batch: tuple[jnp.ndarray, jnp.ndarray]) -> tuple[TrainState, dict]:
    """One optimiser step on ``batch = (x, y)``: ``(state, batch) -> (state, metrics)``, the batch's
    metrics as scalar means (a semi-supervised loss's labelled-only metrics are NaN on a batch
    without labels).

    Jitted with ``state`` donated: do not reuse the ``state`` you passed in.

    Example:
      >>> import jax, jax.numpy as jnp, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> state, aux = train_step(state, (jnp.ones((8, 2)), jnp.zeros(8, jnp.int32)))
      >>> int(state.step), sorted(aux)[:3]
      (1, ['accuracy', 'bits_per_dim', 'cross_entropy'])
    """
    state, metrics = _train_step(state, batch)
    return state, _values(metrics)


@jax.jit
def eval_step(state: TrainState, batch: tuple[jnp.ndarray, jnp.ndarray]) -> dict:
    """The loss function's metrics on ``batch = (x, y)`` as scalar means, without updating.

    Example:
      >>> import jax, jax.numpy as jnp, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> aux = eval_step(state, (jnp.ones((8, 2)), jnp.zeros(8, jnp.int32)))
      >>> float(aux["loss"]) == float(aux["nll"]), int(state.step)
      (True, 0)
    """
    return _values(_eval_sums(state, batch))


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

    ``x``: a non-empty, finite float batch; ``y``: one integer label per example, in
    ``[0, K)`` with ``K`` read from the model's logits, or ``-1`` (unlabelled) when the loss
    accepts it. Raises ValueError naming ``name`` (e.g. ``'train'``).

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
    unlabelled_ok = accepts_unlabelled(state.loss_fn)
    if not unlabelled_ok and isinstance(y, np.ndarray) and np.issubdtype(y.dtype, np.integer) and np.any(y == -1):
        raise ValueError(f"{name} y holds unlabelled examples (label -1), but this loss does not accept them; "
                         "use a loss that handles unlabelled examples, such as make_semi_supervised_loss().")
    if not unlabelled_ok:
        check_no_unlabelled(y, name=f"{name} y")
    try:
        logits = jax.eval_shape(state.apply_fn, state.variables, jax.ShapeDtypeStruct((1, *np.shape(x)[1:]), x.dtype))
        num_classes = int(logits.shape[-1]) if len(logits.shape) == 2 else None
    except Exception:  # a model whose call does not give logits: the loss checks its labels itself
        num_classes = None
    if num_classes is not None:
        check_labels(y, num_classes, batch=len(x), name=f"{name} y", allow_unlabelled=unlabelled_ok)
    elif len(y) != len(x):
        raise ValueError(f"{name} y has {len(y)} labels but {name} x has {len(x)} examples.")


def evaluate(state: TrainState, x: np.ndarray | jax.Array, y: np.ndarray | jax.Array, *,
             batch_size: int = 4096) -> dict[str, float]:
    """The loss function's metrics over ``(x, y)``, each averaged over the examples it is defined
    on (in batches of ``batch_size``; e.g. a semi-supervised loss's accuracy over the labelled
    examples, NaN when there are none).

    Raises:
      ValueError: bad inputs or labels (see :func:`check_data`), ``batch_size < 1``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> metrics = evaluate(state, jnp.zeros((10, 2)), jnp.zeros(10, jnp.int32), batch_size=4)
      >>> sorted(metrics)
      ['accuracy', 'bits_per_dim', 'cross_entropy', 'loss', 'nll', 'nll_per_dim']
    """
    _check_size(batch_size, "batch_size")
    check_data(state, x, y, name="evaluate")
    return _mean_values(_evaluate_sums(state, x, y, batch_size))


def _evaluate_sums(state: TrainState, x, y, batch_size: int) -> dict[str, Mean]:
    mesh = _state_mesh(state)
    parts = [_eval_sums_jit(state, _place((x[i : i + batch_size], y[i : i + batch_size]), mesh))
             for i in range(0, len(x), batch_size)]
    return _sum_metrics(jax.device_get(parts))


def _sum_metrics(parts: list[Metrics]) -> dict[str, Mean]:
    """Sums a list of metric dicts on the host (float64)."""
    return {k: Mean(math.fsum(float(p[k].total) for p in parts), math.fsum(float(p[k].count) for p in parts))
            for k in parts[0]}


def _mean_values(metrics: Mapping[str, Mean]) -> dict[str, float]:
    return {k: m.total / m.count if m.count else float("nan") for k, m in metrics.items()}


def _check_size(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")


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
      compile_s: time to compile the step blocks; train_s: time spent training after that.
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


def _run_block(state, data, order, key, augment=None, batch_spec=None):
    """Train steps over the rows of ``order`` (``(steps, batch)`` indices into ``data``); returns the
    state and the step metrics summed (a single row runs without a loop)."""
    x_all, y_all = data

    def one_step(state, idx, step_key):
        x, y = x_all[idx], y_all[idx]
        if batch_spec is not None:
            x = jax.lax.with_sharding_constraint(x, batch_spec)
            y = jax.lax.with_sharding_constraint(y, batch_spec)
        if augment is not None:
            x = augment(step_key, x)
        return _train_step(state, (x, y))

    if order.shape[0] == 1:
        return one_step(state, order[0], key)
    state, metrics = jax.lax.scan(
        lambda s, inputs: one_step(s, *inputs), state, (order, jax.random.split(key, order.shape[0]))
    )
    return state, jax.tree.map(jnp.sum, metrics)


_run_block_jit = jax.jit(_run_block, static_argnames=("augment", "batch_spec"), donate_argnums=0)


def _block_layout(steps: int, max_steps_per_call: int) -> list[int]:
    """Block sizes covering ``steps``: equal blocks of at most ``max_steps_per_call``, plus
    at most one smaller remainder block (so at most two compiled shapes)."""
    size = min(steps, max_steps_per_call)
    blocks = [size] * (steps // size)
    return blocks + [steps % size] if steps % size else blocks


class EpochRunner:
    """One training epoch over in-memory data, in compiled blocks of ``lax.scan`` steps.

    The training set is put on the device(s) once; each epoch shuffles it with the epoch's key
    (dropping the last partial batch) and runs its ``len(x) // batch_size`` steps in blocks of at
    most ``max_steps_per_call`` (at most two compiled block shapes), with ``augment(key, x)``
    inside the compiled step. The metrics are fetched once per epoch: no host sync per block,
    except to read the clock when a ``deadline`` is set. The state passed in is donated.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, optax, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> state = fc.create_train_state(model, jax.random.key(0), jnp.zeros((1, 2)), optax.adam(1e-3), fc.flow_nll)
      >>> x, y = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32), np.zeros(64, np.int32)
      >>> runner = EpochRunner(state, (x, y), batch_size=16, max_steps_per_call=3)
      >>> runner.blocks
      [3, 1]
      >>> state, metrics, out_of_time = runner.run(state, jax.random.key(1))
      >>> int(state.step), metrics["loss"].count, out_of_time
      (4, 64.0, False)
    """

    def __init__(self, state: TrainState, train: tuple, *, batch_size: int, max_steps_per_call: int = 100,
                 augment: Augment | None = None, mesh: jax.sharding.Mesh | None = None):
        self.num_examples, self.batch_size = len(train[0]), batch_size
        self.steps = self.num_examples // batch_size
        self.blocks = _block_layout(self.steps, max_steps_per_call)
        batch_spec = sharding.batch_sharding(mesh) if mesh is not None else None
        place = (lambda a: jax.device_put(a, sharding.replicated(mesh))) if mesh is not None else jnp.asarray
        self.data = (place(train[0]), place(train[1]))
        start = time.perf_counter()
        self._compiled = {
            size: _run_block_jit.lower(state, self.data, jnp.zeros((size, batch_size), jnp.int32),
                                       jax.random.key(0), augment=augment, batch_spec=batch_spec).compile()
            for size in sorted(set(self.blocks))
        }
        self.compile_s = time.perf_counter() - start
        self.steps_run = 0  # steps trained by this runner, over all its epochs

    def run(self, state: TrainState, key: jax.Array, *, deadline: float | None = None,
            on_block: Callable[[int], None] | None = None) -> tuple[TrainState, dict[str, Mean], bool]:
        """Trains one epoch; returns ``(state, summed metrics, out_of_time)``. With ``deadline``
        (a ``time.perf_counter()`` value) it stops after the first block that ends past it."""
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, 0), self.num_examples))
        order = order[: self.steps * self.batch_size].reshape(self.steps, self.batch_size)
        parts, row = [], 0
        for call, size in enumerate(self.blocks):
            block_key = jax.random.fold_in(key, call + 1)
            state, sums = self._compiled[size](state, self.data, order[row : row + size], block_key)
            parts.append(sums)  # fetched once per epoch
            row += size
            self.steps_run += size
            if on_block is not None:
                on_block(size)
            if deadline is not None:
                jax.block_until_ready(sums)  # the clock must see the work, not its dispatch
                if time.perf_counter() > deadline:
                    return state, _sum_metrics(jax.device_get(parts)), True
        return state, _sum_metrics(jax.device_get(parts)), False


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
        best = selection.best if selection.best is not None else _weights(state)
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


def _check_fit_inputs(state, train, val, config: TrainConfig, extra_val_metrics) -> None:
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a flowclass.TrainConfig; got {type(config).__name__}.")
    for name, split in (("train", train), ("validation", val)):
        if not isinstance(split, (tuple, list)) or len(split) != 2:
            raise TypeError(f"{name} must be a pair (x, y); got {type(split).__name__}.")
        check_data(state, *split, name=name)
    if np.shape(val[0])[1:] != np.shape(train[0])[1:]:
        raise ValueError(f"validation x has examples of shape {np.shape(val[0])[1:]}; train x has "
                         f"{np.shape(train[0])[1:]}.")
    if config.batch_size > len(train[0]):
        raise ValueError(f"config.batch_size must be in [1, {len(train[0])}] (the training set size); got "
                         f"{config.batch_size}.")
    probe = jax.device_get(_eval_sums_jit(state, _place((val[0][:8], val[1][:8]), None)))
    if config.select not in probe:
        if extra_val_metrics is None:
            raise ValueError(f"config.select={config.select!r} is not a validation metric; they are {sorted(probe)}.")
    elif np.all(np.asarray(val[1]) == -1) and float(probe[config.select].count) == 0:
        raise ValueError(f"config.select={config.select!r} is computed on labelled examples, but the validation "
                         "set has none.")


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
      state: donated; use the returned states.
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
      ValueError, TypeError: bad data, labels or options, before any training.
      OSError, FileExistsError: an unusable or occupied ``checkpoint_dir``, before any training.
      NonFiniteLossError: the training loss became NaN/inf; that epoch is not saved, and the
        error carries the last good selected state.

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
    _check_fit_inputs(state, train, val, config, extra_val_metrics)
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
        runner = EpochRunner(state, train, batch_size=config.batch_size, max_steps_per_call=config.max_steps_per_call,
                             augment=augment, mesh=mesh)
        averaging, train_start, epochs_run = find_ema(state.opt_state) is not None, time.perf_counter(), start_epoch
        deadline = None if config.time_budget_s is None else train_start + config.time_budget_s
        saved_at = train_start
        with tqdm(total=config.epochs * runner.steps, initial=start_epoch * runner.steps, desc=desc, unit="step",
                  disable=not progress, leave=False) as bar:
            for epoch in range(start_epoch + 1, config.epochs + 1):
                epoch_start = time.perf_counter()
                state, sums, out_of_time = runner.run(state, jax.random.fold_in(key, epoch - 1), deadline=deadline,
                                                      on_block=bar.update)
                if not math.isfinite(sums["loss"].total):
                    raise NonFiniteLossError(
                        f"training loss became non-finite in epoch {epoch}; stopped without saving it. The best state "
                        f"so far (epoch {selection.best_epoch}) is in .best_state. Try a lower learning rate.",
                        state.replace(**selection.best) if selection.best is not None else None)
                selected = averaged(state) if averaging else state
                val_metrics = _mean_values(_evaluate_sums(selected, val[0], val[1], config.eval_batch_size))
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
