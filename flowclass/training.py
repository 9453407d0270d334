"""Functional training on optax: a train state, a jitted step, evaluation and a ``fit`` loop.

    state = create_train_state(model, key, x[:1], optax.adam(1e-3), loss_fn=flow_nll)
    state, aux = train_step(state, (x_batch, y_batch))      # jitted, donates ``state``
    result = fit(state, (x_train, y_train), (x_val, y_val), key=key, epochs=100)

``fit`` runs whole epochs inside ``lax.scan`` (data held on the device), evaluates the
validation split after every epoch and keeps the parameters with the lowest
validation loss: model selection never sees the test set.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from tqdm.auto import tqdm

from flowclass._validation import check_inputs, check_labels
from flowclass.losses import LossFn


class TrainState(struct.PyTreeNode):
    """Everything that changes during training, plus the static pieces that define it.

    ``params`` are optimised; ``collections`` holds any other Flax variable
    collections (kept as they are by the step).
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
        return {"params": self.params, **self.collections}


def create_train_state(
    model: nn.Module,
    key: jax.Array,
    sample_x: jnp.ndarray,
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
) -> TrainState:
    """Initialises ``model`` on ``sample_x`` (one example is enough) and the optimiser."""
    variables = dict(model.init(key, jnp.asarray(sample_x)))
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


def _train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
    x, y = batch

    def objective(params):
        return state.loss_fn(state.apply_fn, {"params": params, **state.collections}, x, y)

    (_, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), aux


def _eval_step(state: TrainState, batch) -> dict:
    x, y = batch
    return state.loss_fn(state.apply_fn, state.variables, x, y)[1]


train_step = jax.jit(_train_step, donate_argnums=0)
train_step.__doc__ = """One optimiser step on ``batch = (x, y)``: ``(state, batch) -> (state, aux)``.

Jitted with ``state`` donated: do not reuse the ``state`` you passed in."""

eval_step = jax.jit(_eval_step)
eval_step.__doc__ = """The loss function's ``aux`` metrics on ``batch = (x, y)``, without updating."""


def evaluate(state: TrainState, x, y, *, batch_size: int = 8192) -> dict[str, float]:
    """Example-weighted means of the loss function's metrics over ``(x, y)``, in batches."""
    n = len(x)
    if n == 0:
        raise ValueError("cannot evaluate on an empty set.")
    totals: dict[str, float] = {}
    for start in range(0, n, batch_size):
        batch = (jnp.asarray(x[start : start + batch_size]), jnp.asarray(y[start : start + batch_size]))
        aux = jax.device_get(eval_step(state, batch))
        weight = len(batch[0])
        for name, value in aux.items():
            totals[name] = totals.get(name, 0.0) + float(value) * weight
    return {name: total / n for name, total in totals.items()}


def predict_logits(apply_fn: Callable, variables, x, *, batch_size: int = 8192) -> np.ndarray:
    """``apply_fn(variables, x)`` (logits) over ``x`` in batches, as a NumPy array."""
    logits_fn = jax.jit(apply_fn)
    return np.concatenate(
        [np.asarray(logits_fn(variables, jnp.asarray(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)]
    )


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; ``best_state`` holds the last good selection."""

    def __init__(self, message: str, best_state: TrainState | None):
        super().__init__(message)
        self.best_state = best_state


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
      state: the train state with the best validation loss (the selected model).
      last_state: the state after the final epoch.
      best_epoch: 1-based epoch of the selected model.
      history: per-epoch arrays ``train_<metric>`` (means over the epoch's steps) and ``val_<metric>``.
      compile_s: time to compile the epoch runner; train_s: time spent training after that.
      train_samples_per_s: examples processed per second of ``train_s``.
    """

    state: TrainState
    last_state: TrainState
    best_epoch: int
    history: dict[str, np.ndarray]
    compile_s: float
    train_s: float
    train_samples_per_s: float


def _run_epochs(state, best, key, train, val, *, num_epochs: int, batch_size: int):
    """``num_epochs`` shuffled epochs, each a ``lax.scan`` of train steps, then validation."""
    train_x, train_y = train
    n = train_x.shape[0]
    steps = n // batch_size

    def one_epoch(carry, epoch_key):
        state, best = carry
        order = jax.random.permutation(epoch_key, n)[: steps * batch_size].reshape(steps, batch_size)
        state, train_aux = jax.lax.scan(
            lambda s, idx: _train_step(s, (train_x[idx], train_y[idx])), state, order
        )
        val_aux = _eval_step(state, val)
        improved = val_aux["loss"] < best["val_loss"]
        candidate = {"params": state.params, "collections": state.collections,
                     "val_loss": val_aux["loss"], "epoch": (state.step // steps).astype(jnp.int32)}
        best = jax.tree.map(lambda new, old: jnp.where(improved, new, old), candidate, best)
        metrics = {f"train_{k}": jnp.mean(v) for k, v in train_aux.items()}
        metrics.update({f"val_{k}": v for k, v in val_aux.items()})
        return (state, best), metrics

    (state, best), metrics = jax.lax.scan(one_epoch, (state, best), jax.random.split(key, num_epochs))
    return state, best, metrics


_run_epochs_jit = jax.jit(_run_epochs, static_argnames=("num_epochs", "batch_size"), donate_argnums=(0, 1))


def _epochs_per_call(epochs: int, target_updates: int = 20) -> int:
    """The largest divisor of ``epochs`` giving about ``target_updates`` progress updates."""
    for chunk in range(max(1, epochs // target_updates), 0, -1):
        if epochs % chunk == 0:
            return chunk
    return 1


def fit(
    state: TrainState,
    train: tuple,
    val: tuple,
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int = 128,
    num_classes: int | None = None,
    progress: bool = True,
    desc: str = "train",
) -> FitResult:
    """Trains for ``epochs`` epochs on in-memory ``train = (x, y)`` and selects on ``val``.

    The epochs run inside ``lax.scan`` in chunks; between chunks a progress bar shows
    the latest training and validation loss. The validation split is evaluated in one
    batch, so it should fit in memory. A non-finite training loss stops the run with
    :class:`NonFiniteLossError`, which carries the last good selected state.
    """
    train_x, train_y = train
    val_x, val_y = val
    event_shape = np.shape(train_x)[1:]
    check_inputs(train_x, event_shape, name="train x")
    check_inputs(val_x, event_shape, name="validation x")
    if num_classes is not None:
        check_labels(train_y, num_classes, batch=len(train_x), name="train y")
        check_labels(val_y, num_classes, batch=len(val_x), name="validation y")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}.")
    if not 1 <= batch_size <= len(train_x):
        raise ValueError(f"batch_size must be in [1, {len(train_x)}] (the training set size); got {batch_size}.")

    train = (jnp.asarray(train_x), jnp.asarray(train_y))
    val = (jnp.asarray(val_x), jnp.asarray(val_y))
    best = {"params": state.params, "collections": state.collections,
            "val_loss": jnp.asarray(jnp.inf, jnp.float32), "epoch": jnp.zeros((), jnp.int32)}
    best = jax.tree.map(jnp.copy, best)  # ``state`` is donated; ``best`` must own its buffers
    chunk = _epochs_per_call(epochs)
    start = time.perf_counter()
    runner = _run_epochs_jit.lower(state, best, key, train, val, num_epochs=chunk, batch_size=batch_size).compile()
    compile_s = time.perf_counter() - start

    history: list[dict] = []
    start = time.perf_counter()
    with tqdm(total=epochs, desc=desc, unit="epoch", disable=not progress, leave=False) as bar:
        for key in jax.random.split(key, epochs // chunk):
            state, best, metrics = runner(state, best, key, train, val)
            metrics = jax.device_get(metrics)
            history.append(metrics)
            if not np.all(np.isfinite(metrics["train_loss"])):
                bad = len(history) * chunk - chunk + int(np.argmin(np.isfinite(metrics["train_loss"]))) + 1
                raise NonFiniteLossError(
                    f"training loss became non-finite at epoch {bad}; stopped. The best state so far "
                    f"(epoch {int(best['epoch'])}) is in .best_state. Try a lower learning rate.",
                    _best_state(state, best),
                )
            bar.update(chunk)
            bar.set_postfix(loss=f"{metrics['train_loss'][-1]:.4f}", val_loss=f"{metrics['val_loss'][-1]:.4f}")
    train_s = time.perf_counter() - start

    history_arrays = {k: np.concatenate([h[k] for h in history]) for k in history[0]}
    steps = len(train_x) // batch_size
    return FitResult(
        state=_best_state(state, best),
        last_state=state,
        best_epoch=int(best["epoch"]),
        history=history_arrays,
        compile_s=compile_s,
        train_s=train_s,
        train_samples_per_s=epochs * steps * batch_size / train_s,
    )


def _best_state(state: TrainState, best: dict) -> TrainState:
    if int(best["epoch"]) == 0:  # no finished epoch improved on +inf: keep the current state
        return state
    return state.replace(params=best["params"], collections=best["collections"])
