"""The optimiser recipe: Adam, optionally on a warm-up + cosine schedule, with gradient clipping
and parameter averaging, built from optax's own pieces.

With peak rate ``η``, ``W`` warm-up steps and ``T`` total steps, the ``"warmup_cosine"`` rate at
step ``t`` (counted from 0) is (``optax.warmup_cosine_decay_schedule(0, η, W, T)``)

    η_t = η · t / W                                  for t < W   (linear warm-up from 0)
    η_t = η · ½ (1 + cos(π (t − W) / (T − W)))      for W ≤ t ≤ T (cosine decay to 0)

and ``η_t = 0`` after ``T`` (Loshchilov & Hutter 2017, "SGDR"; Goyal et al. 2017 for the
warm-up). The update is ``optax.chain(clip_by_global_norm(c), adam(η_t), params_ema(d))``, each
piece only when asked for: gradients rescaled to global norm at most ``c`` (Pascanu et al. 2013),
Adam (Kingma & Ba 2015), and a moving average of the parameters
(:func:`flowclass.averaging.params_ema`) that :func:`flowclass.fit` validates and returns.
"""

from __future__ import annotations

import math
import numbers

import optax

from flowclass.averaging import params_ema

SCHEDULES = ("constant", "warmup_cosine")
"""The learning-rate schedules :func:`make_optimizer` knows."""


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


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
      ``optax.adam(η)`` itself when nothing else is asked for, else
      ``optax.chain(clip, adam, ema)`` of the parts asked for, in that order.

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

    parts = [optax.adam(rate)]
    if clip_norm is not None:
        parts.insert(0, optax.clip_by_global_norm(float(clip_norm)))
    if ema_decay > 0:
        parts.append(params_ema(float(ema_decay)))
    return parts[0] if len(parts) == 1 else optax.chain(*parts)
