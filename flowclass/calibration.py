"""Temperature scaling (Guo et al. 2017): one scalar ``T`` fitted on held-out data.

Calibrated probabilities are ``softmax(logits / T)``; ``T`` minimises the validation NLL

    NLL(β) = (1/n) Σ_i [ logsumexp_k(β l_ik) − β l_{i, y_i} ],     β = 1/T,

which is convex in ``β`` with derivative ``(1/n) Σ_i (E_{softmax(β l_i)}[l_i] − l_{i, y_i})``, so
bisection on the sign of the derivative finds the optimum. Accuracy does not change.

For a flow classifier with identity class covariances the logits are
``−‖z − μ_k‖² / 2 + log π_k`` up to a class-independent term, so dividing them by ``T`` is
the same as giving every class Gaussian the covariance ``T · I`` (latent scale ``√T``) with
the class log-weights divided by ``T``: temperature scaling *is* fitting the latent scale.

Example:
  >>> import numpy as np
  >>> rng = np.random.default_rng(0)
  >>> true_logits = rng.normal(size=(4000, 3))
  >>> labels = np.array([rng.choice(3, p=np.exp(l) / np.exp(l).sum()) for l in true_logits])
  >>> round(fit_temperature(4.0 * true_logits, labels), 1)  # four times too sharp: T ≈ 4
  4.0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from flowclass._validation import check_positive_int, check_real, check_scores


def fit_temperature(
    logits: ArrayLike, labels: ArrayLike, *, bounds: tuple[float, float] = (1e-3, 1e6), iterations: int = 80
) -> float:
    """The ``T`` in ``bounds`` minimising the NLL of ``softmax(logits / T)`` on ``(logits, labels)``.

    Fit on a validation split, never on the test set. If the optimum lies outside
    ``bounds`` (e.g. every validation example is already right with probability → 1),
    the nearer bound is returned. ``logits`` ``(n, K)`` floats, ``labels`` ``(n,)`` integers
    in ``[0, K)``; ``T`` is unitless (a divisor of the logits). Bisection runs ``iterations``
    times on ``log β``, so the result is exact to about ``log(hi/lo) / 2^iterations`` in ``log T``.

    Raises:
      ValueError: ``logits`` not ``(n, K)`` and finite, ``labels`` not ``n`` integers in
        ``[0, K)``, ``bounds`` not a pair of numbers ``0 < low < high``, or ``iterations`` not a
        positive integer (``TypeError`` for ``None`` or a string as ``logits`` or ``labels``).

    >>> fit_temperature(np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]]), np.array([0, 1, 1])) > 1
    True
    """
    logits, labels = check_scores(logits, labels)
    if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__") or len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (low, high); got {bounds!r}.")
    lo, hi = check_real(bounds[0], "bounds low", minimum=0.0, open_min=True), check_real(bounds[1], "bounds high")
    if not 0 < lo < hi:
        raise ValueError(f"bounds must satisfy 0 < low < high; got {bounds}.")
    check_positive_int(iterations, "iterations")
    # bisection on log β, β = 1/T ∈ [1/hi, 1/lo]
    log_beta = np.array([-np.log(hi), -np.log(lo)])
    for _ in range(iterations):
        middle = log_beta.mean()
        if float(_nll_slope(logits, labels, jnp.exp(jnp.float32(middle)))) > 0:
            log_beta[1] = middle
        else:
            log_beta[0] = middle
    return float(np.exp(-log_beta.mean()))


@jax.jit
def _nll_slope(logits, labels, beta):
    """``d NLL / d β`` at ``β``: mean of ``E_{p_β}[l] − l_y``."""
    logits = logits.astype(jnp.float32)
    probs = jax.nn.softmax(beta * logits, axis=-1)
    expected = jnp.sum(probs * logits, axis=-1)
    return jnp.mean(expected - jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0])
