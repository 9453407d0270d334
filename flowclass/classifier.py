"""A flow and a class-conditional base density make a generative classifier.

With ``z, log_det = f_θ(x)``:

    log p(x | k) = log p_Z(z | k) + log|det ∂f_θ/∂x|      (e.g. p_Z(z | k) = N(z; μ_k, Σ_k))
    p(k | x)     = softmax_k( log p_Z(z | k) + log π_k )      (the log-det cancels)
    bits/dim     = −log p(x | y) / (D log 2)

The flow is any :class:`~flowclass.bijectors.Bijector`; the base is anything that implements
:class:`~flowclass.distributions.ClassConditionalBase` (e.g. :class:`~flowclass.ClassGaussians`).

**The boundary.** Every method called eagerly (``model.apply(variables, x, method=...)``) checks
its arguments and raises an error naming the argument: ``x``/``z`` a non-empty, finite,
floating-point batch of the right shape (lists accepted; ``bfloat16``, ``float16`` and
``float64`` too), for flows whose first layer is a
:class:`~flowclass.bijectors.LogitTransform` (the image flows) also inside
:attr:`FlowClassifier.input_bounds` ``= [0, 1]`` (raw 0–255 pixels are refused, not scored as
NaN); labels ``y`` integers in ``[0, K)``; ``sample``'s key, class, count and temperature.
Under ``jax.jit`` the arguments are tracers: shapes and dtypes are still checked, values
(finiteness, pixel range, label range) are *not* — validate the whole array eagerly first, as
:func:`flowclass.evaluate` and :func:`flowclass.fit` do.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from flowclass._validation import (
    check_class_index,
    check_inputs,
    check_key,
    check_labels,
    check_positive_int,
    check_real,
)
from flowclass.bijectors import Bijector, Chain, LogitTransform
from flowclass.distributions import ClassConditionalBase


class FlowClassifier(nn.Module):
    """Generative classifier ``p(x | k) = p_Z(f(x) | k) |det J_f(x)|``; calling it gives logits.

    All methods take a batch ``x`` of shape ``(batch, *input_shape)`` and are pure;
    call them with ``model.apply(variables, x, method="...")``. ``input_shape`` defaults
    to the base's event shape; set it when the flow changes the shape (e.g. squeezes).

    Attributes:
      flow: the bijector ``f_θ``, inputs ``(batch, *input_shape)`` to latents ``(batch, *latent_shape)``.
      base: the class-conditional density of the latents, a
        :class:`~flowclass.distributions.ClassConditionalBase` such as :class:`~flowclass.ClassGaussians`.
      input_shape: the shape of one input; defaults to the base's event shape.

    Raises:
      TypeError: when built with a ``flow`` that is not a Bijector, or a ``base`` that lacks
        a method or field of :class:`~flowclass.distributions.ClassConditionalBase`.
      ValueError: from every method, for inputs it cannot compute on (see the module docstring):
        ``x`` or ``z`` of the wrong shape or dtype, empty, not finite, or outside
        :attr:`input_bounds`; labels ``y`` not integers in ``[0, K)``; the message names the argument.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flowclass.flows import tabular_realnvp
      >>> model = tabular_realnvp(num_features=2, num_classes=2, means=((-4, 0), (4, 0)))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> model.apply(variables, jnp.ones((3, 2)), method="predict").shape
      (3,)
    """

    flow: Bijector
    base: ClassConditionalBase
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.flow, Bijector):
            raise TypeError(
                f"FlowClassifier.flow must be a flowclass.bijectors.Bijector; got {type(self.flow).__name__}."
            )
        # class_means is left out: a Flax base may only define it in setup, once bound.
        members = ("num_classes", "event_shape", "class_log_prob", "log_weights", "log_joint", "marginal_log_prob",
                   "sample")
        missing = [name for name in members if not hasattr(self.base, name)]
        if missing:
            raise TypeError(
                f"FlowClassifier.base must implement flowclass.distributions.ClassConditionalBase; "
                f"a {type(self.base).__name__} has no {', '.join(missing)}."
            )
        super().__post_init__()

    @property
    def num_classes(self) -> int:
        return self.base.num_classes

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one input ``x``."""
        return tuple(self.input_shape if self.input_shape is not None else self.base.event_shape)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """The shape of one latent ``z = f(x)``."""
        return tuple(self.base.event_shape)

    @property
    def input_bounds(self) -> tuple[float, float] | None:
        """``(0.0, 1.0)`` when the flow's first layer is a :class:`~flowclass.bijectors.LogitTransform`
        (it maps the unit box to the real line: inputs outside it have no density), else ``None``."""
        first: Any = self.flow
        while isinstance(first, Chain) and len(first.layers):
            first = first.layers[0]
        return (0.0, 1.0) if isinstance(first, LogitTransform) else None

    def _check_x(self, x: Any) -> jnp.ndarray:
        return check_inputs(x, self.event_shape, bounds=self.input_bounds)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.logits(x)

    def encode(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``z, log|det ∂z/∂x| = f(x)``."""
        return self.flow(self._check_x(x))

    def decode(self, z: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``x, log|det ∂x/∂z| = f⁻¹(z)``."""
        return self.flow(check_inputs(z, self.latent_shape, name="z"), inverse=True)

    def class_log_likelihoods(self, x: jnp.ndarray) -> jnp.ndarray:
        """``log p(x | k)`` for every class, shape ``(batch, K)``."""
        z, log_det = self.encode(x)
        return self.base.class_log_prob(z) + log_det[:, None]

    def log_prob(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
        """``log p(x | y)``, shape ``(batch,)``; ``y`` integer labels in ``[0, K)``, one per example."""
        x = self._check_x(x)
        y = check_labels(y, self.num_classes, batch=x.shape[0])
        z, log_det = self.flow(x)
        per_class = self.base.class_log_prob(z) + log_det[:, None]
        return jnp.take_along_axis(per_class, y[:, None], axis=-1)[:, 0]

    def marginal_log_prob(self, x: jnp.ndarray) -> jnp.ndarray:
        """``log p(x) = log Σ_k π_k p(x | k)``, shape ``(batch,)``."""
        z, log_det = self.encode(x)
        return self.base.marginal_log_prob(z) + log_det

    def log_weights(self) -> jnp.ndarray:
        """Class log-priors ``log π_k``, shape ``(K,)``."""
        return self.base.log_weights()

    def class_means(self) -> jnp.ndarray:
        """The class means ``μ_k`` in latent space, shape ``(K, *latent_shape)``."""
        return self.base.class_means.reshape((self.num_classes, *self.latent_shape))

    def logits(self, x: jnp.ndarray) -> jnp.ndarray:
        """Unnormalised Bayes posterior ``log p(z | k) + log π_k``, shape ``(batch, K)``."""
        z, _ = self.encode(x)
        return self.base.log_joint(z)

    def predict_proba(self, x: jnp.ndarray) -> jnp.ndarray:
        """``p(k | x)``, shape ``(batch, K)``."""
        return jax.nn.softmax(self.logits(x), axis=-1)

    def predict(self, x: jnp.ndarray) -> jnp.ndarray:
        """``argmax_k p(k | x)``, shape ``(batch,)``."""
        return jnp.argmax(self.logits(x), axis=-1)

    def bits_per_dim(self, x: jnp.ndarray, y: jnp.ndarray, num_bins: int | None = None) -> jnp.ndarray:
        """``−log p(x | y) / (D log 2)``, shape ``(batch,)``.

        For data quantised to ``num_bins`` levels and scaled to [0, 1] (e.g. 256 for
        8-bit images), adds ``log2(num_bins)``: the discrete bits/dim bound. ``num_bins`` is
        ``None`` or a positive integer (``ValueError`` otherwise).
        """
        if num_bins is not None:
            check_positive_int(num_bins, "num_bins")
        dim = math.prod(self.event_shape)
        bits = -self.log_prob(x, y) / (dim * math.log(2.0))
        return bits + math.log2(int(num_bins)) if num_bins is not None else bits

    def sample(self, key: jax.Array, k: int | jnp.ndarray, n: int, temperature: float = 1.0) -> jnp.ndarray:
        """``n`` inputs of class ``k``: ``f⁻¹(μ_k + T σ_k ε)``, shape ``(n, *event_shape)``.

        Raises:
          TypeError: ``key`` is not a JAX PRNG key (``jax.random.key(seed)``; a legacy
            ``PRNGKey`` is accepted).
          ValueError: ``k`` is not an integer class in ``[0, K)`` (any integer scalar: ``int``,
            ``np.int64``, a 0-d NumPy or JAX array; its range is not checked when traced), ``n``
            not a positive integer, ``temperature`` not a finite number ``≥ 0``.
        """
        key = check_key(key, "key")
        k = check_class_index(k, self.num_classes, "k")
        check_positive_int(n, "n")
        if not isinstance(temperature, jax.core.Tracer):
            temperature = check_real(temperature, "temperature", minimum=0.0)
        z = self.base.sample(key, k, int(n), temperature)
        return self.flow(z, inverse=True)[0]  # z is ours: no boundary checks needed
