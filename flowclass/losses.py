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
import numbers
from typing import Any, Callable, ClassVar, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from flowclass.data.labels import UNLABELLED

#: Which copy's posterior is the consistency term's target (see :func:`make_semi_supervised_loss`).
CONSISTENCY_TARGETS = ("perturbed", "input")

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
    labelled_weight: float = 1.0,
    cross_entropy_weight: float = 0.0,
    nll_unit: str = "nats",
    num_bins: int | None = None,
    consistency_weight: float = 0.0,
    consistency_rampup_steps: int = 0,
    perturb: Callable[[jax.Array, jnp.ndarray], jnp.ndarray] | None = None,
    unlabelled_rampup_steps: int = 0,
    consistency_start_step: int = 0,
    consistency_target: str = "perturbed",
) -> SemiSupervisedLoss:
    """FlowGMM's semi-supervised objective (Izmailov et al. 2020): labelled examples by their joint
    likelihood, unlabelled ones (label ``-1``) by the mixture marginal, optionally plus ``β`` times
    the cross-entropy of the labelled examples' posterior and ``w(t)`` times a consistency term
    between the posteriors of two perturbed copies of each unlabelled example (FlowGMM-cons):

        L = (1/B) Σ_i [ m_i (α (−log p(x_i, y_i)) / u + β · (−log p(y_i | x_i)))  +  λ(t) (1 − m_i) (−log p(x_i)) / u ]
              + w(t) · (1/B) Σ_i (1 − m_i) KL( sg p(· | x̃_i) ‖ p(· | x_i) ),       x̃ = perturb(key, x)

        log p(x, k) = log N(f(x); μ_k, Σ_k) + log π_k + log|det ∂f/∂x|,     log p(x) = logsumexp_k log p(x, k)

    with ``m_i = 1`` for a labelled example, ``α = labelled_weight``, ``u`` as in
    :func:`make_flow_loss`, ``sg`` the stop-gradient and ``w(t) = consistency_weight · clip((t + 1
    − S) / R, 0, 1)`` at optimiser step ``t`` (a linear ramp-up over ``R = consistency_rampup_steps``
    steps, as in FlowGMM's code; ``R = 0``: the full weight), starting at step ``S =
    consistency_start_step`` (0 by default, as in FlowGMM's code; ``S > 0`` lets the labelled
    terms train the classifier whose predictions the term then copies: ``w(t) = 0`` for ``t < S``). ``λ(t) =
    unlabelled_weight · min(1, (t + 1) / R_u)`` likewise, ``R_u = unlabelled_rampup_steps``: a warm
    start on the labelled terms, which place the class Gaussians before the unlabelled examples'
    marginal pulls on them (not in FlowGMM's code; evaluation uses the full ``λ``). Every example
    adds its own term to the batch mean, so without the consistency term ``L`` estimates the
    likelihood of the whole data set; to make a few labels count, repeat the labelled examples in
    the training set, raise ``α`` or ``β``, or lower ``λ``. On a fully labelled batch with uniform
    class weights and ``α = 1``, ``L`` is :func:`make_flow_loss`'s loss plus the constant
    ``log K / u``.

    **Consistency.** ``x`` is the batch the trainer passes (in :func:`~flowclass.fit`, already
    augmented: one perturbed copy); ``x̃ = perturb(key, x)`` draws a second perturbation of it
    (for an :class:`~flowclass.data.ImagePipeline`'s ``augment``: new dequantisation noise in the
    same 8-bit bins, a further random shift). With ``consistency_target='perturbed'`` (the
    default, as written above) the second copy's posterior is the target and carries no gradient
    (costing one forward pass, no backward); the gradient flows through the copy whose likelihood
    is trained. With ``consistency_target='input'`` the roles swap, as in FixMatch (Sohn et al.
    2020: the target from the weakly augmented copy, the strongly augmented one trained): the
    term is ``KL(sg p(· | x) ‖ p(· | x̃))``, its target the posterior the likelihood terms already
    compute, its gradient through a forward and backward pass of ``x̃`` (x̃, further perturbed,
    is the copy the classifier gets wrong more often; before ``S`` only its forward pass runs).
    The second copy's forward pass runs from step 0, also before ``S``: its agreement with the
    first is reported throughout. In image dimensions the posteriors are nearly one-hot, so the term is the
    cross-entropy of the trained copy's posterior against the class predicted for the target copy
    — FlowGMM-cons's pseudo-label, which its code scores with the class-conditional likelihood
    instead. Units: the KL is in nats per unlabelled example, whatever ``nll_unit``; with the NLL in
    bits/dim a weight ``w`` therefore weighs ``D log 2`` times more against the likelihood than
    the same ``w`` against an NLL in nats (FlowGMM's code keeps every term in nats).
    The term is 0 when the two copies are equal (``perturb`` the identity). With a consistency
    term or a ramp-up of ``λ`` the loss takes ``key`` (a JAX PRNG key) and ``step`` (the optimiser
    step ``t``) keyword arguments; :func:`~flowclass.fit` passes them
    (:attr:`SemiSupervisedLoss.needs_key`). Evaluation calls it without ``key``: no consistency
    term, the likelihood terms at full weight.

    ``aux`` reports ``loss``, ``marginal_nll`` (``−log p(x)`` over all examples) and
    ``marginal_bits_per_dim``, ``labelled_fraction``, and over the labelled examples only, as
    :class:`Mean` pairs (so that :func:`~flowclass.fit` and :func:`~flowclass.evaluate` average
    them over the labelled examples): ``nll`` (class-conditional, as in :func:`make_flow_loss`),
    ``nll_per_dim``, ``bits_per_dim``, ``cross_entropy`` and ``accuracy``; with a key and a
    consistency term, ``consistency`` (the KL in nats, a :class:`Mean` over the unlabelled
    examples), ``consistency_agreement`` (the fraction of unlabelled examples whose two copies get
    the same class) and ``consistency_weight`` (``w(t)``); with a key and a ramp-up of ``λ``,
    ``unlabelled_weight`` (``λ(t)``).

    Raises:
      ValueError: ``nll_unit`` not ``'nats'``/``'bits_per_dim'``; a negative weight or ramp-up, a
        ramp-up or ``consistency_start_step`` that is not a whole number of steps;
        ``consistency_weight > 0`` without ``perturb``;
        ``consistency_target`` not ``'perturbed'``/``'input'``.
      TypeError: ``perturb`` not callable.

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> loss_fn = make_semi_supervised_loss(unlabelled_weight=0.5)
      >>> x, y = jnp.ones((4, 2)), jnp.array([0, 1, -1, -1])
      >>> loss, aux = loss_fn(model.apply, variables, x, y)
      >>> float(aux["labelled_fraction"]), float(aux["accuracy"].count), loss_fn.accepts_unlabelled
      (0.5, 2.0, True)
      >>> noisy = lambda key, x: x + 0.1 * jax.random.normal(key, x.shape)
      >>> cons = make_semi_supervised_loss(consistency_weight=1.0, consistency_rampup_steps=100, perturb=noisy)
      >>> loss, aux = cons(model.apply, variables, x, y, key=jax.random.key(1), step=49)
      >>> cons.needs_key, float(aux["consistency_weight"]), float(aux["consistency"].count)
      (True, 0.5, 2.0)
    """
    if nll_unit not in ("nats", "bits_per_dim"):
        raise ValueError(f"nll_unit must be 'nats' or 'bits_per_dim'; got {nll_unit!r}.")
    weights = {"unlabelled_weight": unlabelled_weight, "labelled_weight": labelled_weight,
               "cross_entropy_weight": cross_entropy_weight, "consistency_weight": consistency_weight,
               "consistency_rampup_steps": consistency_rampup_steps, "unlabelled_rampup_steps": unlabelled_rampup_steps,
               "consistency_start_step": consistency_start_step}
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0; got {value!r}.")
    for name in ("consistency_rampup_steps", "unlabelled_rampup_steps", "consistency_start_step"):
        if int(weights[name]) != weights[name]:
            raise ValueError(f"{name} must be an integer (optimiser steps); got {weights[name]!r}.")
    if perturb is not None and not callable(perturb):
        raise TypeError(f"perturb must be a function (key, x) -> x or None; got {type(perturb).__name__}.")
    return SemiSupervisedLoss(float(unlabelled_weight), float(cross_entropy_weight), nll_unit, num_bins,
                              labelled_weight=float(labelled_weight), consistency_weight=float(consistency_weight),
                              consistency_rampup_steps=int(consistency_rampup_steps), perturb=perturb,
                              unlabelled_rampup_steps=int(unlabelled_rampup_steps),
                              consistency_start_step=int(consistency_start_step),
                              consistency_target=consistency_target)


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
    labelled_weight: float = 1.0
    consistency_weight: float = 0.0
    consistency_rampup_steps: int = 0
    perturb: Callable[[jax.Array, jnp.ndarray], jnp.ndarray] | None = None
    unlabelled_rampup_steps: int = 0
    consistency_start_step: int = 0
    consistency_target: str = "perturbed"
    accepts_unlabelled: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for name in ("consistency_rampup_steps", "unlabelled_rampup_steps", "consistency_start_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (optimiser steps); got {value!r}.")
        if self.consistency_target not in CONSISTENCY_TARGETS:
            raise ValueError(f"consistency_target must be one of {CONSISTENCY_TARGETS}; "
                             f"got {self.consistency_target!r}.")
        if self.consistency_weight > 0 and not callable(self.perturb):
            raise ValueError("consistency_weight > 0 needs perturb, a function (key, x) -> x drawing the second copy "
                             f"(e.g. an ImagePipeline's augment); got perturb={self.perturb!r}.")

    @property
    def needs_key(self) -> bool:
        """Whether training steps must pass ``key`` and ``step`` (a consistency term or a ramp-up of
        the unlabelled term is on)."""
        return self.consistency_weight > 0 or self.unlabelled_rampup_steps > 0

    def consistency_weight_at(self, step: Any) -> Any:
        """``w(t) = consistency_weight · clip((t + 1 − S) / R, 0, 1)``, the ramped weight at optimiser
        step ``t`` (0 before the start step ``S``; the full weight from ``S`` when ``R = 0``)."""
        return _ramp(self.consistency_weight, self.consistency_rampup_steps, step, self.consistency_start_step)

    def unlabelled_weight_at(self, step: Any) -> Any:
        """``λ(t) = unlabelled_weight · min(1, (t + 1) / R_u)``, the ramped weight at optimiser step ``t``."""
        return _ramp(self.unlabelled_weight, self.unlabelled_rampup_steps, step)

    def __call__(
        self, apply_fn: Callable[..., Any], variables: Variables, x: jnp.ndarray, y: jnp.ndarray, *,
        key: jax.Array | None = None, step: Any = None,
    ) -> tuple[jnp.ndarray, dict[str, Any]]:
        training = self.needs_key and key is not None
        if training and step is None:
            raise ValueError("step (the optimiser step, for the ramp-ups) must be given with key.")
        lam = self.unlabelled_weight_at(step) if training else self.unlabelled_weight
        beta, alpha = self.cross_entropy_weight, self.labelled_weight
        offset = math.log2(self.num_bins) if self.num_bins else 0.0
        per_class = apply_fn(variables, x, method="class_log_likelihoods")
        log_weights = apply_fn(variables, method="log_weights")
        log_joint = per_class + log_weights  # log p(x, k)
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
        nll_terms = alpha * mask * -joint + lam * (1.0 - mask) * -marginal
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
        if training and self.unlabelled_rampup_steps:
            aux["unlabelled_weight"] = lam
        if training and self.consistency_weight > 0:
            assert self.perturb is not None and key is not None  # __post_init__ checks perturb
            perturbed = self.perturb(key, x)
            weight = self.consistency_weight_at(step)

            def second_copy(v):
                return apply_fn(v, perturbed, method="class_log_likelihoods")

            def second_copy_constant(v):
                return jax.lax.stop_gradient(second_copy(v))

            if self.consistency_target == "perturbed":  # target: the second copy; trained: x
                other = jax.lax.stop_gradient(second_copy(variables) + log_weights)
                target_logits, trained = other, log_joint
            else:  # FixMatch's direction: target x (its posterior computed above), trained: the second copy
                # while w(t) = 0 (before the start step) only the second copy's forward pass runs (for the
                # agreement): its backward pass would carry zeros
                other = jax.lax.cond(weight > 0, second_copy, second_copy_constant, variables) + log_weights
                target_logits, trained = jax.lax.stop_gradient(log_joint), other
            target_log_p = jax.nn.log_softmax(target_logits, axis=-1)
            kl = jnp.sum(jnp.exp(target_log_p) * (target_log_p - jax.nn.log_softmax(trained, axis=-1)), axis=-1)
            unlabelled = 1.0 - mask
            loss = loss + weight * jnp.mean(unlabelled * kl)
            aux["loss"] = loss
            agree = jnp.argmax(other, -1) == jnp.argmax(log_joint, -1)
            aux["consistency"] = Mean(jnp.sum(unlabelled * kl), jnp.sum(unlabelled))
            aux["consistency_agreement"] = Mean(jnp.sum(unlabelled * agree), jnp.sum(unlabelled))
            aux["consistency_weight"] = weight
        return loss, aux


def _ramp(weight: float, steps: int, step: Any, start: int = 0) -> jnp.ndarray:
    """``weight · clip((step + 1 − start) / steps, 0, 1)``; with ``steps = 0``, ``weight`` from
    ``start`` on (0 before)."""
    if not steps and not start:
        return jnp.asarray(weight, jnp.float32)
    # steps = 0 is a one-step ramp: 0 before start, the full weight from start on
    return weight * jnp.clip((jnp.asarray(step, jnp.float32) + 1.0 - start) / max(steps, 1), 0.0, 1.0)


def needs_key(loss_fn: Any) -> bool:
    """Whether ``loss_fn`` takes ``key`` and ``step`` keyword arguments in training (its
    ``needs_key`` attribute): it draws random numbers (a consistency term) or ramps a weight.

    >>> import flowclass as fc
    >>> needs_key(fc.flow_nll), needs_key(fc.make_semi_supervised_loss())
    (False, False)
    """
    return bool(getattr(loss_fn, "needs_key", False))


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


