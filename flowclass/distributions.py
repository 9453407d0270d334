"""The class-conditional base density of a flow classifier, and one Gaussian per class.

A base density in latent space gives, for ``K`` classes with weights ``π_k``,

    log p(z, k)  = log p(z | k) + log π_k
    log p(z)     = logsumexp_k log p(z, k)                       (the mixture marginal)

:class:`ClassConditionalBase` is the protocol :class:`~flowclass.FlowClassifier` relies on;
:class:`ClassGaussians` implements it with ``p(z | k) = N(z; μ_k, diag σ_k²)``:

    log p(z | k) = −½ Σ_d ((z_d − μ_kd) / σ_kd)² − Σ_d log σ_kd − (D/2) log 2π

as in FlowGMM (Izmailov et al. 2020, "Semi-Supervised Learning with Normalizing Flows").
"""

from __future__ import annotations

import math
from typing import Literal, Protocol, Sequence, runtime_checkable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from flowclass._validation import check_inputs

Covariance = Literal["identity", "diagonal", "class_diagonal"]
MeanInit = Literal["normal", "uniform", "onehot"]

_LOG_2PI = math.log(2.0 * math.pi)


def _float_dtype() -> np.dtype:
    """The default float dtype of the mode: ``float64`` under ``jax_enable_x64``, else ``float32``."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: object) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and math.isfinite(value))


@runtime_checkable
class ClassConditionalBase(Protocol):
    """What a flow classifier needs from its base density ``p(z | k)``, ``π_k`` over ``K`` classes.

    Arrays ``z`` have shape ``(batch, *event_shape)``. Log-densities are at least ``float32``.
    Implementations are usually Flax modules (their methods then run inside ``apply``, as
    :class:`~flowclass.FlowClassifier`'s do) and must be pure: the same variables and inputs
    give the same numbers. :class:`ClassGaussians` is one; any class with these members is
    another, without subclassing. ``isinstance(obj, ClassConditionalBase)`` checks the members
    are present (for a Flax module whose members are set in ``setup``, check a bound one).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> base = ClassGaussians(2, (2,), means=((-4.0, 0.0), (4.0, 0.0)))
      >>> isinstance(base.bind({}), ClassConditionalBase)
      True
      >>> base.apply({}, jnp.zeros((3, 2)), method="class_log_prob").shape
      (3, 2)
    """

    @property
    def num_classes(self) -> int:
        """``K``."""
        ...

    @property
    def event_shape(self) -> Sequence[int]:
        """The shape of one latent ``z``, e.g. ``(2,)`` or ``(7, 7, 16)``."""
        ...

    @property
    def class_means(self) -> jnp.ndarray:
        """The class means (or other class centres) ``μ_k``, shape ``(K, D)``, ``D = prod(event_shape)``."""
        ...

    def class_log_prob(self, z: jnp.ndarray) -> jnp.ndarray:
        """``log p(z | k)`` for every class: ``(batch, *event_shape) → (batch, K)``."""
        ...

    def log_weights(self) -> jnp.ndarray:
        """``log π_k``, shape ``(K,)``, normalised: ``logsumexp(log π) = 0``."""
        ...

    def log_joint(self, z: jnp.ndarray) -> jnp.ndarray:
        """``log p(z, k) = log p(z | k) + log π_k``, shape ``(batch, K)``."""
        ...

    def marginal_log_prob(self, z: jnp.ndarray) -> jnp.ndarray:
        """``log p(z) = logsumexp_k log p(z, k)``, shape ``(batch,)``."""
        ...

    def sample(self, key: jax.Array, k: int | jnp.ndarray, n: int, temperature: float = 1.0) -> jnp.ndarray:
        """``n`` draws of ``z`` given class ``k``, shape ``(n, *event_shape)``; ``temperature``
        scales the spread (``T = 1``: the density itself)."""
        ...


def as_means(means: ArrayLike) -> tuple[tuple[float, ...], ...]:
    """Converts a ``(K, D)`` array of class means to the hashable form the module stores.

    Raises:
      ValueError: ``means`` is not a 2-D array of finite numbers with at least one row and one
        column (the message names ``means``).

    >>> as_means([[-4, 0], [4, 0]])
    ((-4.0, 0.0), (4.0, 0.0))
    """
    try:
        array = np.asarray(means, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"means must be a (num_classes, dim) array of numbers; got {_describe(means)}.") from err
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"class means must have shape (num_classes, dim) with num_classes, dim >= 1; "
                         f"got {array.shape}.")
    if not np.all(np.isfinite(array)):
        rows = sorted({int(i) for i in np.nonzero(~np.isfinite(array))[0]})
        raise ValueError(f"means must be finite; rows {rows} hold NaN or inf.")
    return tuple(tuple(float(v) for v in row) for row in array)


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _check_means(means: tuple[tuple[float, ...], ...], num_classes: int, dim: int) -> None:
    """Explicit means: shape ``(num_classes, dim)`` and pairwise distinct (also once rounded to float32)."""
    array = np.asarray(means, np.float64)
    if array.shape != (num_classes, dim):
        raise ValueError(f"means must have shape (num_classes, dim) = {(num_classes, dim)}; got {array.shape}.")
    rounded = array.astype(np.float32)
    _, first, counts = np.unique(rounded, axis=0, return_index=True, return_counts=True)
    if np.any(counts > 1):
        row = rounded[first[np.argmax(counts > 1)]]
        same = [int(i) for i in np.nonzero(np.all(rounded == row, axis=1))[0]]
        raise ValueError(f"means must be distinct, one per class; classes {same} have the same mean "
                         "(their posteriors could never differ).")


class ClassGaussians(nn.Module):
    """One Gaussian per class, ``N(μ_k, diag σ_k²)``, with class weights ``π_k``.

    Implements :class:`ClassConditionalBase`; calling it gives ``class_log_prob``. Log-densities
    are computed in ``z``'s dtype promoted to at least ``float32``.

    Attributes:
      num_classes: ``K``.
      event_shape: the shape of one latent vector, e.g. ``(2,)`` or ``(28, 28, 1)``;
        it is flattened to ``D = prod(event_shape)``.
      means: ``'normal'`` (``mean_scale · N(0, I)``), ``'uniform'``
        (``U[-mean_scale, mean_scale]^D``), ``'onehot'`` (``mean_scale · √D · e_k``: orthogonal
        and equidistant, as far apart as the normal draw's expected distance ``√(2D)·mean_scale``,
        needs ``K ≤ D``) or explicit ``(K, D)`` means (see :func:`as_means`).
      mean_scale: the scale of drawn means.
      mean_seed: the random seed from which drawn means are generated (they are constants,
        recomputed identically at every call unless ``trainable_means``).
      trainable_means: make the means parameters, initialised as above.
      covariance: ``'identity'`` (fixed ``σ = 1``), ``'diagonal'`` (one learnable
        diagonal shared by the classes) or ``'class_diagonal'`` (one per class).
      trainable_weights: learn ``log π`` (softmax-normalised); otherwise uniform.

    Dtypes follow the mode: the means, scales and weights are ``float32``, or ``float64`` under
    ``jax_enable_x64`` (explicit means included), and log-densities are computed in ``z``'s dtype
    promoted to at least ``float32``.

    Raises:
      ValueError: when built, for a degenerate model, naming the argument: ``num_classes`` not
        an integer ≥ 1; ``event_shape`` not a sequence of integers ≥ 1; explicit ``means`` of
        another shape than ``(num_classes, dim)``, with NaN or inf, or with two equal rows;
        ``'onehot'`` means with ``num_classes > dim``; an unknown ``means`` or ``covariance``
        name; ``mean_scale`` not a finite number > 0 (zero-scale means would all coincide);
        ``mean_seed`` not an integer.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> base = ClassGaussians(2, (2,), means=((-4.0, 0.0), (4.0, 0.0)))
      >>> variables = base.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> base.apply(variables, jnp.zeros((3, 2))).shape  # log p(z | k), (batch, K)
      (3, 2)
    """

    num_classes: int
    event_shape: Sequence[int]
    means: MeanInit | tuple = "normal"
    mean_scale: float = 1.0
    mean_seed: int = 0
    trainable_means: bool = False
    covariance: Covariance = "identity"
    trainable_weights: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.num_classes) or self.num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1; got {self.num_classes!r}.")
        try:
            shape = tuple(self.event_shape)
        except TypeError:
            shape = None
        if not shape or not all(_is_int(d) and d >= 1 for d in shape):
            raise ValueError(f"event_shape must be a non-empty sequence of integers >= 1; got {self.event_shape!r}.")
        object.__setattr__(self, "event_shape", tuple(int(d) for d in shape))
        dim = math.prod(self.event_shape)
        if isinstance(self.means, str):
            if self.means not in ("normal", "uniform", "onehot"):
                raise ValueError(
                    f"unknown means {self.means!r}; expected 'normal', 'uniform', 'onehot' or a (K, D) array."
                )
            if self.means == "onehot" and self.num_classes > dim:
                raise ValueError(
                    f"'onehot' means need num_classes <= dim; got {self.num_classes} classes in {dim} dims."
                )
        else:
            means = self.means
            if not (isinstance(means, tuple) and all(isinstance(r, tuple) for r in means)):
                means = as_means(means)  # any (K, D) array-like, stored hashable
                object.__setattr__(self, "means", means)
            elif not all(isinstance(v, float) and math.isfinite(v) for row in means for v in row):
                as_means(means)  # raises the error that names the bad rows
            _check_means(means, self.num_classes, dim)
        if not _is_real(self.mean_scale) or not self.mean_scale > 0:
            raise ValueError(f"mean_scale must be a finite number > 0 (zero-scale means all coincide); "
                             f"got {self.mean_scale!r}.")
        if not _is_int(self.mean_seed):
            raise ValueError(f"mean_seed must be an integer; got {self.mean_seed!r}.")
        if self.covariance not in ("identity", "diagonal", "class_diagonal"):
            raise ValueError(
                f"unknown covariance {self.covariance!r}; expected 'identity', 'diagonal' or 'class_diagonal'."
            )
        super().__post_init__()

    @property
    def dim(self) -> int:
        return int(np.prod(self.event_shape))

    def _initial_means(self) -> jnp.ndarray:
        shape = (self.num_classes, self.dim)
        if isinstance(self.means, str):
            key = jax.random.key(self.mean_seed)
            if self.means == "normal":
                return self.mean_scale * jax.random.normal(key, shape)
            if self.means == "uniform":
                return jax.random.uniform(key, shape, minval=-self.mean_scale, maxval=self.mean_scale)
            if self.means == "onehot":
                if self.num_classes > self.dim:
                    raise ValueError(
                        f"'onehot' means need num_classes <= dim; got {self.num_classes} classes in {self.dim} dims."
                    )
                return self.mean_scale * math.sqrt(self.dim) * jnp.eye(*shape)
            raise ValueError(
                f"unknown means {self.means!r}; expected 'normal', 'uniform', 'onehot' or a (K, D) array."
            )
        return jnp.asarray(self.means, _float_dtype())  # float64 under jax_enable_x64, like drawn means

    def setup(self):
        if self.trainable_means:
            self.class_means = self.param("means", lambda _: self._initial_means())
        else:
            self.class_means = self._initial_means()
        if self.covariance == "identity":
            self.log_scales = jnp.zeros((1, self.dim))
        elif self.covariance == "diagonal":
            self.log_scales = self.param("log_scales", nn.initializers.zeros, (1, self.dim))
        elif self.covariance == "class_diagonal":
            self.log_scales = self.param(
                "log_scales", nn.initializers.zeros, (self.num_classes, self.dim)
            )
        else:
            raise ValueError(
                f"unknown covariance {self.covariance!r}; "
                "expected 'identity', 'diagonal' or 'class_diagonal'."
            )
        if self.trainable_weights:
            self.weight_logits = self.param("weight_logits", nn.initializers.zeros, (self.num_classes,))
        else:
            self.weight_logits = jnp.zeros((self.num_classes,))

    def __call__(self, z: jnp.ndarray) -> jnp.ndarray:
        return self.class_log_prob(z)

    def class_log_prob(self, z: jnp.ndarray) -> jnp.ndarray:
        """``log p(z | k)`` for every class: ``(batch, *event_shape) → (batch, K)``, float32+."""
        check_inputs(z, self.event_shape, name="z", check_values=False)  # the classifier checks x
        dtype = jnp.promote_types(z.dtype, jnp.float32)
        z = z.reshape(z.shape[0], 1, self.dim).astype(dtype)
        log_scales = self.log_scales.astype(dtype)
        standardized = (z - self.class_means.astype(dtype)) * jnp.exp(-log_scales)
        return (
            -0.5 * jnp.sum(standardized**2, axis=-1)
            - jnp.sum(log_scales, axis=-1)
            - 0.5 * self.dim * _LOG_2PI
        )

    def log_weights(self) -> jnp.ndarray:
        """``log π_k``, shape ``(K,)``."""
        return jax.nn.log_softmax(self.weight_logits)

    def log_joint(self, z: jnp.ndarray) -> jnp.ndarray:
        """``log p(z, k) = log p(z | k) + log π_k``, shape ``(batch, K)``."""
        return self.class_log_prob(z) + self.log_weights()

    def marginal_log_prob(self, z: jnp.ndarray) -> jnp.ndarray:
        """The mixture marginal ``log Σ_k π_k p(z | k)``, shape ``(batch,)``."""
        return jax.nn.logsumexp(self.log_joint(z), axis=-1)

    def sample(self, key: jax.Array, k: int | jnp.ndarray, n: int, temperature: float = 1.0) -> jnp.ndarray:
        """``n`` draws ``μ_k + T σ_k ε``, ``ε ~ N(0, I)``, shape ``(n, *event_shape)``.

        Raises:
          ValueError: for a Python-int class ``k`` outside ``[0, K)``.
        """
        if isinstance(k, int) and not 0 <= k < self.num_classes:
            raise ValueError(f"class k must be in [0, {self.num_classes}); got {k}.")
        mean = self.class_means[k]
        log_scale = self.log_scales[k if self.log_scales.shape[0] > 1 else 0]
        eps = jax.random.normal(key, (n, self.dim))
        z = mean + temperature * jnp.exp(log_scale) * eps
        return z.reshape((n, *self.event_shape))
