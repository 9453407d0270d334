"""Attacks as gradient ascent over *inputs*: many trajectories at once, jitted.

Every attack keeps a model fixed and moves a variable ``v`` (the input ``x``, or a latent
code ``z``) to increase an objective ``J(v; t)`` for a class ``t``. The confidence,
likelihood and latent attacks feed an optax optimiser ``−∇_v J`` (optax minimises) and
apply an optional projection ``Π`` (the box ``bounds``):

    (u_s, state_{s+1}) = opt.update(−∇_v J(v_s; t), state_s)
    v_{s+1}            = Π(v_s + u_s)

PGD and FGSM take the projected signed (``linf``) or normalised (``l2``) gradient step
:func:`pgd_step` in the ball ``‖x − x_0‖ ≤ ε`` instead.

=================  =========================  ===============================================
attack             variable                   objective ``J``
=================  =========================  ===============================================
confidence         ``x``                      ``log p(t | x)`` of any classifier (logits)
likelihood         ``x``                      ``log p(x | t) = log N(f(x); μ_t, Σ_t) + log|det ∂f/∂x|``
latent             ``z``, ``x = f⁻¹(z)``      ``log p(t | f⁻¹(z))``, starting at ``z_0 = f(x_0)``
PGD / FGSM         ``x``, ``‖x − x_0‖ ≤ ε``    ``log p(t | x)`` (targeted) or ``−log p(y | x)``
=================  =========================  ===============================================

Each start point is its own trajectory with its own optimiser state: the single-point
update is ``vmap``-ed over the batch and the loop over steps is a ``lax.scan`` of fixed
length, so the whole path has a static shape. Attacks that stop at a confidence
threshold carry a ``done`` mask: a finished trajectory (and its optimiser state) stays
put, and once every trajectory is finished the remaining steps skip the model entirely.

**One PGD/FGSM engine.** :func:`pgd_step` is the one projected gradient step of the
library (Madry et al. 2018; FGSM, Goodfellow et al. 2015, is one such step of size ``ε``)
and :func:`pgd_random_start` its random start. :func:`pgd_trajectories` and
:func:`fgsm_trajectories` record every iterate with them;
:func:`flowclass.robustness.pgd_robust_accuracy` and
:func:`~flowclass.robustness.fgsm_robust_accuracy` run the same step on a margin loss and
keep only each example's strongest point, to measure robust accuracy.

**The boundary.** The public attacks check every argument eagerly before the one compiled call
and raise ``ValueError`` (``TypeError`` for a callable, optimiser or key of the wrong kind)
naming it: start points (a finite floating-point batch, lists accepted, inside ``bounds``),
classes (any integer scalar or one per point, in ``[0, K)`` with ``K`` from the model's output),
counts, sizes and probabilities. The engine pieces :func:`pgd_step` and :func:`pgd_random_start`
run inside jitted loops: they check shapes, dtypes, ``norm``, the key, and ``eps``/``step_size``
when these are Python numbers, but not array values (NaN, box) — their callers have checked those.

Models enter as plain callables on batches, e.g. ``functools.partial(model.apply,
variables)`` for logits. Array arguments of a ``functools.partial`` (or a
``jax.tree_util.Partial``) are passed to the compiled graph as inputs, not baked in as
constants (:func:`traceable`), so calling an attack again with new weights or new start
points of the same shapes reuses the compilation. Pass the same ``optimizer`` object to
reuse it too.

Example:
  >>> import functools, jax, jax.numpy as jnp, flowclass as fc
  >>> net = fc.FNN(num_classes=2)
  >>> variables = net.init(jax.random.key(0), jnp.zeros((1, 2)))
  >>> result = confidence_attack(functools.partial(net.apply, variables), jnp.zeros((5, 2)), 1, max_steps=50)
  >>> result.inputs.shape, result.target_prob.shape, result.success_step.shape
  ((51, 5, 2), (51, 5), (5,))
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Literal, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.tree_util import Partial
from jax.typing import ArrayLike

from flowclass._validation import (
    as_array,
    check_bounds,
    check_callable,
    check_classifier_inputs,
    check_key,
    check_norm,
    check_optimizer,
    check_positive,
    check_positive_int,
    check_probability,
    is_floating,
    is_real_number_dtype,
)

Norm = Literal["linf", "l2"]

DEFAULT_OPTIMIZER = optax.adam(0.1)
"""The slides' optimiser for input-space attacks: Adam with learning rate 0.1 (the default here)."""


class AttackResult(NamedTuple):
    """The whole path of every trajectory of an attack with ``T`` steps on ``n`` start points.

    Attributes:
      inputs: ``x_s`` for ``s = 0..T``, shape ``(T + 1, n, *event_shape)``.
      probs: the attacked classifier's ``p(k | x_s)``, shape ``(T + 1, n, K)``.
      objective: the ascended objective ``J`` at step ``s``, shape ``(T + 1, n)``.
      target: the class each trajectory is pushed towards (for untargeted FGSM/PGD: its
        true class, pushed away from), shape ``(n,)``.
      success_step: the first ``s`` at which the attack's success criterion held, ``-1``
        if it never did, shape ``(n,)``.
      num_steps: updates actually applied; ``inputs[s] == inputs[num_steps]`` for every
        ``s ≥ num_steps`` (early-stopped trajectories stay put), shape ``(n,)``.
      latents: ``z_s`` for the latent attack, shape ``(T + 1, n, *latent_shape)``; else ``None``.

    Example:
      >>> import functools, jax, jax.numpy as jnp, flowclass as fc
      >>> net = fc.FNN(2)
      >>> logits_fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
      >>> result = confidence_attack(logits_fn, jnp.zeros((4, 2)), 1, max_steps=30)
      >>> result.final.shape, result.target_prob.shape, result.succeeded.shape, result.latents is None
      ((4, 2), (31, 4), (4,), True)
    """

    inputs: jnp.ndarray
    probs: jnp.ndarray
    objective: jnp.ndarray
    target: jnp.ndarray
    success_step: jnp.ndarray
    num_steps: jnp.ndarray
    latents: jnp.ndarray | None = None

    @property
    def final(self) -> jnp.ndarray:
        """``x_T``, shape ``(n, *event_shape)``."""
        return self.inputs[-1]

    @property
    def target_prob(self) -> jnp.ndarray:
        """``p(target | x_s)``, shape ``(T + 1, n)``."""
        return jnp.take_along_axis(self.probs, self.target[None, :, None], axis=-1)[..., 0]

    @property
    def succeeded(self) -> jnp.ndarray:
        """``success_step ≥ 0``, shape ``(n,)``."""
        return self.success_step >= 0


# ---------------------------------------------------------------------------------------
# Public attacks: validate eagerly, then call a jitted implementation.
# ---------------------------------------------------------------------------------------


def confidence_attack(
    logits_fn: Callable[[jnp.ndarray], jnp.ndarray],
    x0: ArrayLike,
    target: ArrayLike,
    *,
    optimizer: optax.GradientTransformation = DEFAULT_OPTIMIZER,
    max_steps: int = 500,
    threshold: float = 0.99,
    bounds: tuple[float, float] | None = None,
) -> AttackResult:
    """Ascends ``log p(target | x)`` until ``p(target | x) > threshold`` or ``max_steps``.

    ``logits_fn`` maps a batch ``(b, *event_shape)`` to logits ``(b, K)``: a discriminative
    net or a :class:`~flowclass.FlowClassifier` alike. Each trajectory stops at its own
    success step (``success_step == num_steps``) and stays there. ``bounds = (lo, hi)``
    clips every step to the box ``[lo, hi]``. ``optimizer`` is any optax transformation,
    e.g. the default Adam(0.1) or signed steps ``optax.sign_sgd(0.01)``. The objective is the
    targeted loss of the slides and of Szegedy et al. (2014), without a distance penalty.

    Args:
      logits_fn: maps ``(b, *event_shape)`` to logits ``(b, K)``.
      x0: start points, floating-point ``(n, *event_shape)``, finite (inside ``bounds``).
      target: the class to reach: one integer for all, or integers ``(n,)`` in ``[0, K)``.
      optimizer: the optax optimiser of every trajectory (one state per point).
      max_steps: the most steps ``T ≥ 1``; the path has a static length ``T + 1``.
      threshold: success probability, in ``(0, 1)``.
      bounds: the input box ``(lo, hi)``, or ``None``.

    Returns:
      :class:`AttackResult`: ``inputs`` ``(T + 1, n, *event_shape)``, ``probs`` ``(T + 1, n, K)``,
      ``objective = log p(target | x_s)`` in nats ``(T + 1, n)``, ``success_step`` and
      ``num_steps`` ``(n,)``.

    Raises:
      ValueError: for a bad batch, target, ``max_steps``, ``threshold`` or ``bounds`` (the
        message names the argument), or a model function that does not return ``(b, K)``.
      TypeError: ``logits_fn`` not callable, ``optimizer`` not an optax transformation, ``x0``
        or ``target`` not an array.

    Example:
      >>> import functools, jax, jax.numpy as jnp, flowclass as fc
      >>> net = fc.FNN(2)
      >>> logits_fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
      >>> result = confidence_attack(logits_fn, jnp.zeros((3, 2)), jnp.array([0, 1, 1]), max_steps=20)
      >>> result.inputs.shape
      (21, 3, 2)
    """
    x0, target, num_classes = check_classifier_inputs(logits_fn, x0, target)
    check_optimizer(optimizer)
    check_positive_int(max_steps, "max_steps")
    check_probability(threshold, "threshold")
    max_steps = int(max_steps)
    return _confidence(
        traceable(logits_fn), x0, target, jnp.float32(threshold), check_bounds(bounds, x0, name="x0"),
        optimizer=optimizer, max_steps=max_steps,
    )


def likelihood_attack(
    class_log_likelihoods_fn: Callable[[jnp.ndarray], jnp.ndarray],
    x0: ArrayLike,
    target: ArrayLike,
    *,
    log_prior: ArrayLike | None = None,
    optimizer: optax.GradientTransformation = DEFAULT_OPTIMIZER,
    steps: int = 20,
    threshold: float = 0.99,
    bounds: tuple[float, float] | None = None,
) -> AttackResult:
    """Ascends the class likelihood ``log p(x | target)`` of a flow classifier for ``steps`` steps.

    ``class_log_likelihoods_fn`` maps ``(b, *event_shape)`` to ``log p(x | k)``, shape
    ``(b, K)``, flow log-det included (``FlowClassifier.class_log_likelihoods``). The
    recorded ``probs`` are the Bayes posterior ``softmax_k(log p(x | k) + log π_k)`` with
    ``log_prior = log π`` (uniform if ``None``); ``success_step`` is the first step with
    ``p(target | x) > threshold``. There is no early stopping: all ``steps`` steps run (the
    slides' attack, 20 steps). ``objective`` is ``log p(x | target)`` in nats; other
    arguments and the result's shapes as :func:`confidence_attack`.

    Raises:
      ValueError, TypeError: as :func:`confidence_attack`, and ``ValueError`` for a ``log_prior`` that is
        not ``(K,)`` finite numbers.

    Example:
      >>> import functools, jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> fn = functools.partial(model.apply, variables, method="class_log_likelihoods")
      >>> result = likelihood_attack(fn, jnp.zeros((4, 2)), 1)
      >>> bool(jnp.all(result.objective[-1] > result.objective[0]))
      True
    """
    x0, target, num_classes = check_classifier_inputs(class_log_likelihoods_fn, x0, target,
                                                      fn_name="class_log_likelihoods_fn")
    check_optimizer(optimizer)
    check_positive_int(steps, "steps")
    check_probability(threshold, "threshold")
    steps = int(steps)
    if log_prior is None:
        log_prior = jnp.full((num_classes,), -math.log(num_classes), jnp.float32)
    log_prior = cast(jax.Array, as_array(log_prior, "log_prior"))
    if not is_real_number_dtype(log_prior.dtype):
        raise ValueError(f"log_prior must hold real numbers (log class weights); got dtype {log_prior.dtype}.")
    log_prior = jnp.asarray(log_prior, jnp.float32)
    if log_prior.shape != (num_classes,):
        raise ValueError(f"log_prior must have shape ({num_classes},) (one per class); got {log_prior.shape}.")
    if not bool(jnp.all(jnp.isfinite(log_prior))):
        raise ValueError(f"log_prior must be finite; got {log_prior.tolist()}.")
    return _likelihood(
        traceable(class_log_likelihoods_fn), x0, target, log_prior, jnp.float32(threshold),
        check_bounds(bounds, x0, name="x0"), optimizer=optimizer, steps=steps,
    )


def latent_attack(
    logits_fn: Callable[[jnp.ndarray], jnp.ndarray],
    encode_fn: Callable,
    decode_fn: Callable,
    x0: ArrayLike,
    target: ArrayLike,
    *,
    optimizer: optax.GradientTransformation = DEFAULT_OPTIMIZER,
    max_steps: int = 500,
    threshold: float = 0.99,
) -> AttackResult:
    """On-manifold attack: ascends ``log p(target | f⁻¹(z))`` over the latent code ``z`` of a flow.

    ``encode_fn(x) -> (z, log_det)`` and ``decode_fn(z) -> (x, log_det)`` are the flow ``f``
    and its inverse in the library's bijector convention (``FlowClassifier.encode`` /
    ``decode``; for an unconditional flow, one standard Gaussian base). The attack starts
    at ``z_0 = f(x_0)``; the classifier ``logits_fn`` sees ``x_s = f⁻¹(z_s)``, so the input
    can only move where the flow puts it: along the learned data manifold, if the flow
    learned it. Stops per trajectory at ``p(target | x) > threshold``. ``latents`` holds
    the path in ``z`` ``(T + 1, n, *latent_shape)``, ``inputs`` the decoded path in ``x``;
    other fields as :func:`confidence_attack`.

    Raises:
      ValueError, TypeError: as :func:`confidence_attack` (``TypeError`` also for an ``encode_fn`` or
        ``decode_fn`` that is not callable), and ``ValueError`` when ``decode_fn(encode_fn(x0))`` does
        not have the shape of ``x0``.

    Example:
      >>> import functools, jax, jax.numpy as jnp, flowclass as fc
      >>> flow = fc.tabular_realnvp(2, 1, means=((0.0, 0.0),))
      >>> fv = flow.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> net = fc.FNN(2)
      >>> nv = net.init(jax.random.key(1), jnp.zeros((1, 2)))
      >>> result = latent_attack(functools.partial(net.apply, nv), functools.partial(flow.apply, fv, method="encode"),
      ...                        functools.partial(flow.apply, fv, method="decode"), jnp.zeros((3, 2)), 0, max_steps=10)
      >>> result.latents.shape
      (11, 3, 2)
    """
    x0, target, _ = check_classifier_inputs(logits_fn, x0, target)
    check_callable(encode_fn, "encode_fn")
    check_callable(decode_fn, "decode_fn")
    check_optimizer(optimizer)
    check_positive_int(max_steps, "max_steps")
    check_probability(threshold, "threshold")
    max_steps = int(max_steps)
    z_shape = jax.eval_shape(lambda x: encode_fn(x)[0], x0)
    x_shape = jax.eval_shape(lambda z: decode_fn(z)[0], z_shape)
    if x_shape.shape != x0.shape:
        raise ValueError(
            f"decode_fn(encode_fn(x0)) must have the shape of x0, {x0.shape}; got {x_shape.shape}."
        )
    return _latent(
        traceable(logits_fn), traceable(encode_fn), traceable(decode_fn), x0, target,
        jnp.float32(threshold), optimizer=optimizer, max_steps=max_steps,
    )


def pgd_trajectories(
    logits_fn: Callable[[jnp.ndarray], jnp.ndarray],
    x0: ArrayLike,
    label: ArrayLike,
    *,
    eps: float,
    step_size: float,
    steps: int = 10,
    norm: Norm = "linf",
    targeted: bool = False,
    key: jax.Array | None = None,
    bounds: tuple[float, float] | None = None,
) -> AttackResult:
    """Every iterate of projected gradient ascent (PGD, Madry et al. 2018) in the ``norm`` ball of radius ``eps``.

    For the whole path of each start point (to study where an attack goes); to measure
    robust accuracy, use :func:`flowclass.robustness.pgd_robust_accuracy`, which runs the
    same :func:`pgd_step` and keeps only each example's strongest point.

    Objective per trajectory, with ``p(k | x) = softmax(logits_fn(x))_k``:

    * untargeted (``label`` = true class ``y``): ascend ``J = −log p(y | x)``; success when
      ``argmax_k p(k | x) ≠ y``;
    * targeted (``label`` = target ``t``): ascend ``J = log p(t | x)``; success when
      ``argmax_k p(k | x) = t``.

    Each step is :func:`pgd_step` on the per-point gradient ``∇_x J``:

        linf:  x ← Π(x + α sign ∇J),          Π: clip x to [x_0 − ε, x_0 + ε] elementwise
        l2:    x ← Π(x + α ∇J / ‖∇J‖₂),       Π: x_0 + δ min(1, ε / ‖δ‖₂),  δ = x − x_0

    then clip to the box ``bounds = (lo, hi)`` if given (this never leaves the ball, as
    ``x_0`` lies in the box). With a ``key``, the attack starts at a uniform random point of
    the ball clipped to the box (:func:`pgd_random_start`) instead of ``x_0``. All
    ``steps`` steps run (no early stopping); the model is evaluated per point (``vmap``),
    the steps in one ``lax.scan``, the whole attack in one compiled call.

    Args:
      logits_fn: maps a batch ``(b, *event_shape)`` to logits ``(b, K)``.
      x0: start points, floating-point ``(n, *event_shape)``, finite, inside ``bounds``.
      label: the true class (untargeted) or the target (targeted): an integer for every
        point or an integer array ``(n,)`` in ``[0, K)``.
      eps: ball radius ``ε > 0``, in the units of ``x`` (e.g. pixel intensity in ``[0, 1]``).
      step_size: ``α > 0``, same units; ``α = 2.5 ε / steps`` is the usual choice.
      steps: number of steps ``T ≥ 1``.
      norm: ``"linf"`` or ``"l2"``.
      targeted: ascend towards ``label`` instead of away from it.
      key: a :func:`jax.random.key` for the random start; ``None`` starts at ``x_0``.
      bounds: the input box ``(lo, hi)``, or ``None`` for no box.

    Returns:
      :class:`AttackResult` with ``inputs`` ``(T + 1, n, *event_shape)`` (``inputs[0]`` is
      the start, ``x_0`` or the random point), ``probs`` ``(T + 1, n, K)``, ``objective``
      ``J`` ``(T + 1, n)``, ``target = label``, ``success_step`` and ``num_steps = T``
      ``(n,)``; float arrays in ``x0``'s dtype (``float32`` by default).

    Raises:
      ValueError: for a bad batch, label, ``eps``, ``step_size``, ``steps``, ``norm`` or
        ``bounds`` (the message names the argument), or ``x0`` outside ``bounds``.
      TypeError: ``logits_fn`` not callable, ``key`` not a JAX PRNG key.

    Example:
      >>> import functools, jax, jax.numpy as jnp, flowclass as fc
      >>> net = fc.FNN(2)
      >>> fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
      >>> paths = pgd_trajectories(fn, jnp.full((8, 2), 0.5), 0, eps=0.1, step_size=0.03, steps=10,
      ...                          key=jax.random.key(1), bounds=(0.0, 1.0))
      >>> paths.inputs.shape, paths.probs.shape
      ((11, 8, 2), (11, 8, 2))
      >>> bool(jnp.all(jnp.abs(paths.inputs - 0.5) <= 0.1 + 1e-6))
      True
    """
    x0, label, _ = check_classifier_inputs(logits_fn, x0, label, name="label")
    check_positive_int(steps, "steps")
    check_positive(eps, "eps")
    check_positive(step_size, "step_size")
    check_norm(norm)
    if key is not None:
        key = check_key(key, "key")
    steps = int(steps)
    return _pgd(
        traceable(logits_fn), x0, label, key, jnp.float32(eps), jnp.float32(step_size),
        check_bounds(bounds, x0, name="x0"), jnp.asarray(bool(targeted)), steps=steps, norm=norm,
    )


def fgsm_trajectories(
    logits_fn: Callable[[jnp.ndarray], jnp.ndarray],
    x0: ArrayLike,
    label: ArrayLike,
    *,
    eps: float,
    norm: Norm = "linf",
    targeted: bool = False,
    bounds: tuple[float, float] | None = None,
) -> AttackResult:
    """The two-point path ``x_0 → x_1`` of the fast gradient (sign) method (FGSM, Goodfellow et al. 2015).

    One :func:`pgd_step` of size ``α = ε`` from ``x_0`` (no random start):
    ``x_1 = clip(x_0 + ε sign ∇J(x_0))`` for ``linf`` (FGSM), ``x_0 + ε ∇J / ‖∇J‖₂`` for
    ``l2`` (the fast gradient method); ``J``, success and arguments as in
    :func:`pgd_trajectories`. The result has ``T = 1``: ``inputs`` is ``(2, n, *event_shape)``.
    For robust accuracy under FGSM, use :func:`flowclass.robustness.fgsm_robust_accuracy`.

    Raises:
      ValueError: as :func:`pgd_trajectories`.

    Example:
      >>> import functools, jax, jax.numpy as jnp, flowclass as fc
      >>> net = fc.FNN(2)
      >>> fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
      >>> path = fgsm_trajectories(fn, jnp.full((3, 2), 0.5), 0, eps=0.1)
      >>> path.inputs.shape  # x_0 and x_1
      (2, 3, 2)
      >>> bool(jnp.allclose(jnp.abs(path.final - 0.5), 0.1))
      True
    """
    return pgd_trajectories(logits_fn, x0, label, eps=eps, step_size=eps, steps=1, norm=norm, targeted=targeted,
                            bounds=bounds)


# ---------------------------------------------------------------------------------------
# The PGD/FGSM engine: one step and one random start, shared with flowclass.robustness.
# ---------------------------------------------------------------------------------------


def pgd_step(
    x: jax.Array,
    grad: jax.Array,
    origin: jax.Array,
    *,
    eps: float | jax.Array,
    step_size: float | jax.Array,
    norm: Norm = "linf",
    bounds: tuple[float, float] | jax.Array | None = None,
) -> jax.Array:
    """One projected gradient *ascent* step on a batch of inputs: the step of PGD (Madry et al. 2018) and FGSM.

    With ``g = grad`` the gradient of the objective to increase, per example ``i``:

        linf:  x'_i = clip(x_i + α sign(g_i),  x0_i − ε,  x0_i + ε)           (elementwise)
        l2:    u_i  = x_i + α g_i / max(‖g_i‖₂, 10⁻¹²)
               x'_i = x0_i + δ_i min(1, ε / max(‖δ_i‖₂, 10⁻¹²)),    δ_i = u_i − x0_i

    then ``x' = clip(x', lo, hi)`` for ``bounds = (lo, hi)``. The box clip never leaves the
    ball when ``x0`` lies in the box. FGSM (Goodfellow et al. 2015) is one step from
    ``x = x0`` with ``α = ε``. Pure, elementwise apart from the per-example ``l2`` norms:
    jit, ``vmap`` and ``lax.scan`` it freely; :func:`pgd_trajectories` and
    :func:`flowclass.robustness.pgd_robust_accuracy` both step with it.

    Args:
      x: the current iterates, shape ``(n, *event_shape)`` (a leading batch axis; for
        ``linf`` any shape), floating point.
      grad: ``∇_x J`` at ``x``, the shape of ``x``. Per-example gradients: for a batch-summed
        objective, ``jax.grad`` of the sum gives them when examples do not interact.
      origin: the ball centres ``x0``, the shape of ``x``.
      eps: the radius ``ε > 0`` (a scalar; units of ``x``).
      step_size: ``α > 0`` (a scalar; units of ``x``).
      norm: ``"linf"`` or ``"l2"`` (static).
      bounds: ``None``, or ``(lo, hi)`` (a pair or a ``(2,)`` array) to clip to.

    Returns:
      The next iterates, shape and dtype of ``x``.

    Raises:
      ValueError: for an unknown ``norm``; ``grad`` or ``origin`` not of ``x``'s shape; arrays
        that are not floating point; ``eps`` or ``step_size`` given as a Python or NumPy number
        that is not finite and ``> 0``. Array values (and traced ``eps``/``step_size``) are not
        checked here: this runs inside jitted loops; the public attacks check them.

    Example:
      >>> import jax.numpy as jnp
      >>> x0 = jnp.array([[0.5, 0.5], [0.0, 0.9]])
      >>> pgd_step(x0, jnp.array([[2.0, -0.1], [1.0, 1.0]]), x0, eps=0.2, step_size=0.2, bounds=(0.0, 1.0))
      Array([[0.7, 0.3],
             [0.2, 1. ]], dtype=float32)
      >>> step = pgd_step(x0, jnp.array([[3.0, 4.0], [0.0, 0.0]]), x0, eps=1.0, step_size=0.5, norm="l2")
      >>> bool(jnp.allclose(step - x0, jnp.array([[0.3, 0.4], [0.0, 0.0]])))  # α g / ‖g‖₂; g = 0 stays put
      True
    """
    check_norm(norm)
    x, grad, origin = (as_array(a, n) for a, n in ((x, "x"), (grad, "grad"), (origin, "origin")))
    for a, n in ((x, "x"), (grad, "grad"), (origin, "origin")):
        if np.shape(a) != np.shape(x):
            raise ValueError(f"{n} must have the shape of x, {x.shape}; got {a.shape}.")
        if not is_floating(a.dtype):
            raise ValueError(f"{n} must be a floating-point array; got dtype {a.dtype}.")
    x, grad, origin = jnp.asarray(x), jnp.asarray(grad), jnp.asarray(origin)
    _check_scalar(eps, "eps")
    _check_scalar(step_size, "step_size")
    if norm == "linf":
        new = jnp.clip(x + step_size * jnp.sign(grad), origin - eps, origin + eps)
    else:
        new = x + step_size * grad / jnp.maximum(_l2_norms(grad), 1e-12)
        delta = new - origin
        new = origin + delta * jnp.minimum(1.0, eps / jnp.maximum(_l2_norms(delta), 1e-12))
    if bounds is not None:
        new = jnp.clip(new, bounds[0], bounds[1])
    return new.astype(jnp.result_type(x))


def pgd_random_start(
    key: jax.Array,
    x0: jax.Array,
    *,
    eps: float | jax.Array,
    norm: Norm = "linf",
    bounds: tuple[float, float] | jax.Array | None = None,
) -> jax.Array:
    """A uniform random point of each example's ``norm`` ball of radius ``eps``, clipped to ``bounds``.

    The random start of PGD (Madry et al. 2018): ``x = clip(x0 + δ, lo, hi)`` with ``δ``
    uniform in ``[−ε, ε]^d`` for ``linf``, or uniform in the ``l2`` ball (a uniform direction
    times ``ε U^{1/d}``, ``U ~ U(0, 1)``, ``d`` the number of features) for ``l2``; one
    independent draw per example.

    Args:
      key: a :func:`jax.random.key`.
      x0: the ball centres, shape ``(n, *event_shape)``, floating point.
      eps: the radius ``ε`` (a scalar, units of ``x0``).
      norm: ``"linf"`` or ``"l2"`` (static).
      bounds: ``None``, or ``(lo, hi)`` to clip to.

    Returns:
      An array of the shape of ``x0`` (``float32`` unless ``jax_enable_x64``).

    Raises:
      TypeError: ``key`` is not a JAX PRNG key; ``x0`` is not an array.
      ValueError: for an unknown ``norm``, an ``x0`` that is not a floating-point batch, or an
        ``eps`` given as a number that is not finite and ``> 0`` (values of ``x0`` are not checked).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> start = pgd_random_start(jax.random.key(0), jnp.full((1000, 3), 0.5), eps=0.1, norm="l2")
      >>> bool(jnp.all(jnp.linalg.norm(start - 0.5, axis=-1) <= 0.1 + 1e-6))
      True
    """
    check_norm(norm)
    key = check_key(key, "key")
    x0 = as_array(x0, "x0")
    if x0.ndim < 2 or not is_floating(x0.dtype):
        raise ValueError(f"x0 must be a floating-point batch (n, *event_shape); got shape {x0.shape}, "
                         f"dtype {x0.dtype}.")
    _check_scalar(eps, "eps")
    x0 = jnp.asarray(x0)
    shape = x0.shape
    if norm == "linf":
        noise = jax.random.uniform(key, shape, minval=-eps, maxval=eps)
    else:
        direction_key, radius_key = jax.random.split(key)
        dim = math.prod(shape[1:])
        direction = jax.random.normal(direction_key, (shape[0], dim))
        direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
        radius = eps * jax.random.uniform(radius_key, (shape[0], 1)) ** (1.0 / dim)
        noise = (radius * direction).reshape(shape)
    start = x0 + noise
    return start if bounds is None else jnp.clip(start, bounds[0], bounds[1])


def _check_scalar(value, name: str) -> None:
    """``value > 0`` and finite, unless it is an array (possibly traced: values unknown)."""
    if not isinstance(value, (jax.Array, jax.core.Tracer)):
        check_positive(value, name)


def _l2_norms(a):
    """``‖a_i‖₂`` per example (over every axis but the first), shape ``(n, 1, ..., 1)``."""
    return jnp.sqrt(jnp.sum(a**2, axis=tuple(range(1, a.ndim)), keepdims=True))


# ---------------------------------------------------------------------------------------
# Jitted implementations.
# ---------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("optimizer", "max_steps"))
def _confidence(logits_fn, x0, target, threshold, bounds, *, optimizer, max_steps):
    def objective(x, t):
        log_probs = jax.nn.log_softmax(logits_fn(x[None])[0])
        return log_probs[t], (x, jnp.exp(log_probs))

    return _ascend(
        objective, x0, target, *_optax_update(optimizer, _box(bounds)), steps=max_steps,
        succeeded=_above(threshold), early_stop=True,
    )


@functools.partial(jax.jit, static_argnames=("optimizer", "steps"))
def _likelihood(log_likelihoods_fn, x0, target, log_prior, threshold, bounds, *, optimizer, steps):
    def objective(x, t):
        log_likelihoods = log_likelihoods_fn(x[None])[0]
        return log_likelihoods[t], (x, jax.nn.softmax(log_likelihoods + log_prior))

    return _ascend(
        objective, x0, target, *_optax_update(optimizer, _box(bounds)), steps=steps,
        succeeded=_above(threshold), early_stop=False,
    )


@functools.partial(jax.jit, static_argnames=("optimizer", "max_steps"))
def _latent(logits_fn, encode_fn, decode_fn, x0, target, threshold, *, optimizer, max_steps):
    def objective(z, t):
        x = decode_fn(z[None])[0][0]
        log_probs = jax.nn.log_softmax(logits_fn(x[None])[0])
        return log_probs[t], (x, jnp.exp(log_probs))

    z0 = encode_fn(x0)[0]
    return _ascend(
        objective, z0, target, *_optax_update(optimizer, lambda z, _: z), steps=max_steps,
        succeeded=_above(threshold), early_stop=True, record_latents=True,
    )


@functools.partial(jax.jit, static_argnames=("steps", "norm"))
def _pgd(logits_fn, x0, label, key, eps, step_size, bounds, targeted, *, steps, norm):
    sign = jnp.where(targeted, 1.0, -1.0)

    def objective(x, y):
        log_probs = jax.nn.log_softmax(logits_fn(x[None])[0])
        return sign * log_probs[y], (x, jnp.exp(log_probs))

    def succeeded(probs, y):
        return (jnp.argmax(probs) == y) == targeted

    def init(v):
        return ()

    def update(v, grad, state, origin):
        return pgd_step(v, grad, origin, eps=eps, step_size=step_size, norm=norm, bounds=bounds), state

    start = x0 if key is None else pgd_random_start(key, x0, eps=eps, norm=norm, bounds=bounds)
    return _ascend(
        objective, start, label, init, update, steps=steps,
        succeeded=succeeded, early_stop=False, origin=x0,
    )


# ---------------------------------------------------------------------------------------
# The shared loop.
# ---------------------------------------------------------------------------------------


def _optax_update(optimizer, project):
    """``(init, update)`` for :func:`_ascend` from an optax optimiser (one state per point) and a projection."""

    def init(v):
        return jax.vmap(optimizer.init)(v)

    def update(v, grad, state, origin):
        updates, state = jax.vmap(optimizer.update)(jax.tree.map(jnp.negative, grad), state, v)
        return jax.vmap(project)(optax.apply_updates(v, updates), origin), state

    return init, update


def _ascend(objective, v0, target, init, update, *, steps, succeeded, early_stop, origin=None,
            record_latents=False) -> AttackResult:
    """Runs ``steps`` ascent steps on every start point; traced inside the jitted attacks.

    ``objective(v, t) -> (J, (x, probs))`` and ``succeeded(probs, t) -> bool`` act on one
    point (vmapped here). ``init(v0) -> state`` and ``update(v, grad, state, origin) ->
    (v, state)`` act on the whole batch, ``grad`` being the per-point ``∇_v J``: an optax
    optimiser plus a projection (:func:`_optax_update`) or :func:`pgd_step`. ``origin``
    (the ball centres) defaults to ``v0``.
    """
    origin = v0 if origin is None else origin
    n = v0.shape[0]
    evaluate = jax.vmap(jax.value_and_grad(objective, has_aux=True))
    is_success = jax.vmap(succeeded)

    def keep_where(done, new, old):  # per trajectory: old where done, else new
        return jax.tree.map(lambda a, b: jnp.where(done.reshape((n,) + (1,) * (a.ndim - 1)), b, a), new, old)

    def advance(carry):
        v, state, done, point = carry
        (_, _), grad = point
        new_v, new_state = update(v, grad, state, origin)
        new_v, new_state = keep_where(done, (new_v, new_state), (v, state))
        return new_v, new_state, done, keep_where(done, evaluate(new_v, target), point)

    def step(carry, _):
        v, state, done, point = carry
        (value, (x, probs)), _ = point
        record = (v if record_latents else None, x, value, probs)
        if early_stop:
            done = done | is_success(probs, target)
            carry = jax.lax.cond(jnp.all(done), lambda c: c, advance, (v, state, done, point))
        else:
            carry = advance((v, state, done, point))
        return carry, record

    carry = (v0, init(v0), jnp.zeros((n,), bool), evaluate(v0, target))
    (v, _, _, ((value, (x, probs)), _)), records = jax.lax.scan(step, carry, length=steps)
    last = (v if record_latents else None, x, value, probs)
    latents, inputs, objective_path, probs_path = jax.tree.map(
        lambda path, end: jnp.concatenate([path, end[None]]), records, last
    )
    hits = jax.vmap(is_success)(probs_path, jnp.broadcast_to(target, probs_path.shape[:2]))
    success_step = jnp.where(hits.any(0), jnp.argmax(hits, axis=0), -1).astype(jnp.int32)
    num_steps = jnp.full((n,), steps, jnp.int32)
    if early_stop:
        num_steps = jnp.where(success_step >= 0, success_step, num_steps)
    return AttackResult(
        inputs=inputs, probs=probs_path, objective=objective_path, target=target,
        success_step=success_step, num_steps=num_steps, latents=latents,
    )


def _above(threshold):
    return lambda probs, t: probs[t] > threshold


def _box(bounds):
    if bounds is None:
        return lambda x, _: x
    return lambda x, _: jnp.clip(x, bounds[0], bounds[1])


# ---------------------------------------------------------------------------------------
# Callables as pytrees.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _WithKeywords:
    """``func(*args, **keywords)`` that compares by value, so a re-created partial hits the jit cache."""

    func: Callable
    keywords: tuple

    def __call__(self, *args):
        return self.func(*args, **dict(self.keywords))


def traceable(fn: Callable) -> Partial:
    """``fn`` as a :class:`jax.tree_util.Partial` whose array arguments are jit *inputs*, not constants.

    Pass a model function through this before handing it to a jitted function as an
    argument: ``functools.partial(model.apply, variables, method=...)`` becomes a pytree
    with the variables as leaves (traced) and the function and (hashable) keywords as
    static structure, so new weights of the same shapes reuse the compilation and the
    weights are not embedded in the compiled program. A :class:`~jax.tree_util.Partial` is
    returned as it is; any other callable (a plain function, a partial with non-array
    arguments or unhashable keywords) becomes a ``Partial`` without leaves, static as it is.
    All attacks of this module and of :mod:`flowclass.robustness` call it on their model
    functions.

    Example:
      >>> import functools, jax, jax.numpy as jnp
      >>> def affine(w, x, *, shift):
      ...     return x @ w + shift
      >>> fn = traceable(functools.partial(affine, jnp.eye(2), shift=1.0))
      >>> jax.tree.leaves(fn)  # the weights are a leaf: a jit input
      [Array([[1., 0.],
             [0., 1.]], dtype=float32)]
      >>> jax.jit(lambda f, x: f(x))(fn, jnp.ones((1, 2)))
      Array([[2., 2.]], dtype=float32)
    """
    if isinstance(fn, Partial):
        return fn
    if isinstance(fn, functools.partial) and all(
        isinstance(leaf, (jax.Array, np.ndarray)) for leaf in jax.tree.leaves(fn.args)
    ):
        keywords = tuple(sorted(fn.keywords.items()))
        try:
            hash(keywords)
        except TypeError:
            return Partial(fn)
        return Partial(_WithKeywords(fn.func, keywords), *fn.args)
    return Partial(fn)
