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

    >>> as_means([[-4, 0], [4, 0]])
    ((-4.0, 0.0), (4.0, 0.0))
    """
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2:
        raise ValueError(f"class means must have shape (num_classes, dim); got {means.shape}.")
    return tuple(tuple(float(v) for v in row) for row in means)


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
        means = jnp.asarray(self.means, jnp.float32)
        if means.shape != shape:
            raise ValueError(f"means must have shape (num_classes, dim) = {shape}; got {means.shape}.")
        return means

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
