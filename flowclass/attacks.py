"""Attacks as gradient ascent over *inputs*: many trajectories at once, jitted.

Every attack keeps a model fixed and moves a variable ``v`` (the input ``x``, or a latent
code ``z``) to increase an objective ``J(v; t)`` for a class ``t``, with an optax optimiser
fed ``−∇_v J`` (optax minimises) and an optional projection ``Π``:

    (u_s, state_{s+1}) = opt.update(−∇_v J(v_s; t), state_s)
    v_{s+1}            = Π(v_s + u_s)

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

Models enter as plain callables on batches, e.g. ``functools.partial(model.apply,
variables)`` for logits. Array arguments of a ``functools.partial`` (or a
``jax.tree_util.Partial``) are passed to the compiled graph as inputs, not baked in as
constants, so calling an attack again with new weights or new start points of the same
shapes reuses the compilation. Pass the same ``optimizer`` object to reuse it too.

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
from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.tree_util import Partial
from jax.typing import ArrayLike

from flowclass._validation import check_inputs, check_labels

Norm = Literal["linf", "l2"]

SEED_OPTIMIZER = optax.adam(0.1)
"""The seed's optimiser for input-space attacks: Adam with learning rate 0.1 (the default here)."""


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
    optimizer: optax.GradientTransformation = SEED_OPTIMIZER,
    max_steps: int = 500,
    threshold: float = 0.99,
    bounds: tuple[float, float] | None = None,
) -> AttackResult:
    """Ascends ``log p(target | x)`` until ``p(target | x) > threshold`` or ``max_steps``.

    ``logits_fn`` maps a batch ``(b, *event_shape)`` to logits ``(b, K)``: a discriminative
    net or a :class:`~flowclass.FlowClassifier` alike. Each trajectory stops at its own
    success step (``success_step == num_steps``) and stays there. ``bounds = (lo, hi)``
    clips every step to the box ``[lo, hi]``. ``optimizer`` is any optax transformation,
    e.g. the default Adam(0.1) or signed steps ``optax.sign_sgd(0.01)``.

    Example:
      >>> import functools, jax, jax.numpy as jnp, flowclass as fc
      >>> net = fc.FNN(2)
      >>> logits_fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
      >>> result = confidence_attack(logits_fn, jnp.zeros((3, 2)), jnp.array([0, 1, 1]), max_steps=20)
      >>> result.inputs.shape
      (21, 3, 2)
    """
    x0, target, num_classes = _check_classifier_attack(logits_fn, x0, target)
    _check_steps(max_steps, "max_steps")
    _check_threshold(threshold)
    return _confidence(
        _traceable(logits_fn), x0, target, jnp.float32(threshold), _check_bounds(bounds, x0),
        optimizer=optimizer, max_steps=max_steps,
    )


def likelihood_attack(
    class_log_likelihoods_fn: Callable[[jnp.ndarray], jnp.ndarray],
    x0: ArrayLike,
    target: ArrayLike,
    *,
    log_prior: ArrayLike | None = None,
    optimizer: optax.GradientTransformation = SEED_OPTIMIZER,
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
    seed's attack, 20 steps).

    Example:
      >>> import functools, jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> fn = functools.partial(model.apply, variables, method="class_log_likelihoods")
      >>> result = likelihood_attack(fn, jnp.zeros((4, 2)), 1)
      >>> bool(jnp.all(result.objective[-1] > result.objective[0]))
      True
    """
    x0, target, num_classes = _check_classifier_attack(class_log_likelihoods_fn, x0, target)
    _check_steps(steps, "steps")
    _check_threshold(threshold)
    if log_prior is None:
        log_prior = jnp.full((num_classes,), -math.log(num_classes), jnp.float32)
    log_prior = jnp.asarray(log_prior, jnp.float32)
    if log_prior.shape != (num_classes,):
        raise ValueError(f"log_prior must have shape ({num_classes},) (one per class); got {log_prior.shape}.")
    return _likelihood(
        _traceable(class_log_likelihoods_fn), x0, target, log_prior, jnp.float32(threshold),
        _check_bounds(bounds, x0), optimizer=optimizer, steps=steps,
    )


def latent_attack(
    logits_fn: Callable[[jnp.ndarray], jnp.ndarray],
    encode_fn: Callable,
    decode_fn: Callable,
    x0: ArrayLike,
    target: ArrayLike,
    *,
    optimizer: optax.GradientTransformation = SEED_OPTIMIZER,
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
    the path in ``z``, ``inputs`` the decoded path in ``x``.

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
    x0, target, _ = _check_classifier_attack(logits_fn, x0, target)
    _check_steps(max_steps, "max_steps")
    _check_threshold(threshold)
    z_shape = jax.eval_shape(lambda x: encode_fn(x)[0], x0)
    x_shape = jax.eval_shape(lambda z: decode_fn(z)[0], z_shape)
    if x_shape.shape != x0.shape:
        raise ValueError(
            f"decode_fn(encode_fn(x0)) must have the shape of x0, {x0.shape}; got {x_shape.shape}."
        )
    return _latent(
        _traceable(logits_fn), _traceable(encode_fn), _traceable(decode_fn), x0, target,
        jnp.float32(threshold), optimizer=optimizer, max_steps=max_steps,
    )


def pgd(
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
    """Projected gradient ascent (Madry et al. 2018) in the ``norm`` ball of radius ``eps``.

    Untargeted (``label`` = true class ``y``): ascend ``−log p(y | x)``; success when
    ``argmax_k p(k | x) ≠ y``. Targeted (``label`` = target ``t``): ascend ``log p(t | x)``;
    success when ``argmax_k p(k | x) = t``. Steps and projection, per trajectory:

        linf:  x ← Π(x + α sign ∇J),          Π: clip x − x_0 to [−ε, ε] elementwise
        l2:    x ← Π(x + α ∇J / ‖∇J‖₂),       Π: x_0 + δ min(1, ε / ‖δ‖₂),  δ = x − x_0

    then clip to the box ``bounds = (lo, hi)`` if given (this never leaves the ball, as
    ``x_0`` lies in the box). With a ``key``, the attack starts at a uniform random point of
    the ball (clipped to the box) instead of ``x_0``. All ``steps`` steps run.

    Example:
      >>> import functools, jax, jax.numpy as jnp, flowclass as fc
      >>> net = fc.FNN(2)
      >>> fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
      >>> result = pgd(fn, jnp.full((8, 2), 0.5), 0, eps=0.1, step_size=0.03, key=jax.random.key(1), bounds=(0.0, 1.0))
      >>> bool(jnp.all(jnp.abs(result.inputs - 0.5) <= 0.1 + 1e-6))
      True
    """
    x0, label, _ = _check_classifier_attack(logits_fn, x0, label, name="label")
    _check_steps(steps, "steps")
    _check_positive(eps, "eps")
    _check_positive(step_size, "step_size")
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2'; got {norm!r}.")
    return _pgd(
        _traceable(logits_fn), x0, label, key, jnp.float32(eps), jnp.float32(step_size),
        _check_bounds(bounds, x0), jnp.asarray(bool(targeted)), steps=steps, norm=norm,
    )


def fgsm(
    logits_fn: Callable[[jnp.ndarray], jnp.ndarray],
    x0: ArrayLike,
    label: ArrayLike,
    *,
    eps: float,
    norm: Norm = "linf",
    targeted: bool = False,
    bounds: tuple[float, float] | None = None,
) -> AttackResult:
    """Fast gradient (sign) method (Goodfellow et al. 2015): one PGD step of size ``eps`` from ``x_0``.

    ``x_1 = clip(x_0 + ε sign ∇J(x_0))`` for ``linf`` (FGSM), ``x_0 + ε ∇J / ‖∇J‖₂`` for ``l2``;
    ``J`` and success as in :func:`pgd`. The result has ``T = 1``.

    Example:
      >>> import functools, jax, jax.numpy as jnp, flowclass as fc
      >>> net = fc.FNN(2)
      >>> fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
      >>> result = fgsm(fn, jnp.full((3, 2), 0.5), 0, eps=0.1)
      >>> result.inputs.shape  # x_0 and x_1
      (2, 3, 2)
      >>> bool(jnp.allclose(jnp.abs(result.final - 0.5), 0.1))
      True
    """
    return pgd(logits_fn, x0, label, eps=eps, step_size=eps, steps=1, norm=norm, targeted=targeted,
               bounds=bounds)


# ---------------------------------------------------------------------------------------
# Jitted implementations.
# ---------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("optimizer", "max_steps"))
def _confidence(logits_fn, x0, target, threshold, bounds, *, optimizer, max_steps):
    def objective(x, t):
        log_probs = jax.nn.log_softmax(logits_fn(x[None])[0])
        return log_probs[t], (x, jnp.exp(log_probs))

    return _ascend(
        objective, x0, target, optimizer=optimizer, steps=max_steps,
        succeeded=_above(threshold), early_stop=True, project=_box(bounds),
    )


@functools.partial(jax.jit, static_argnames=("optimizer", "steps"))
def _likelihood(log_likelihoods_fn, x0, target, log_prior, threshold, bounds, *, optimizer, steps):
    def objective(x, t):
        log_likelihoods = log_likelihoods_fn(x[None])[0]
        return log_likelihoods[t], (x, jax.nn.softmax(log_likelihoods + log_prior))

    return _ascend(
        objective, x0, target, optimizer=optimizer, steps=steps,
        succeeded=_above(threshold), early_stop=False, project=_box(bounds),
    )


@functools.partial(jax.jit, static_argnames=("optimizer", "max_steps"))
def _latent(logits_fn, encode_fn, decode_fn, x0, target, threshold, *, optimizer, max_steps):
    def objective(z, t):
        x = decode_fn(z[None])[0][0]
        log_probs = jax.nn.log_softmax(logits_fn(x[None])[0])
        return log_probs[t], (x, jnp.exp(log_probs))

    z0 = encode_fn(x0)[0]
    return _ascend(
        objective, z0, target, optimizer=optimizer, steps=max_steps,
        succeeded=_above(threshold), early_stop=True, project=lambda z, _: z, record_latents=True,
    )


@functools.partial(jax.jit, static_argnames=("steps", "norm"))
def _pgd(logits_fn, x0, label, key, eps, step_size, bounds, targeted, *, steps, norm):
    sign = jnp.where(targeted, 1.0, -1.0)

    def objective(x, y):
        log_probs = jax.nn.log_softmax(logits_fn(x[None])[0])
        return sign * log_probs[y], (x, jnp.exp(log_probs))

    def succeeded(probs, y):
        return (jnp.argmax(probs) == y) == targeted

    clip_to_box = _box(bounds)

    def project(x, origin):
        delta = x - origin
        if norm == "linf":
            delta = jnp.clip(delta, -eps, eps)
        else:
            delta = delta * jnp.minimum(1.0, eps / jnp.maximum(jnp.sqrt(jnp.sum(delta**2)), 1e-12))
        return clip_to_box(origin + delta, origin)

    start = x0 if key is None else jax.vmap(clip_to_box)(x0 + _uniform_ball(key, x0.shape, eps, norm), x0)
    step = optax.sign_sgd(step_size) if norm == "linf" else _normalized_sgd(step_size)
    return _ascend(
        objective, start, label, optimizer=step, steps=steps,
        succeeded=succeeded, early_stop=False, project=project, origin=x0,
    )


# ---------------------------------------------------------------------------------------
# The shared loop.
# ---------------------------------------------------------------------------------------


def _ascend(objective, v0, target, *, optimizer, steps, succeeded, early_stop, project,
            origin=None, record_latents=False) -> AttackResult:
    """Runs ``steps`` ascent steps on every start point; traced inside the jitted attacks.

    ``objective(v, t) -> (J, (x, probs))`` and ``succeeded(probs, t) -> bool`` act on one
    point; ``project(v, origin) -> v`` maps an updated point back to the feasible set
    (``origin`` defaults to ``v0``).
    """
    origin = v0 if origin is None else origin
    n = v0.shape[0]
    evaluate = jax.vmap(jax.value_and_grad(objective, has_aux=True))
    update = jax.vmap(optimizer.update)
    is_success = jax.vmap(succeeded)

    def keep_where(done, new, old):  # per trajectory: old where done, else new
        return jax.tree.map(lambda a, b: jnp.where(done.reshape((n,) + (1,) * (a.ndim - 1)), b, a), new, old)

    def advance(carry):
        v, state, done, point = carry
        (_, _), grad = point
        updates, new_state = update(jax.tree.map(jnp.negative, grad), state, v)
        new_v = jax.vmap(project)(optax.apply_updates(v, updates), origin)
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

    init = (v0, jax.vmap(optimizer.init)(v0), jnp.zeros((n,), bool), evaluate(v0, target))
    (v, _, _, ((value, (x, probs)), _)), records = jax.lax.scan(step, init, length=steps)
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


def _normalized_sgd(step_size) -> optax.GradientTransformation:
    """``u = −α g / ‖g‖₂`` for one point's gradient ``g`` (vmapped: one norm per trajectory)."""

    def direction(grads, _):
        norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
        return jax.tree.map(lambda g: -step_size * g / jnp.maximum(norm, 1e-12), grads)

    return optax.stateless(direction)


def _uniform_ball(key, shape, eps, norm):
    """Uniform draws from the ``norm`` ball of radius ``eps``, one per row of ``shape``."""
    if norm == "linf":
        return jax.random.uniform(key, shape, minval=-eps, maxval=eps)
    direction_key, radius_key = jax.random.split(key)
    dim = math.prod(shape[1:])
    direction = jax.random.normal(direction_key, (shape[0], dim))
    direction = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
    radius = eps * jax.random.uniform(radius_key, (shape[0], 1)) ** (1.0 / dim)
    return (radius * direction).reshape(shape)


# ---------------------------------------------------------------------------------------
# Callables as pytrees, and input checks.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _WithKeywords:
    """``func(*args, **keywords)`` that compares by value, so a re-created partial hits the jit cache."""

    func: Callable
    keywords: tuple

    def __call__(self, *args):
        return self.func(*args, **dict(self.keywords))


def _traceable(fn: Callable) -> Partial:
    """``fn`` as a :class:`jax.tree_util.Partial` whose array arguments are jit *inputs*.

    ``functools.partial(model.apply, variables, method=...)`` becomes a pytree with the
    variables as leaves (traced, not constants) and the function and keywords as static
    structure; any other callable is static as it is.
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


def _check_classifier_attack(fn, x0, target, *, name="target") -> tuple[jax.Array, jax.Array, int]:
    """Validates ``x0`` (a batch) and ``target`` (an int or one label per point) against ``fn``'s classes."""
    if np.ndim(x0) < 2:
        raise ValueError(f"x0 must be a batch of start points, shape (n, *event_shape); got shape {np.shape(x0)}.")
    check_inputs(x0, np.shape(x0)[1:], name="x0")
    x0 = jnp.asarray(x0)
    out = jax.eval_shape(fn, x0[:1])
    if not (hasattr(out, "shape") and len(out.shape) == 2 and out.shape[0] == 1):
        raise ValueError(f"the model function must map a batch (b, ...) to (b, K) scores; got {out} for b = 1.")
    num_classes = out.shape[1]
    if np.ndim(target) == 0:
        if not isinstance(target, (int, np.integer)) and not np.issubdtype(np.asarray(target).dtype, np.integer):
            raise ValueError(f"{name} must be an integer class or one per start point; got {target!r}.")
        target = np.full((x0.shape[0],), int(target), np.int32)
    check_labels(target, num_classes, batch=x0.shape[0], name=name)
    return x0, jnp.asarray(target, jnp.int32), num_classes


def _check_steps(steps, name):
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"{name} must be a positive integer; got {steps!r}.")


def _check_threshold(threshold):
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be a probability in (0, 1); got {threshold}.")


def _check_positive(value, name):
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {value}.")


def _check_bounds(bounds, x0):
    if bounds is None:
        return None
    if len(bounds) != 2:
        raise ValueError(f"bounds must be a pair (lo, hi); got {bounds!r}.")
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds must satisfy lo < hi; got ({lo}, {hi}).")
    if not isinstance(x0, jax.core.Tracer):
        low, high = float(jnp.min(x0)), float(jnp.max(x0))
        if low < lo or high > hi:
            raise ValueError(f"x0 must lie inside bounds [{lo}, {hi}]; its values span [{low}, {high}].")
    return jnp.asarray([lo, hi], jnp.float32)
