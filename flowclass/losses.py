"""Training objectives, all of the form ``loss_fn(apply_fn, variables, x, y) -> (loss, aux)``.

``aux`` holds scalar batch means (``loss``, ``accuracy``, ...) for logging and model selection.
"""

from __future__ import annotations

import math
from typing import Callable

import jax.numpy as jnp
import optax

LossFn = Callable[..., tuple[jnp.ndarray, dict]]


def make_flow_loss(*, cross_entropy_weight: float = 0.0) -> LossFn:
    """Class-conditional negative log-likelihood of a :class:`~flowclass.FlowClassifier`,
    optionally plus ``β`` times the cross-entropy of its Bayes posterior (a hybrid loss):

        L = −(1/B) Σ_i log p(x_i | y_i)  +  β · (1/B) Σ_i −log p(y_i | x_i)

    ``aux`` reports ``nll`` (nats per example), ``nll_per_dim`` (nats per dimension),
    ``bits_per_dim``, ``cross_entropy`` and ``accuracy``.
    """
    beta = float(cross_entropy_weight)

    def flow_loss(apply_fn, variables, x, y):
        per_class = apply_fn(variables, x, method="class_log_likelihoods")
        log_weights = apply_fn(variables, method="log_weights")
        nll = -jnp.mean(jnp.take_along_axis(per_class, y[:, None], axis=-1))
        logits = per_class + log_weights  # the log-det shift does not change the posterior
        cross_entropy = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
        dim = math.prod(x.shape[1:])
        loss = nll + beta * cross_entropy if beta else nll
        aux = {
            "loss": loss,
            "nll": nll,
            "nll_per_dim": nll / dim,
            "bits_per_dim": nll / (dim * math.log(2.0)),
            "cross_entropy": cross_entropy,
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == y),
        }
        return loss, aux

    return flow_loss


flow_nll = make_flow_loss()
"""The seed's objective: the class-conditional negative log-likelihood alone."""


def cross_entropy(apply_fn, variables, x, y):
    """Softmax cross-entropy of a discriminative network that returns logits."""
    logits = apply_fn(variables, x)
    loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    accuracy = jnp.mean(jnp.argmax(logits, -1) == y)
    return loss, {"loss": loss, "accuracy": accuracy}


