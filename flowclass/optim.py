"""The optimiser recipe: Adam, optionally on a warm-up + cosine schedule, with gradient clipping
and parameter averaging, built from optax's own pieces.

With peak rate ``η``, ``W`` warm-up steps and ``T`` total steps, the ``"warmup_cosine"`` rate at
step ``t`` (counted from 0) is (``optax.warmup_cosine_decay_schedule(0, η, W, T)``)

    η_t = η · t / W                                  for t < W   (linear warm-up from 0)
    η_t = η · ½ (1 + cos(π (t − W) / (T − W)))      for W ≤ t ≤ T (cosine decay to 0)

and ``η_t = 0`` after ``T`` (Loshchilov & Hutter 2017, "SGDR"; Goyal et al. 2017 for the
warm-up). The update is ``optax.chain(pack_small_leaves(optax.chain(clip_by_global_norm(c),
adam(η_t))), params_ema(d))``, each piece only when asked for: gradients rescaled to global
norm at most ``c`` (Pascanu et al. 2013), Adam (Kingma & Ba 2015), and a moving average of the
parameters (:func:`flowclass.averaging.params_ema`) that :func:`flowclass.fit` validates and returns.
For models of at least :data:`PACK_MIN_PARAMS` numbers, clipping and Adam see the parameters'
small arrays packed into one vector (:func:`pack_small_leaves`), which compiled the MNIST flows'
train steps faster at the same step time.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from flowclass.averaging import params_ema

SCHEDULES = ("constant", "warmup_cosine")
"""The learning-rate schedules :func:`make_optimizer` knows."""

SMALL_LEAF_SIZE = 4096
"""Arrays with fewer elements than this are packed into one vector by :func:`pack_small_leaves`
(biases, ActNorm's and the couplings' per-channel parameters); the kernels above it stay as
they are."""

PACK_MIN_PARAMS = 2**20
""":func:`pack_small_leaves` packs only parameter trees of at least this many numbers (the MNIST
flows: 1.6 M and 2.8 M); smaller ones (the moons flow: 54,030; the CNN: 165,570) keep their
arrays as they are: packing ran the moons flow's compiled loop 6-7 % slower (throughput), and the
compile time it saves is a fraction of a second for a small model."""


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


class PackedLeaves(NamedTuple):
    """A parameter tree as :func:`pack_small_leaves` hands it to the transformation it wraps:
    ``small``, the small arrays raveled and concatenated, those of one shape side by side (the
    shapes in order of first appearance in ``jax.tree.leaves``, the arrays of a shape in that
    order; 1-D, their common dtype; shape ``(n,)`` with ``n`` their total number of elements), and
    ``large``, the other arrays as they are, in ``jax.tree.leaves`` order.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"bias": jnp.zeros(3), "kernel": jnp.zeros((64, 64))}
      >>> state = pack_small_leaves(optax.adam(0.1), max_size=100, min_params=0).init(params)
      >>> isinstance(state.inner[0].nu, PackedLeaves), state.inner[0].nu.small.shape
      (True, (3,))
    """

    small: jax.Array
    large: tuple


@functools.partial(jax.tree_util.register_dataclass, data_fields=["inner", "indices"], meta_fields=["shapes"])
@dataclasses.dataclass(frozen=True)
class PackedState:
    """The state of :func:`pack_small_leaves` for a packed tree: ``inner``, the wrapped
    transformation's state of the :class:`PackedLeaves`; ``indices``, the ``int32`` scalar
    arrays ``0, 1, …, m − 1`` (a tuple; ``m`` is the largest number of small arrays of one shape;
    they never change, and ``update`` refuses other values where they are concrete, outside
    ``jit``); and ``shapes``, the small arrays' shapes in ``jax.tree.leaves`` order
    (static: part of the tree's structure, not arrays), which ``update`` checks against the
    updates it is given.

    Why indices as arrays rather than constants in the program: XLA compiles one CPU kernel per
    distinct fusion, and a slice at a constant offset makes every small array's unpacking its own
    kernel (132 for the multi-scale MNIST flow). The small arrays of one shape sit side by side in
    the packed vector, and the ``j``-th of them is read with ``dynamic_slice`` at ``indices[j]``,
    a runtime value: the arrays of one shape share one kernel. The multi-scale flow's train step
    then compiled in 3.54-3.58 s instead of 4.34-4.48 s (4.6 s instead of 5.3-5.6 s with its
    lowering; 2-core AVX-512 Xeon, 2026-12-02, jaxlib 0.10.2, one process each). Scalars, not one vector of
    indices: reading element ``j`` of a vector puts the constant ``j`` back into each kernel. And
    one index per position within a shape's group, not one offset per array, because each array
    of the state is a separate file in a checkpoint: 46 scalars instead of 132 for that flow.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"a": jnp.zeros(3), "b": jnp.zeros(2), "c": jnp.zeros(3), "kernel": jnp.zeros((64, 64))}
      >>> state = pack_small_leaves(optax.adam(0.1), max_size=100, min_params=0).init(params)
      >>> [int(i) for i in state.indices], state.shapes  # two arrays of shape (3,): indices 0 and 1
      ([0, 1], ((3,), (2,), (3,)))
    """

    inner: Any
    indices: tuple
    shapes: tuple[tuple[int, ...], ...]


class _Layout(NamedTuple):
    """Where :func:`_pack` put a tree's arrays: enough to rebuild the tree from a ``PackedLeaves``.
    The small arrays are packed grouped by shape (groups in order of first appearance, each in
    ``jax.tree.leaves`` order), so the packed vector's layout depends on their shapes alone."""

    treedef: Any
    small_at: tuple[bool, ...]
    shapes: tuple[tuple[int, ...], ...]  # of the small arrays, in tree order
    dtypes: tuple[Any, ...]  # of the small arrays, in tree order
    groups: tuple[tuple[int, ...], ...]  # positions (in the small arrays) of each group's members

    @property
    def group_length(self) -> int:
        """The largest number of small arrays of one shape: how many indices unpacking needs."""
        return max((len(group) for group in self.groups), default=0)


def _pack(tree: Any, max_size: int) -> tuple[PackedLeaves, _Layout]:
    """``tree`` as :class:`PackedLeaves` (the small arrays raveled and concatenated, grouped by
    shape, cast to their common dtype as ``jax.flatten_util.ravel_pytree`` does) and the layout
    :func:`_unpack` needs."""
    leaves, treedef = jax.tree.flatten(tree)
    small_at = tuple(bool(jnp.size(leaf) < max_size) for leaf in leaves)
    small = [leaf for leaf, is_small in zip(leaves, small_at, strict=True) if is_small]
    large = tuple(leaf for leaf, is_small in zip(leaves, small_at, strict=True) if not is_small)
    members: dict[tuple, list[int]] = {}
    for position, leaf in enumerate(small):
        members.setdefault(jnp.shape(leaf), []).append(position)
    groups = tuple(tuple(group) for group in members.values())
    dtype = jnp.result_type(*small) if small else jnp.float32
    order = [position for group in groups for position in group]
    vector = (jnp.concatenate([jnp.ravel(small[position]).astype(dtype) for position in order]) if small
              else jnp.zeros(0, dtype))
    layout = _Layout(treedef, small_at, tuple(jnp.shape(leaf) for leaf in small),
                     tuple(jnp.result_type(leaf) for leaf in small), groups)
    return PackedLeaves(vector, large), layout


def _unpack(packed: PackedLeaves, indices: tuple, layout: _Layout) -> Any:
    """The tree ``layout`` describes, its small arrays read from ``packed.small``: the ``j``-th
    array of a group at ``indices[j]`` (runtime ``int32`` scalars, see :class:`PackedState`),
    each cast back to its dtype."""
    small: list = [None] * len(layout.shapes)
    offset = 0
    for group in layout.groups:
        shape = layout.shapes[group[0]]
        size = math.prod(shape)
        block = packed.small[offset:offset + len(group) * size].reshape(len(group), size)
        for index, position in zip(indices[:len(group)], group, strict=True):
            row = lax.dynamic_slice_in_dim(block, index, 1, allow_negative_indices=False)
            small[position] = row.reshape(shape).astype(layout.dtypes[position])
        offset += len(group) * size
    rows, large = iter(small), iter(packed.large)
    leaves = [next(rows) if is_small else next(large) for is_small in layout.small_at]
    return jax.tree.unflatten(layout.treedef, leaves)


def _check_indices(indices: tuple, length: int) -> None:
    """``indices`` must be ``0, 1, …, length − 1`` (their values are checked where they are
    concrete, not under ``jit``, where a wrong one would read another array of the group)."""
    if len(indices) != length:
        raise ValueError(f"pack_small_leaves: the state holds {len(indices)} indices, but these updates' largest "
                         f"group of small arrays of one shape has {length}; the state was edited or made for other "
                         f"parameters.")
    if not any(isinstance(index, jax.core.Tracer) for index in indices):
        values = [int(np.asarray(index)) for index in indices]  # 5x cheaper than int(index) on a CPU array
        if values != list(range(length)):
            raise ValueError(f"pack_small_leaves: the state's indices must be 0, 1, ..., {length - 1}; got {values}.")


def _shapes_text(shapes: tuple[tuple[int, ...], ...]) -> str:
    shown = ", ".join(map(str, shapes[:4])) + (", ..." if len(shapes) > 4 else "")
    return f"{len(shapes)} small arrays of shapes ({shown})"


def pack_small_leaves(inner: optax.GradientTransformation, max_size: int = SMALL_LEAF_SIZE,
                      min_params: int = PACK_MIN_PARAMS) -> optax.GradientTransformation:
    """``inner`` applied to the parameters with their small arrays packed into one vector, for
    parameter trees of at least ``min_params`` numbers (smaller trees go to ``inner`` as they are).

    The arrays with fewer than ``max_size`` elements are raveled and concatenated (grouped by
    shape, cast to their common dtype as ``jax.flatten_util.ravel_pytree`` does) into
    :attr:`PackedLeaves.small`; the others are kept as :attr:`PackedLeaves.large`. ``inner`` sees
    that ``PackedLeaves`` pair and its updates are unpacked to the parameters' own tree, shapes and
    dtypes. For an elementwise ``inner`` (Adam, SGD) and for global-norm clipping the updates are
    those of ``inner`` on the tree itself, up to float rounding (the global norm sums in another
    order).

    Why: the update of a tree of arrays is traced and compiled array by array (on the moons
    flow's train step, packed: 185 fusions instead of 242), so a flow's hundred small arrays cost
    compile time, not arithmetic. Measured on a 2-core AVX-512 Xeon
    (2026-12-02, jaxlib 0.10.2, batch 128, one process each): the ``'fast'`` MNIST flow's train
    step (70 arrays, 58 of them packed) lowered and compiled in 2.8 s instead of 3.6-3.7 s, the
    multi-scale flow's (184 arrays, 132 packed) in 6.2-6.7 s instead of 7.5 s, at the same step
    times. ``optax.flatten``, which packs every array, compiled as fast but ran the ``'fast'``
    flow's step 1-3 % slower in one process (it packs the 2.8 M kernel weights too). On the moons
    flow (54,030 numbers, a step of about 0.6 ms) packing ran 100 steps in one compiled loop
    6-7 % slower (213,297 against 228,123 examples/s, interleaved in one process), hence
    ``min_params``. Each small array's position within its shape's group is read from the state
    (:class:`PackedState`) rather than written into the compiled program, so that XLA compiles one
    unpacking kernel per array shape instead of one per array: the multi-scale flow's step then
    lowered and compiled in 4.6 s instead of 5.3-5.6 s (measured later the same day, the machine in
    a faster state than for the figures above, both versions alternated).

    Args:
      inner: the transformation to wrap (e.g. ``optax.chain(optax.clip_by_global_norm(c), optax.adam(η))``).
      max_size: arrays with fewer elements than this are packed; a positive integer.
      min_params: trees with fewer numbers in all are not packed; an integer ``>= 0``. The
        choice is made from the tree's sizes, the same for ``init`` and every ``update``.

    ``inner`` must treat the arrays alike whatever the tree: elementwise updates and global
    norms are right; transformations that look at the tree's structure or at single arrays
    (``optax.masked``, ``optax.multi_transform``, per-array trust ratios such as LARS/LAMB,
    weight decay masked by name) are not. Chain :func:`~flowclass.averaging.params_ema` after
    the wrapper, not inside it, so that the average stays a tree of the parameters. Packed small
    arrays share one dtype (bfloat16 biases next to float32 ones get float32 moments); each
    update is cast back to its array's dtype.

    Returns:
      An ``optax.GradientTransformation`` whose state is a :class:`PackedState`: ``inner``'s
      state of the packed parameters, the indices that read each small array from its shape's
      group, and the small arrays' shapes (for trees below ``min_params``: ``inner``'s state of
      the parameters themselves).

    Raises:
      TypeError: ``inner`` is not an optax transformation.
      ValueError: ``max_size`` is not a positive integer, or ``min_params`` not an integer
        ``>= 0``; from ``update``: ``updates`` and ``params`` do not have the same arrays, or
        ``updates`` do not fit the state ``init`` made (packed for another size of tree, for
        other small arrays, or by a flowclass before :class:`PackedState`), or its indices are not
        ``0, 1, …, m − 1``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"bias": jnp.zeros(3), "kernel": jnp.zeros((64, 64))}
      >>> tx = pack_small_leaves(optax.adam(0.1), max_size=100, min_params=0)
      >>> state = tx.init(params)
      >>> state.inner[0].mu.small.shape, len(state.inner[0].mu.large)  # the bias packed, the kernel kept
      ((3,), 1)
      >>> updates, state = tx.update({"bias": jnp.ones(3), "kernel": jnp.ones((64, 64))}, state, params)
      >>> [round(u, 4) for u in updates["bias"].tolist()], updates["kernel"].shape  # Adam's first step: -η
      ([-0.1, -0.1, -0.1], (64, 64))
    """
    if not (hasattr(inner, "init") and hasattr(inner, "update")):
        raise TypeError(f"inner must be an optax.GradientTransformation (with init and update); "
                        f"got {type(inner).__name__}.")
    if not _is_int(max_size) or max_size < 1:
        raise ValueError(f"max_size must be a positive integer (arrays with fewer elements are packed); "
                         f"got {max_size!r}.")
    if not _is_int(min_params) or min_params < 0:
        raise ValueError(f"min_params must be an integer >= 0 (smaller parameter trees are not packed); "
                         f"got {min_params!r}.")

    def packs(tree) -> bool:
        return sum(jnp.size(leaf) for leaf in jax.tree.leaves(tree)) >= min_params

    def init_fn(params):
        if not packs(params):
            return inner.init(params)
        packed, layout = _pack(params, max_size)
        return PackedState(inner.init(packed), tuple(jnp.asarray(j, jnp.int32) for j in range(layout.group_length)),
                           layout.shapes)

    def update_fn(updates, state, params=None):
        if params is not None and [jnp.shape(a) for a in jax.tree.leaves(updates)] != [
                jnp.shape(a) for a in jax.tree.leaves(params)]:
            raise ValueError("pack_small_leaves: updates and params must hold arrays of the same shapes in the "
                             "same order; got differing trees.")
        if not packs(updates):
            if isinstance(state, PackedState):
                raise ValueError(f"pack_small_leaves: the state was made for a packed tree (>= {min_params} numbers), "
                                 f"but these updates hold {sum(jnp.size(a) for a in jax.tree.leaves(updates))}; "
                                 f"init and update must see the same parameters.")
            return inner.update(updates, state, params)
        packed, layout = _pack(updates, max_size)
        if not isinstance(state, PackedState) or state.shapes != layout.shapes:
            if isinstance(state, PackedState):
                made_for = _shapes_text(state.shapes)
            elif any(isinstance(node, PackedLeaves)
                     for node in jax.tree.leaves(state, is_leaf=lambda n: isinstance(n, PackedLeaves))):
                made_for = "an earlier flowclass (before PackedState: re-create it with init)"
            else:
                made_for = "an unpacked tree"
            raise ValueError(f"pack_small_leaves: these updates pack {_shapes_text(layout.shapes)} (max_size="
                             f"{max_size}), but the state was made for {made_for}; init and update must see the "
                             f"same parameters.")
        _check_indices(state.indices, layout.group_length)
        new, inner_state = inner.update(packed, state.inner, None if params is None else _pack(params, max_size)[0])
        return _unpack(new, state.indices, layout), dataclasses.replace(state, inner=inner_state)

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(
    learning_rate: float,
    *,
    schedule: str = "constant",
    total_steps: int | None = None,
    warmup_steps: int | None = None,
    clip_norm: float | None = None,
    ema_decay: float = 0.0,
) -> optax.GradientTransformation:
    """Adam at ``learning_rate`` (the peak rate with a schedule), optionally clipped and averaged.

    Args:
      learning_rate: Adam's step size ``η > 0`` (constant, or the peak of the schedule).
      schedule: ``"constant"``, or ``"warmup_cosine"``: linear warm-up from 0 over
        ``warmup_steps``, then cosine decay to 0 at ``total_steps`` (see the module docstring).
      total_steps: the schedule's length in optimiser steps (≥ 1), needed by ``"warmup_cosine"``;
        checked but unused by ``"constant"``.
      warmup_steps: the warm-up length, ``0 ≤ W < total_steps``; default
        ``min(1000, total_steps // 10)``. Only for ``"warmup_cosine"``.
      clip_norm: if set (``> 0``), gradients are rescaled to global norm at most ``clip_norm``
        before Adam (``optax.clip_by_global_norm``).
      ema_decay: if ``> 0`` (and ``< 1``), a moving average of the parameters with this decay
        is kept after Adam (:func:`~flowclass.averaging.params_ema`).

    Returns:
      ``pack_small_leaves(optax.chain(clip, adam))`` (:func:`pack_small_leaves`, which packs
      models of at least :data:`PACK_MIN_PARAMS` numbers; without the clipping when it is not
      asked for), followed by the parameter average when asked for:
      ``optax.chain(pack_small_leaves(...), ema)``.

    Raises:
      ValueError: an argument is out of range, or ``schedule`` is unknown; the message names
        the argument (and the known schedules).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = make_optimizer(1e-3, schedule="warmup_cosine", total_steps=100, clip_norm=10.0, ema_decay=0.999)
      >>> params = {"w": jnp.zeros(3)}
      >>> updates, state = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
      >>> float(jnp.abs(updates["w"]).max())  # step 0 of the warm-up: rate 0
      0.0
      >>> updates, state = tx.update({"w": jnp.ones(3)}, state, params)
      >>> [round(u, 6) for u in updates["w"].tolist()]  # step 1: rate 1e-3 · 1/10
      [-0.0001, -0.0001, -0.0001]
      >>> make_optimizer(1e-3, schedule="cosine")
      Traceback (most recent call last):
      ...
      ValueError: schedule must be one of ('constant', 'warmup_cosine'); got 'cosine'.
    """
    if not _is_real(learning_rate) or learning_rate <= 0:
        raise ValueError(f"learning_rate must be a finite number > 0; got {learning_rate!r}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got {schedule!r}.")
    if clip_norm is not None and (not _is_real(clip_norm) or clip_norm <= 0):
        raise ValueError(f"clip_norm must be a finite number > 0, or None (no clipping); got {clip_norm!r}.")
    if not _is_real(ema_decay) or not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in [0, 1) (0: no parameter averaging); got {ema_decay!r}.")

    if total_steps is not None and (not _is_int(total_steps) or total_steps < 1):
        raise ValueError(f"total_steps must be an integer >= 1; got {total_steps!r}.")
    rate: float | optax.Schedule = float(learning_rate)
    if schedule == "constant":
        if warmup_steps is not None:
            raise ValueError(f"warmup_steps={warmup_steps!r} needs schedule='warmup_cosine'; "
                             "the 'constant' schedule has no warm-up.")
    else:
        if total_steps is None or not _is_int(total_steps) or total_steps < 1:
            raise ValueError(f"total_steps must be an integer >= 1 for schedule={schedule!r}; got {total_steps!r}.")
        if warmup_steps is None:
            warmup_steps = min(1000, total_steps // 10)
        if not _is_int(warmup_steps) or not 0 <= warmup_steps < total_steps:
            raise ValueError(f"warmup_steps must be an integer in [0, total_steps) = [0, {total_steps}); "
                             f"got {warmup_steps!r}.")
        rate = optax.warmup_cosine_decay_schedule(0.0, float(learning_rate), int(warmup_steps), int(total_steps))

    gradient = optax.adam(rate)
    if clip_norm is not None:
        gradient = optax.chain(optax.clip_by_global_norm(float(clip_norm)), gradient)
    tx = pack_small_leaves(gradient)
    return optax.chain(tx, params_ema(float(ema_decay))) if ema_decay > 0 else tx
