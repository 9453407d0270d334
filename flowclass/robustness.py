"""Robust accuracy under ``L∞`` (and ``L2``) attacks, with checks that the attacks are not fooled by gradient masking.

For a classifier with logits ``l(x)`` and an example ``(x_0, y)``, an attack searches the
box-clipped ball ``B = {x : ‖x − x_0‖ ≤ ε, lo ≤ x ≤ hi}`` (``‖·‖_∞`` unless stated) for a point with positive margin

    m(x) = max_{k ≠ y} l_k(x) − l_y(x)                    (m > 0: misclassified)

and the *robust accuracy* is the share of examples where the strongest point found still
has ``m < 0``. Three attacks, all evaluating the whole batch per jitted call (per-example
gradients of a batch-summed loss; one host loop over steps, since XLA's CPU backend runs
convolutions much slower inside ``lax`` loops):

* :func:`pgd_robust_accuracy` — ``x ← Π_B(x + α sign ∇_x L(x))`` (``L∞``; ``L2``: the
  normalised gradient) from a uniform random start in ``B``, ``restarts`` times; ``L`` is
  the margin (default; it does not saturate like the cross-entropy of a flow's very
  confident Gaussian posteriors) or the cross-entropy. Default ``α = 2.5 ε / steps``
  (Madry et al. 2018). :func:`fgsm_robust_accuracy` is one step of ``α = ε`` from ``x_0``
  (Goodfellow et al. 2015). The step and the random start are
  :func:`flowclass.attacks.pgd_step` and :func:`flowclass.attacks.pgd_random_start`, the
  same engine that records whole paths in :func:`flowclass.attacks.pgd_trajectories`.
* :func:`random_search_robust_accuracy` — gradient-free (the ``L∞`` Square Attack of Andriushchenko
  et al. 2020): start at vertical stripes ``x_0 ± ε``, then repeatedly set a random square
  of the image to ``x_0 ± ε`` (random sign per channel) and keep it if the margin grows.
* :func:`sanity_checks` — a gradient attack that is working must get stronger, never
  weaker, with more steps and restarts; must drive accuracy to ~0 at ``ε = 1`` (the box is
  reachable); and must not be beaten by the gradient-free search (Athalye et al. 2018;
  Carlini et al. 2019, "On evaluating adversarial robustness").

``logits_fn`` is any batch → ``(batch, K)`` callable, e.g. ``functools.partial(model.apply,
variables)``; its arrays are jit inputs, so new weights do not recompile.

Every public function checks its arguments eagerly, on the whole array, before the jitted steps
(which check nothing): ``ValueError`` naming the argument for a bad batch (lists accepted; finite,
floating point, inside ``bounds``), labels (integers in ``[0, K)``, ``K`` from the model), counts,
radii and options; ``TypeError`` for a key that is not a JAX PRNG key or a ``logits_fn`` that is
not callable.

Example:
  >>> import functools, jax, jax.numpy as jnp, numpy as np, flowclass as fc
  >>> net = fc.FNN(2)
  >>> fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
  >>> x, y = np.full((6, 2), 0.5, np.float32), np.zeros(6, np.int32)
  >>> result = pgd_robust_accuracy(fn, x, y, eps=0.1, steps=5, key=jax.random.key(1))
  >>> result.adversarial.shape, bool(np.all(np.abs(result.adversarial - x) <= 0.1 + 1e-6))
  ((6, 2), True)
  >>> 0.0 <= result.robust_accuracy <= 1.0
  True
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from tqdm.auto import tqdm

from flowclass import sharding
from flowclass._validation import (
    check_bounds,
    check_classifier_inputs,
    check_key,
    check_norm,
    check_positive,
    check_positive_int,
    check_real,
)
from flowclass.attacks import Norm, pgd_random_start, pgd_step, traceable

AttackLoss = Literal["margin", "cross_entropy"]
LogitsFn = Callable[[jnp.ndarray], jnp.ndarray]


class RobustAccuracyResult(NamedTuple):
    """What an attack that measures robust accuracy found: the strongest point for each of ``n`` examples.

    Attributes:
      adversarial: per example, the point of the ball with the largest margin found, shape
        ``(n, *event_shape)``, the dtype of the inputs (NumPy, on the host).
      margin: ``max_{k≠y} l_k − l_y`` there (minus the ``penalty``, if any), in logit units,
        ``float32``, shape ``(n,)``; positive means misclassified.
      correct: whether the model's ``argmax`` is still the label there, ``bool``, shape ``(n,)``.

    Example:
      >>> r = RobustAccuracyResult(np.zeros((2, 1)), np.array([-1.0, 2.0]), np.array([True, False]))
      >>> r.robust_accuracy
      0.5
    """

    adversarial: np.ndarray
    margin: np.ndarray
    correct: np.ndarray

    @property
    def robust_accuracy(self) -> float:
        """Share of examples the attack did not turn, ``mean(correct)`` in ``[0, 1]``."""
        return float(np.mean(self.correct))


def pgd_robust_accuracy(
    logits_fn: LogitsFn,
    x: ArrayLike,
    labels: ArrayLike,
    *,
    eps: float,
    steps: int = 40,
    step_size: float | None = None,
    restarts: int = 1,
    loss: AttackLoss = "margin",
    norm: Norm = "linf",
    random_start: bool = True,
    key: jax.Array | None = None,
    penalty: Callable[[jnp.ndarray], jnp.ndarray] | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 250,
    progress: bool = False,
) -> RobustAccuracyResult:
    """Robust accuracy under untargeted PGD (Madry et al. 2018) with restarts; keeps each example's strongest point.

    Every restart runs ``steps`` steps of :func:`flowclass.attacks.pgd_step`,

        linf:  x ← clip(clip(x + α sign ∇L(x), x_0 − ε, x_0 + ε), lo, hi)
        l2:    x ← clip(Π_ε(x + α ∇L / ‖∇L‖₂), lo, hi)

    from its own uniform start in the ball (:func:`flowclass.attacks.pgd_random_start`), or
    from ``x_0`` if ``random_start=False``. The loss ``L`` is the batch sum of the margins
    ``m = max_{k≠y} l_k − l_y`` (``loss="margin"``) or of the cross-entropies ``−log p(y | x)``;
    per-example gradients of the sum are the examples' own when the model treats examples
    independently (no batch statistics). The result holds, per example, the iterate of
    largest margin over all steps and restarts. A batch whose examples are all turned skips
    its remaining restarts (robust accuracy is unaffected). For the whole path of every
    iterate instead, use :func:`flowclass.attacks.pgd_trajectories`.

    ``penalty`` makes the attack adaptive to a detector that reads the model's outputs:
    ``penalty(logits) -> (batch,)`` is subtracted from both the loss and the margin that
    ranks iterates, e.g. ``λ · max(0, −log p(x) − τ)`` from a flow's joint log-likelihoods
    to stay below a likelihood detector's threshold ``τ``. Pass the same function object
    on every call to reuse the compilation.

    Each step is one jitted call on a whole batch of ``batch_size`` examples (the last
    batch padded by wrapping around); the loop over steps runs on the host, as XLA's CPU
    backend runs convolutions much slower inside ``lax`` loops. With several devices each
    batch is split over them.

    Args:
      logits_fn: maps a batch ``(b, *event_shape)`` to logits ``(b, K)``.
      x: examples, floating-point ``(n, *event_shape)``, finite, inside ``bounds``.
      labels: true classes, integers ``(n,)`` in ``[0, K)`` (or one integer for all).
      eps: ball radius ``ε > 0`` in the units of ``x`` (e.g. ``8/255`` on ``[0, 1]`` pixels).
      steps: steps per restart, ``≥ 1``.
      step_size: ``α > 0``; default ``2.5 ε / steps``.
      restarts: independent random starts, ``≥ 1``.
      loss: ``"margin"`` or ``"cross_entropy"``.
      norm: ``"linf"`` or ``"l2"``.
      random_start: start each restart at a random point of the ball (needs ``key``).
      key: a :func:`jax.random.key`; required when ``random_start``.
      penalty: optional ``logits (b, K) -> (b,)`` subtracted from loss and margin.
      bounds: the input box ``(lo, hi)``.
      batch_size: examples per jitted call, ``≥ 1``.
      progress: show a progress bar over batches.

    Returns:
      :class:`RobustAccuracyResult` (``adversarial``, ``margin``, ``correct``; ``.robust_accuracy``).

    Raises:
      ValueError: for a bad batch or labels, ``eps``, ``step_size``, ``steps``, ``restarts``,
        ``batch_size``, ``loss``, ``norm`` or ``bounds`` (naming the argument), ``x`` outside
        ``bounds``, or ``random_start`` without a ``key``.
      TypeError: ``key`` is not a JAX PRNG key; ``logits_fn`` is not callable.

    >>> import functools, jax, jax.numpy as jnp, numpy as np, flowclass as fc
    >>> net = fc.FNN(2)
    >>> fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
    >>> x, y = np.full((4, 2), 0.5, np.float32), np.array([0, 1, 0, 1])
    >>> weak = pgd_robust_accuracy(fn, x, y, eps=0.05, steps=3, key=jax.random.key(0))
    >>> strong = pgd_robust_accuracy(fn, x, y, eps=0.5, steps=20, key=jax.random.key(0))
    >>> strong.robust_accuracy <= weak.robust_accuracy
    True
    """
    x, labels, _ = check_classifier_inputs(logits_fn, x, labels, name="labels", x_name="x")
    check_positive_int(steps, "steps")
    check_positive_int(restarts, "restarts")
    check_positive(eps, "eps")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    check_positive(step_size, "step_size")
    if loss not in ("margin", "cross_entropy"):
        raise ValueError(f"loss must be 'margin' or 'cross_entropy'; got {loss!r}.")
    check_norm(norm)
    if random_start and key is None:
        raise ValueError("random_start=True needs a key (jax.random.key(seed)).")
    if key is not None:
        key = check_key(key, "key")
    check_positive_int(batch_size, "batch_size")
    steps, restarts = int(steps), int(restarts)
    box = check_bounds(bounds, x, name="x")
    fn = traceable(logits_fn)

    def attack_batch(fn, x0, y, batch_key):
        best = _margins(fn, x0, y, penalty=penalty), x0
        for restart in range(restarts):
            if restart and bool(jnp.all(best[0] > 0)):
                break  # every example of the batch is already turned: more restarts cannot change the verdict
            xs = x0
            if random_start:
                xs = pgd_random_start(jax.random.fold_in(batch_key, restart), x0, eps=eps, norm=norm, bounds=box)
            for _ in range(steps):
                xs, best = _margin_ascent_step(fn, xs, x0, y, jnp.float32(eps), jnp.float32(step_size), box, best,
                                               loss=loss, norm=norm, penalty=penalty)
            best = _keep_stronger(best, (_margins(fn, xs, y, penalty=penalty), xs))
        return best

    return _run_batched(fn, attack_batch, x, labels, key, batch_size, progress, desc=f"PGD ε={eps:g}")


def fgsm_robust_accuracy(
    logits_fn: LogitsFn,
    x: ArrayLike,
    labels: ArrayLike,
    *,
    eps: float,
    loss: AttackLoss = "margin",
    norm: Norm = "linf",
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 250,
) -> RobustAccuracyResult:
    """Robust accuracy under FGSM (Goodfellow et al. 2015): ``x = clip(x_0 + ε sign ∇L(x_0), lo, hi)``.

    One :func:`flowclass.attacks.pgd_step` of size ``α = ε`` from ``x_0``, no random start
    (``norm="l2"``: ``x_0 + ε ∇L / ‖∇L‖₂``, the fast gradient method); ``L``, arguments,
    result and errors as in :func:`pgd_robust_accuracy`. The point kept per example is
    ``x_1``, or ``x_0`` where the step lowered the margin.

    >>> import functools, jax, jax.numpy as jnp, numpy as np, flowclass as fc
    >>> net = fc.FNN(2)
    >>> fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
    >>> r = fgsm_robust_accuracy(fn, np.full((3, 2), 0.5, np.float32), np.zeros(3, np.int32), eps=0.1)
    >>> r.correct.shape, r.adversarial.dtype
    ((3,), dtype('float32'))
    """
    return pgd_robust_accuracy(logits_fn, x, labels, eps=eps, steps=1, step_size=eps, loss=loss, norm=norm,
                               random_start=False, bounds=bounds, batch_size=batch_size)


def random_search_robust_accuracy(
    logits_fn: LogitsFn,
    x: ArrayLike,
    labels: ArrayLike,
    *,
    eps: float,
    queries: int = 1000,
    key: jax.Array,
    p_init: float = 0.05,
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 250,
    progress: bool = False,
) -> RobustAccuracyResult:
    """Robust accuracy under a gradient-free ``L∞`` random search (the Square Attack of Andriushchenko et al. 2020).

    ``queries`` model calls per example: start at vertical stripes ``x_0 ± ε``, then
    repeatedly set a random square to ``x_0 ± ε`` (a random sign per channel) and keep it
    if the margin grows. Images ``(n, H, W, C)``; other inputs ``(n, D)`` are searched as
    ``(n, 1, D, 1)`` strips. The share of pixels changed per query starts at ``p_init`` and
    halves at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of every 10,000 queries.
    Needs no gradient, so it is the reference that gradient masking cannot fool
    (:func:`sanity_checks`).

    Returns:
      :class:`RobustAccuracyResult`, as :func:`pgd_robust_accuracy`.

    Raises:
      ValueError: for a bad batch or labels, ``eps``, ``queries``, ``batch_size``, ``p_init``
        outside ``(0, 1]`` or ``bounds``, or ``x`` outside ``bounds``.
      TypeError: ``key`` is not a JAX PRNG key.

    >>> import functools, jax, jax.numpy as jnp, numpy as np, flowclass as fc
    >>> net = fc.FNN(2)
    >>> fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
    >>> r = random_search_robust_accuracy(fn, np.full((3, 2), 0.5, np.float32), np.zeros(3, np.int32), eps=0.1,
    ...                                   queries=20, key=jax.random.key(0))
    >>> bool(np.all(np.abs(r.adversarial - 0.5) <= 0.1 + 1e-6))
    True
    """
    x, labels, _ = check_classifier_inputs(logits_fn, x, labels, name="labels", x_name="x")
    check_positive_int(queries, "queries")
    check_positive(eps, "eps")
    p_init = check_real(p_init, "p_init", minimum=0.0, open_min=True, maximum=1.0)
    key = check_key(key, "key")
    check_positive_int(batch_size, "batch_size")
    queries = int(queries)
    box = check_bounds(bounds, x, name="x")
    fn = traceable(logits_fn)
    event_shape = x.shape[1:]
    image_shape = event_shape if len(event_shape) == 3 else (1, math.prod(event_shape), 1)
    as_image = functools.partial(jnp.reshape, shape=(-1, *image_shape))
    as_input = functools.partial(jnp.reshape, shape=(-1, *event_shape))
    height, width, _ = image_shape

    def attack_batch(fn, x0, y, batch_key):
        start_key, search_key = jax.random.split(batch_key)
        stripes = jax.random.choice(start_key, jnp.array([-1.0, 1.0]), (x0.shape[0], 1, width, image_shape[2]))
        xs = as_input(jnp.clip(as_image(x0) + eps * stripes, box[0], box[1]))
        best = _keep_stronger((_margins(fn, x0, y), x0), (_margins(fn, xs, y), xs))
        for query in range(1, queries):
            p = p_init * 0.5 ** sum(query * 10000 / queries > t for t in _HALVINGS)
            side = max(1, min(height, width, round(math.sqrt(p * height * width))))
            best = _square_step(fn, best, x0, y, jax.random.fold_in(search_key, query), jnp.float32(eps), box,
                                side=side, image_shape=image_shape)
        return best

    return _run_batched(fn, attack_batch, x, labels, key, batch_size, progress, desc=f"random search ε={eps:g}")


_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def clean_accuracy(logits_fn: LogitsFn, x: ArrayLike, labels: ArrayLike, *, batch_size: int = 250) -> float:
    """Accuracy on the unperturbed inputs, batched like the attacks: the robust accuracy at ``ε = 0``.

    ``x`` ``(n, *event_shape)`` floating point, ``labels`` ``(n,)`` integers in ``[0, K)``;
    returns the share in ``[0, 1]`` of examples whose ``argmax`` logit is the label.

    Raises:
      ValueError: for a bad batch, labels or ``batch_size``.

    >>> import functools, jax, jax.numpy as jnp, numpy as np, flowclass as fc
    >>> net = fc.FNN(2)
    >>> fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
    >>> 0.0 <= clean_accuracy(fn, np.zeros((3, 2), np.float32), np.array([0, 1, 1])) <= 1.0
    True
    """
    x, labels, _ = check_classifier_inputs(logits_fn, x, labels, name="labels", x_name="x")
    fn = traceable(logits_fn)
    result = _run_batched(fn, lambda fn, x0, y, _: (_margins(fn, x0, y), x0), x, labels, None, batch_size, False, "")
    return result.robust_accuracy


class SanityReport(NamedTuple):
    """Robust accuracies behind the gradient-masking checks, and whether each check passed.

    Attributes:
      accuracy: ``{name: robust accuracy}`` for ``clean``, ``fgsm``, ``pgd`` (the reference
        attack), ``pgd_more_steps``, ``pgd_more_restarts``, ``pgd_eps_1``, ``random_search``.
      checks: ``{name: passed}`` for ``pgd_beats_fgsm``, ``more_steps_no_better``,
        ``more_restarts_no_better``, ``eps_1_breaks_all``, ``gradient_free_no_better``.

    Example:
      >>> SanityReport({"pgd": 0.1}, {"eps_1_breaks_all": True}).passed
      True
    """

    accuracy: dict
    checks: dict

    @property
    def passed(self) -> bool:
        """All checks passed."""
        return all(self.checks.values())


def sanity_checks(
    logits_fn: LogitsFn,
    x: ArrayLike,
    labels: ArrayLike,
    *,
    eps: float,
    key: jax.Array,
    steps: int = 40,
    restarts: int = 1,
    queries: int = 1000,
    tolerance: float = 0.02,
    bounds: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 250,
) -> SanityReport:
    """Runs the checks that an ``L∞`` gradient attack at ``eps`` is not fooled by gradient masking.

    Following Athalye et al. (2018) and Carlini et al. (2019), "On evaluating adversarial
    robustness", it runs :func:`clean_accuracy`, :func:`fgsm_robust_accuracy`,
    :func:`pgd_robust_accuracy` (``steps``, ``restarts``; then five times the steps, five
    times the restarts, and ``ε = 1``) and :func:`random_search_robust_accuracy`
    (``queries``) on the same examples, each with its own key split from ``key``.

    With ``a(·)`` the robust accuracy under an attack and ``τ = tolerance`` (for sampling noise):

    * ``a(PGD) ≤ a(FGSM) + τ``;
    * ``a(PGD, 5 × steps) ≤ a(PGD) + τ`` and ``a(PGD, 5 × restarts) ≤ a(PGD) + τ``;
    * ``a(PGD at ε = 1) ≤ τ``: the whole box is reachable, so a working attack turns every example;
    * ``a(PGD) ≤ a(random search) + τ``: gradients are at least as good as no gradients.

    ``ε = 1`` reaches the whole box only for inputs in ``[0, 1]`` (the default ``bounds``).

    Returns:
      :class:`SanityReport` with the seven accuracies and the five checks.

    Raises:
      ValueError: as the attacks it runs, and for ``tolerance`` not a finite number ``≥ 0``.
      TypeError: ``key`` is not a JAX PRNG key.

    >>> import functools, jax, jax.numpy as jnp, numpy as np, flowclass as fc
    >>> net = fc.FNN(2)
    >>> fn = functools.partial(net.apply, net.init(jax.random.key(0), jnp.zeros((1, 2))))
    >>> x, y = np.random.default_rng(0).uniform(size=(8, 2)).astype(np.float32), np.arange(8) % 2
    >>> report = sanity_checks(fn, x, y, eps=0.3, key=jax.random.key(0), steps=5, queries=50)
    >>> sorted(report.checks)[:2]
    ['eps_1_breaks_all', 'gradient_free_no_better']
    """
    keys = jax.random.split(check_key(key, "key"), 5)
    tolerance = check_real(tolerance, "tolerance", minimum=0.0)
    for value, name in ((steps, "steps"), (restarts, "restarts"), (queries, "queries"), (batch_size, "batch_size")):
        check_positive_int(value, name)  # before the first attack runs
    pgd = functools.partial(pgd_robust_accuracy, logits_fn, x, labels, bounds=bounds, batch_size=batch_size)
    acc = {
        "clean": clean_accuracy(logits_fn, x, labels, batch_size=batch_size),
        "fgsm": fgsm_robust_accuracy(logits_fn, x, labels, eps=eps, bounds=bounds,
                                     batch_size=batch_size).robust_accuracy,
        "pgd": pgd(eps=eps, steps=steps, restarts=restarts, key=keys[0]).robust_accuracy,
        "pgd_more_steps": pgd(eps=eps, steps=5 * steps, restarts=restarts, key=keys[1]).robust_accuracy,
        "pgd_more_restarts": pgd(eps=eps, steps=steps, restarts=5 * restarts, key=keys[2]).robust_accuracy,
        "pgd_eps_1": pgd(eps=1.0, steps=steps, key=keys[3]).robust_accuracy,
        "random_search": random_search_robust_accuracy(logits_fn, x, labels, eps=eps, queries=queries, key=keys[4],
                                                       bounds=bounds, batch_size=batch_size).robust_accuracy,
    }
    checks = {
        "pgd_beats_fgsm": acc["pgd"] <= acc["fgsm"] + tolerance,
        "more_steps_no_better": acc["pgd_more_steps"] <= acc["pgd"] + tolerance,
        "more_restarts_no_better": acc["pgd_more_restarts"] <= acc["pgd"] + tolerance,
        "eps_1_breaks_all": acc["pgd_eps_1"] <= tolerance,
        "gradient_free_no_better": acc["pgd"] <= acc["random_search"] + tolerance,
    }
    return SanityReport(acc, checks)


# ---------------------------------------------------------------------------------------
# Jitted pieces and the batching loop.
# ---------------------------------------------------------------------------------------


def _margin_of(logits, y):
    true = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    others = jnp.where(jax.nn.one_hot(y, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return jnp.max(others, -1) - true


@functools.partial(jax.jit, static_argnames=("penalty",))
def _margins(fn, x, y, *, penalty=None):
    logits = fn(x).astype(jnp.float32)
    return _margin_of(logits, y) - (0.0 if penalty is None else penalty(logits))


@jax.jit
def _predictions(fn, x):
    return jnp.argmax(fn(x), -1)


def _keep_stronger(best, candidate):
    """Per example, the (margin, x) pair with the larger margin."""
    stronger = candidate[0] > best[0]
    pick = lambda new, old: jnp.where(stronger.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)  # noqa: E731
    return jax.tree.map(pick, candidate, best)


@functools.partial(jax.jit, static_argnames=("loss", "norm", "penalty"))
def _margin_ascent_step(fn, x, x0, y, eps, step_size, box, best, *, loss, norm, penalty):
    """One :func:`~flowclass.attacks.pgd_step` on the batch-summed loss, after recording ``x`` if it beats the best."""

    def objective(v):
        logits = fn(v).astype(jnp.float32)
        cost = 0.0 if penalty is None else penalty(logits)
        margin = _margin_of(logits, y) - cost
        if loss == "margin":
            return jnp.sum(margin), margin
        log_probs = jax.nn.log_softmax(logits)
        return -jnp.sum(jnp.take_along_axis(log_probs, y[:, None], axis=-1) + cost), margin

    (_, margin), grad = jax.value_and_grad(objective, has_aux=True)(x)
    best = _keep_stronger(best, (margin, x))
    return pgd_step(x, grad, x0, eps=eps, step_size=step_size, norm=norm, bounds=box), best


@functools.partial(jax.jit, static_argnames=("side", "image_shape"))
def _square_step(fn, best, x0, y, key, eps, box, *, side, image_shape):
    """Proposes ``x_0 ± ε`` on one random ``side × side`` square per example; keeps it if the margin grows."""
    height, width, channels = image_shape
    n = x0.shape[0]
    row_key, col_key, sign_key = jax.random.split(key, 3)
    top = jax.random.randint(row_key, (n, 1, 1, 1), 0, height - side + 1)
    left = jax.random.randint(col_key, (n, 1, 1, 1), 0, width - side + 1)
    rows = jnp.arange(height).reshape(1, height, 1, 1)
    cols = jnp.arange(width).reshape(1, 1, width, 1)
    square = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    signs = jax.random.choice(sign_key, jnp.array([-1.0, 1.0]), (n, 1, 1, channels))
    current = best[1].reshape(n, *image_shape)
    proposal = jnp.where(square, jnp.clip(x0.reshape(n, *image_shape) + eps * signs, box[0], box[1]), current)
    proposal = proposal.reshape(x0.shape)
    return _keep_stronger(best, (_margin_of(fn(proposal).astype(jnp.float32), y), proposal))


def _run_batched(fn, attack_batch, x, labels, key, batch_size, progress, desc) -> RobustAccuracyResult:
    """Runs ``attack_batch(fn, x0, y, key) -> (margin, x_adv)`` over fixed-size batches (the last one padded).

    With several devices, each batch is split over them and the model replicated.
    """
    check_positive_int(batch_size, "batch_size")
    n = x.shape[0]
    batch_size = min(batch_size, n)
    mesh = None
    if jax.device_count() > 1 and batch_size % jax.device_count() == 0:
        mesh = sharding.data_mesh()
        fn = jax.device_put(fn, sharding.replicated(mesh))
    key = jax.random.key(0) if key is None else key
    margins, adversarial, predictions = [], [], []
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
        index = np.arange(start, start + batch_size) % n  # pad the last batch by wrapping around
        x0, y = x[index], labels[index]
        if mesh is not None:
            x0, y = jax.device_put((x0, y), sharding.batch_sharding(mesh))
        margin, x_adv = attack_batch(fn, x0, y, jax.random.fold_in(key, start))
        keep = min(batch_size, n - start)
        margins.append(np.asarray(margin)[:keep])
        adversarial.append(np.asarray(x_adv)[:keep])
        # correct = the prediction at the chosen point (a tie in the margin is decided by argmax)
        predictions.append(np.asarray(_predictions(fn, x_adv))[:keep])
    correct = np.concatenate(predictions) == np.asarray(labels)
    return RobustAccuracyResult(np.concatenate(adversarial), np.concatenate(margins), correct)
