"""Two moons: the seed's splits and the true class densities.

``sklearn.datasets.make_moons`` places class 0 on the upper half circle
``m_0(t) = (cos t, sin t)`` and class 1 on the lower one ``m_1(t) = (1 − cos t, ½ − sin t)``,
``t ∈ [0, π]`` evenly spaced, and adds ``N(0, σ² I)`` noise, with equal class sizes. So

    p(x | c) = (1/π) ∫_0^π N(x; m_c(t), σ² I) dt,

which we integrate with the midpoint rule on ``num_nodes`` nodes. The Bayes-optimal
classifier is ``argmax_c p(x | c)`` (equal priors): no classifier can beat its accuracy
in expectation.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike


def make_moons(n_samples: int, noise: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """``sklearn.datasets.make_moons`` as ``float32`` inputs and ``int32`` labels.

    >>> x, y = make_moons(100, noise=0.1, random_state=0)
    >>> x.shape, x.dtype, y.dtype, int(y.sum())
    ((100, 2), dtype('float32'), dtype('int32'), 50)
    """
    from sklearn.datasets import make_moons as sk_make_moons

    if noise < 0:
        raise ValueError(f"noise must be >= 0; got {noise}.")
    x, y = sk_make_moons(n_samples, noise=noise, random_state=random_state)
    return x.astype(np.float32), y.astype(np.int32)


def seed_moons(
    noise: float, *, n_samples: int = 10_000, n_train: int = 8_500, random_state: int = 170
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The seed's data: ``make_moons(10000, noise, random_state=170)``, first 8500 for
    training, the remaining 1500 for test. Returns ``(x_train, y_train), (x_test, y_test)``.

    >>> (x, y), (x_test, y_test) = seed_moons(noise=0.1)
    >>> x.shape, x_test.shape
    ((8500, 2), (1500, 2))
    """
    x, y = make_moons(n_samples, noise, random_state)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


@jax.jit
def _class_log_density(x: jnp.ndarray, noise: float, t: jnp.ndarray) -> jnp.ndarray:
    def per_class(centres):  # centres (M, 2) -> (N,)
        sq = jnp.sum((x[:, None, :] - centres[None]) ** 2, axis=-1)
        return jax.nn.logsumexp(-0.5 * sq / noise**2, axis=-1)

    upper = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1)
    lower = jnp.stack([1.0 - jnp.cos(t), 0.5 - jnp.sin(t)], axis=-1)
    log_norm = -math.log(t.shape[0]) - jnp.log(2.0 * jnp.pi * noise**2)
    return jnp.stack([per_class(upper), per_class(lower)], axis=-1) + log_norm


def moons_class_log_density(x: ArrayLike, noise: float, *, num_nodes: int = 2048, chunk: int = 8192) -> np.ndarray:
    """True ``log p(x | c)`` of ``make_moons`` data for ``c ∈ {0, 1}``, shape ``(N, 2)``.

    >>> points = np.array([[0.0, 1.0], [1.0, -0.5]])  # the tops of the upper and lower moon
    >>> moons_class_log_density(points, noise=0.1).argmax(-1).tolist()
    [0, 1]
    """
    if noise <= 0:
        raise ValueError(f"the moons density needs noise > 0; got {noise}.")
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (N, 2); got {x.shape}.")
    t = jnp.asarray((np.arange(num_nodes) + 0.5) * np.pi / num_nodes, jnp.float32)
    pieces = []
    for start in range(0, len(x), chunk):
        piece = np.zeros((chunk, 2), np.float32)  # pad so every chunk has one compiled shape
        rows = x[start : start + chunk]
        piece[: len(rows)] = rows
        pieces.append(np.asarray(_class_log_density(jnp.asarray(piece), noise, t))[: len(rows)])
    return np.concatenate(pieces).astype(np.float64)


def moons_log_density(x: ArrayLike, noise: float, **kwargs: Any) -> np.ndarray:
    """True marginal ``log p(x) = log ½ (p(x | 0) + p(x | 1))``, shape ``(N,)``.

    >>> log_p = moons_log_density(np.array([[0.0, 1.0], [0.5, 0.25], [3.0, 3.0]]), noise=0.1)
    >>> bool(log_p[0] > log_p[1] > log_p[2])  # on a moon, between the moons, far away
    True
    """
    per_class = moons_class_log_density(x, noise, **kwargs)
    return np.logaddexp(per_class[:, 0], per_class[:, 1]) - math.log(2.0)


def bayes_predict(x: ArrayLike, noise: float, **kwargs: Any) -> np.ndarray:
    """Bayes-optimal labels ``argmax_c p(x | c)`` for ``make_moons`` data.

    >>> bayes_predict(np.array([[0.0, 1.0], [1.0, -0.5]]), noise=0.1).tolist()
    [0, 1]
    """
    return np.argmax(moons_class_log_density(x, noise, **kwargs), axis=-1).astype(np.int32)
