"""Training objectives, all of the form ``loss_fn(apply_fn, variables, x, y) -> (loss, aux)``.

``aux`` holds the batch's metrics for logging and model selection (``loss``, ``accuracy``, ...):
each a scalar mean over the batch's examples, or a :class:`Mean` ``(total, count)`` when it is
averaged over some of them only (e.g. the labelled examples of a semi-supervised batch). The
training loop sums totals and counts over steps and batches, so every metric is averaged over
exactly the examples it is defined on. A loss that accepts unlabelled examples (label ``-1``)
says so with a true ``accepts_unlabelled`` attribute (:class:`SemiSupervisedLoss`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, ClassVar, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from flowclass.data.labels import UNLABELLED

LossFn = Callable[..., tuple[jnp.ndarray, dict]]
Variables = Mapping[str, Any]


class Mean(NamedTuple):
    """A metric as ``total / count`` over the examples it is defined on (a pytree of two scalars).

    Example:
      >>> m = Mean(total=3.0, count=2.0)
      >>> m.value
      1.5
    """

    total: Any
    count: Any

    @property
    def value(self) -> Any:
        """``total / count`` (NaN when ``count`` is 0)."""
        return self.total / self.count if self.count else float("nan")


def make_flow_loss(
    *,
    cross_entropy_weight: float = 0.0,
    nll_unit: str = "nats",
    num_bins: int | None = None,
    posterior_temperature: float = 1.0,
) -> LossFn:
    """Class-conditional negative log-likelihood of a :class:`~flowclass.FlowClassifier`,
    optionally plus ``β`` times the cross-entropy of its Bayes posterior (a hybrid loss):

        L = NLL  +  β · (1/B) Σ_i −log softmax_k(ℓ_ik / T)[y_i],     NLL = −(1/B) Σ_i log p(x_i | y_i) / u

    with the class logits ``ℓ_ik = log π_k + log p(x_i | k)``, ``u = 1`` for ``nll_unit='nats'``
    (the slides' objective) or ``u = D log 2`` for ``'bits_per_dim'`` (so ``β`` means the same for
    any image size). ``T = posterior_temperature = 1`` is the Bayes posterior itself; in D
    dimensions, logit gaps grow like ``‖μ_j − μ_k‖² / 2`` (hundreds of nats for images), so at
    ``T = 1`` only misclassified examples have a gradient, a large one; ``T > 1`` spreads the
    classification pressure over examples with small margins (a margin loss). Prediction is
    unchanged: the argmax does not depend on ``T``.
    ``aux`` reports ``nll`` (nats per example), ``nll_per_dim`` (nats per dimension),
    ``bits_per_dim`` (plus ``log2(num_bins)`` for data quantised to ``num_bins`` levels
    in [0, 1]), ``cross_entropy`` (of the Bayes posterior, ``T = 1``) and ``accuracy``.

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
    if not posterior_temperature > 0:
        raise ValueError(f"posterior_temperature must be > 0; got {posterior_temperature}.")
    beta, temperature = float(cross_entropy_weight), float(posterior_temperature)
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
        loss = objective
        if beta:
            loss = loss + beta * jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits / temperature, y))
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
"""The slides' objective: the class-conditional negative log-likelihood alone."""


def make_semi_supervised_loss(
    *,
    unlabelled_weight: float = 1.0,
    cross_entropy_weight: float = 0.0,
    nll_unit: str = "nats",
    num_bins: int | None = None,
) -> SemiSupervisedLoss:
    """FlowGMM's semi-supervised objective (Izmailov et al. 2020): labelled examples by their joint
    likelihood, unlabelled ones (label ``-1``) by the mixture marginal, optionally plus ``β`` times
    the cross-entropy of the labelled examples' posterior:

        L = (1/B) Σ_i [ m_i (−log p(x_i, y_i) / u + β · (−log p(y_i | x_i)))  +  λ (1 − m_i) (−log p(x_i)) / u ]

        log p(x, k) = log N(f(x); μ_k, Σ_k) + log π_k + log|det ∂f/∂x|,     log p(x) = logsumexp_k log p(x, k)

    with ``m_i = 1`` for a labelled example, ``λ = unlabelled_weight`` and ``u`` as in
    :func:`make_flow_loss`. Every example adds its own term to the batch mean, so ``L``
    estimates the likelihood of the whole data set; to make a few labels count, repeat the
    labelled examples in the training set or lower ``λ``. On a fully labelled batch with
    uniform class weights ``L`` is :func:`make_flow_loss`'s loss plus the constant ``log K / u``.

    ``aux`` reports ``loss``, ``marginal_nll`` (``−log p(x)`` over all examples) and
    ``marginal_bits_per_dim``, ``labelled_fraction``, and over the labelled examples only, as
    :class:`Mean` pairs (so that :func:`~flowclass.fit` and :func:`~flowclass.evaluate` average
    them over the labelled examples): ``nll`` (class-conditional, as in :func:`make_flow_loss`),
    ``nll_per_dim``, ``bits_per_dim``, ``cross_entropy`` and ``accuracy``.

    Raises:
      ValueError: ``nll_unit`` not ``'nats'``/``'bits_per_dim'``; a negative weight.

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> loss_fn = make_semi_supervised_loss(unlabelled_weight=0.5)
      >>> x, y = jnp.ones((4, 2)), jnp.array([0, 1, -1, -1])
      >>> loss, aux = loss_fn(model.apply, variables, x, y)
      >>> float(aux["labelled_fraction"]), float(aux["accuracy"].count), loss_fn.accepts_unlabelled
      (0.5, 2.0, True)
    """
    if nll_unit not in ("nats", "bits_per_dim"):
        raise ValueError(f"nll_unit must be 'nats' or 'bits_per_dim'; got {nll_unit!r}.")
    if unlabelled_weight < 0 or cross_entropy_weight < 0:
        raise ValueError(
            f"unlabelled_weight and cross_entropy_weight must be >= 0; got {unlabelled_weight} and "
            f"{cross_entropy_weight}."
        )
    return SemiSupervisedLoss(float(unlabelled_weight), float(cross_entropy_weight), nll_unit, num_bins)


@dataclasses.dataclass(frozen=True)
class SemiSupervisedLoss:
    """The loss :func:`make_semi_supervised_loss` builds (its arguments are the fields).

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> loss, aux = SemiSupervisedLoss()(model.apply, variables, jnp.zeros((2, 2)), jnp.array([-1, -1]))
      >>> bool(loss == aux["marginal_nll"]), float(aux["accuracy"].count)
      (True, 0.0)
    """

    unlabelled_weight: float = 1.0
    cross_entropy_weight: float = 0.0
    nll_unit: str = "nats"
    num_bins: int | None = None
    accepts_unlabelled: ClassVar[bool] = True

    def __call__(
        self, apply_fn: Callable[..., Any], variables: Variables, x: jnp.ndarray, y: jnp.ndarray
    ) -> tuple[jnp.ndarray, dict[str, Any]]:
        lam, beta = self.unlabelled_weight, self.cross_entropy_weight
        offset = math.log2(self.num_bins) if self.num_bins else 0.0
        per_class = apply_fn(variables, x, method="class_log_likelihoods")
        log_joint = per_class + apply_fn(variables, method="log_weights")  # log p(x, k)
        labelled = y != UNLABELLED
        mask = labelled.astype(log_joint.dtype)
        count = jnp.sum(mask)
        target = jnp.where(labelled, y, 0)[:, None]
        marginal = jax.nn.logsumexp(log_joint, axis=-1)
        joint = jnp.take_along_axis(log_joint, target, axis=-1)[:, 0]
        conditional = jnp.take_along_axis(per_class, target, axis=-1)[:, 0]
        ce = optax.softmax_cross_entropy_with_integer_labels(log_joint, target[:, 0])
        dim = math.prod(x.shape[1:])
        unit = 1.0 if self.nll_unit == "nats" else dim * math.log(2.0)
        nll_terms = mask * -joint + lam * (1.0 - mask) * -marginal
        loss = jnp.mean(nll_terms) / unit
        if beta:
            loss = loss + beta * jnp.mean(mask * ce)
        nll_total = -jnp.sum(mask * conditional)
        marginal_nll = -jnp.mean(marginal)
        aux = {
            "loss": loss,
            "marginal_nll": marginal_nll,
            "marginal_bits_per_dim": marginal_nll / (dim * math.log(2.0)) + offset,
            "labelled_fraction": jnp.mean(mask),
            "nll": Mean(nll_total, count),
            "nll_per_dim": Mean(nll_total / dim, count),
            "bits_per_dim": Mean(nll_total / (dim * math.log(2.0)) + offset * count, count),
            "cross_entropy": Mean(jnp.sum(mask * ce), count),
            "accuracy": Mean(jnp.sum(mask * (jnp.argmax(log_joint, -1) == y)), count),
        }
        return loss, aux


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


