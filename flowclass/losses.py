"""Training objectives, all of the form ``loss_fn(apply_fn, variables, x, y) -> (loss, aux)``.

``aux`` holds scalar batch means (``loss``, ``accuracy``, ...) for logging and model selection.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import jax.numpy as jnp
import optax

LossFn = Callable[..., tuple[jnp.ndarray, dict]]
Variables = Mapping[str, Any]


def make_flow_loss(
    *, cross_entropy_weight: float = 0.0, nll_unit: str = "nats", num_bins: int | None = None
) -> LossFn:
    """Class-conditional negative log-likelihood of a :class:`~flowclass.FlowClassifier`,
    optionally plus ``β`` times the cross-entropy of its Bayes posterior (a hybrid loss):

        L = NLL  +  β · (1/B) Σ_i −log p(y_i | x_i),     NLL = −(1/B) Σ_i log p(x_i | y_i) / u

    with ``u = 1`` for ``nll_unit='nats'`` (the seed's objective) or ``u = D log 2`` for
    ``'bits_per_dim'`` (so ``β`` means the same for any image size).
    ``aux`` reports ``nll`` (nats per example), ``nll_per_dim`` (nats per dimension),
    ``bits_per_dim`` (plus ``log2(num_bins)`` for data quantised to ``num_bins`` levels
    in [0, 1]), ``cross_entropy`` and ``accuracy``.

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> loss_fn = make_flow_loss(cross_entropy_weight=1.0, nll_unit="bits_per_dim")
      >>> loss, aux = loss_fn(model.apply, variables, jnp.zeros((4, 2)), jnp.array([0, 1, 0, 1]))
      >>> sorted(aux)
      ['accuracy', 'bits_per_dim', 'cross_entropy', 'loss', 'nll', 'nll_per_dim']
      >>> bool(jnp.isclose(loss, aux["bits_per_dim"] + aux["cross_entropy"]))
      True
    """
    if nll_unit not in ("nats", "bits_per_dim"):
        raise ValueError(f"nll_unit must be 'nats' or 'bits_per_dim'; got {nll_unit!r}.")
    beta = float(cross_entropy_weight)
    offset = math.log2(num_bins) if num_bins else 0.0

    def flow_loss(
        apply_fn: Callable[..., Any], variables: Variables, x: jnp.ndarray, y: jnp.ndarray
    ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
        """The loss and metrics of a :class:`~flowclass.FlowClassifier` on a batch, as :func:`make_flow_loss` says.

        Example:
          >>> import jax, jax.numpy as jnp, flowclass as fc
          >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
          >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
          >>> loss, aux = fc.flow_nll(model.apply, variables, jnp.zeros((3, 2)), jnp.array([0, 1, 1]))
          >>> bool(loss == aux["nll"])
          True
        """
        per_class = apply_fn(variables, x, method="class_log_likelihoods")
        log_weights = apply_fn(variables, method="log_weights")
        nll = -jnp.mean(jnp.take_along_axis(per_class, y[:, None], axis=-1))
        logits = per_class + log_weights  # the log-det shift does not change the posterior
        cross_entropy = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
        dim = math.prod(x.shape[1:])
        objective = nll if nll_unit == "nats" else nll / (dim * math.log(2.0))
        loss = objective + beta * cross_entropy if beta else objective
        aux = {
            "loss": loss,
            "nll": nll,
            "nll_per_dim": nll / dim,
            "bits_per_dim": nll / (dim * math.log(2.0)) + offset,
            "cross_entropy": cross_entropy,
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == y),
        }
        return loss, aux

    return flow_loss


flow_nll = make_flow_loss()
"""The seed's objective: the class-conditional negative log-likelihood alone."""


def cross_entropy(
    apply_fn: Callable[..., Any], variables: Variables, x: jnp.ndarray, y: jnp.ndarray
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Softmax cross-entropy of a discriminative network that returns logits.

        L = (1/B) Σ_i −log softmax(logits(x_i))_{y_i}

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> net = fc.FNN(num_classes=2)
      >>> variables = net.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> loss, aux = cross_entropy(net.apply, variables, jnp.zeros((4, 2)), jnp.array([0, 1, 0, 1]))
      >>> sorted(aux), bool(loss > 0)
      (['accuracy', 'loss'], True)
    """
    logits = apply_fn(variables, x)
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
    return loss, {"loss": loss, "accuracy": accuracy}


