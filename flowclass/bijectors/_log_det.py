"""Dtype and log-det plumbing shared by every bijector.

A private module with public names: layers import them from here, nothing else does. The
conventions they implement, for a batch ``x`` of shape ``(batch, *event_shape)``:

* computations that produce a log-det run in ``at_least_float32(x.dtype)``: ``float32``
  for ``bfloat16``/``float16``/``float32`` inputs, ``float64`` for ``float64`` inputs (so they
  follow ``jax_enable_x64``);
* a log-det is per example, shape ``(batch,)``, in that dtype.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike


def at_least_float32(dtype: DTypeLike) -> np.dtype:
    """``dtype`` promoted to at least ``float32``: the dtype of log-dets and their inputs.

    >>> import jax.numpy as jnp
    >>> at_least_float32(jnp.bfloat16), at_least_float32(jnp.float32)
    (dtype('float32'), dtype('float32'))
    """
    return jnp.promote_types(dtype, jnp.float32)


def zero_log_det(x: jnp.ndarray) -> jnp.ndarray:
    """The log-det of a volume-preserving map: zeros of shape ``(batch,)``, dtype at least float32.

    >>> import jax.numpy as jnp
    >>> zero_log_det(jnp.ones((3, 2), jnp.bfloat16))
    Array([0., 0., 0.], dtype=float32)
    """
    return jnp.zeros((x.shape[0],), at_least_float32(x.dtype))


def constant_log_det(value: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """A log-det that is the same for every example (e.g. ActNorm's): ``value`` broadcast to ``(batch,)``.

    >>> import jax.numpy as jnp
    >>> constant_log_det(jnp.float32(1.5), jnp.ones((2, 4)))
    Array([1.5, 1.5], dtype=float32)
    """
    return value * jnp.ones((x.shape[0],), at_least_float32(x.dtype))


def sum_event(x: jnp.ndarray) -> jnp.ndarray:
    """Sums over every axis but the leading batch axis: ``(B, ...) -> (B,)``.

    Turns elementwise log-derivatives of an elementwise map into its per-example log-det.

    >>> import jax.numpy as jnp
    >>> sum_event(jnp.ones((2, 3, 4)))
    Array([12., 12.], dtype=float32)
    """
    return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)
