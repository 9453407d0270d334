"""Generation and interpretation through a flow classifier's inverse ``f⁻¹``.

    class samples:   x = f⁻¹(μ_k + T σ_k ε),  ε ~ N(0, I)        (temperature T)
    interpolation:   x(t) = f⁻¹((1 − t) f(x_a) + t f(x_b)),  t ∈ [0, 1]
    prototypes:      x_k = f⁻¹(μ_k)                             (the decoded class means)

All functions take a :class:`~flowclass.FlowClassifier` and its variables and return arrays
in input space. They check their arguments eagerly and raise ``ValueError`` (``TypeError`` for a
key that is not a JAX PRNG key or variables that are not a mapping) naming the argument; inputs
go through the classifier's own checks (shape, dtype, finite, pixel range).
"""

from __future__ import annotations

from typing import Any, Mapping, cast

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from flowclass._validation import as_array, check_inputs, check_int, check_key, check_positive_int, check_real
from flowclass.classifier import FlowClassifier

Variables = Mapping[str, Any]


def class_samples(
    model: FlowClassifier, variables: Variables, key: jax.Array, n: int, *, temperature: float = 1.0
) -> jnp.ndarray:
    """``n`` samples of every class at temperature ``T``: ``f⁻¹(μ_k + T σ_k ε)``, shape ``(K, n, *input_shape)``.

    ``T < 1`` draws from the cores of the class densities (cleaner images), ``T = 1`` from the model.

    Raises:
      TypeError: ``key`` is not a JAX PRNG key; ``variables`` is not a mapping.
      ValueError: ``n`` is not a positive integer; ``temperature`` not a finite number ``≥ 0``.

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> class_samples(model, variables, jax.random.key(1), 5, temperature=0.7).shape
      (2, 5, 2)
    """
    key = check_key(key, "key")
    check_positive_int(n, "n")
    temperature = check_real(temperature, "temperature", minimum=0.0)
    _check_variables(variables)
    keys = jax.random.split(key, model.num_classes)
    samples = [model.apply(variables, keys[k], k, n, temperature, method="sample") for k in range(model.num_classes)]
    return jnp.stack(cast(list[jnp.ndarray], samples))


def interpolate(model: FlowClassifier, variables: Variables, x_a: ArrayLike, x_b: ArrayLike, n: int) -> jnp.ndarray:
    """``n`` points on the latent straight line from ``x_a`` to ``x_b``, mapped back to input space:

        x(t_j) = f⁻¹((1 − t_j) f(x_a) + t_j f(x_b)),     t_j = j / (n − 1),  j = 0, …, n − 1

    so the first and last points reproduce ``x_a`` and ``x_b``. ``x_a`` and ``x_b`` are single
    inputs of shape ``input_shape`` (result ``(n, *input_shape)``) or equal batches
    ``(B, *input_shape)`` (result ``(B, n, *input_shape)``).

    Raises:
      TypeError: ``x_a`` or ``x_b`` is not an array.
      ValueError: ``x_a`` and ``x_b`` differ in shape, are not inputs of the model (shape, dtype,
        finite, pixel range), or ``n`` is not an integer ``≥ 2``.

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> path = interpolate(model, variables, jnp.array([0.0, 1.0]), jnp.array([2.0, -1.0]), 5)
      >>> path.shape, path[2].round(3).tolist()  # the flow starts as the identity: a straight line
      ((5, 2), [1.0, 0.0])
    """
    x_a, x_b = cast(jax.Array, as_array(x_a, "x_a")), cast(jax.Array, as_array(x_b, "x_b"))
    if x_a.shape != x_b.shape:
        raise ValueError(f"x_a and x_b must have the same shape; got {x_a.shape} and {x_b.shape}.")
    n = check_int(n, "n", minimum=2)  # both end points
    _check_variables(variables)
    single = x_a.shape == model.event_shape
    if single:
        x_a, x_b = x_a[None], x_b[None]
    bounds = model.input_bounds
    x_a = cast(jax.Array, check_inputs(x_a, model.event_shape, name="x_a", bounds=bounds))
    x_b = cast(jax.Array, check_inputs(x_b, model.event_shape, name="x_b", bounds=bounds))
    batch = x_a.shape[0]
    z, _ = model.apply(variables, jnp.concatenate([x_a, x_b]), method="encode")
    z_a, z_b = z[:batch, None], z[batch:, None]  # (B, 1, *latent)
    t = jnp.linspace(0.0, 1.0, n).reshape((1, n) + (1,) * (z.ndim - 1))
    path = ((1.0 - t) * z_a + t * z_b).reshape((batch * n, *z.shape[1:]))
    x, _ = model.apply(variables, path, method="decode")
    x = x.reshape((batch, n, *model.event_shape))
    return x[0] if single else x


def prototypes(model: FlowClassifier, variables: Variables) -> jnp.ndarray:
    """The decoded class means ``f⁻¹(μ_k)``, the most likely point of every class in latent
    space, shape ``(K, *input_shape)``.

    Example:
      >>> import jax, jax.numpy as jnp, flowclass as fc
      >>> model = fc.tabular_realnvp(2, 2, means=((-4, 0), (4, 0)))
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 2)))
      >>> prototypes(model, variables).tolist()  # the untrained flow is the identity
      [[-4.0, 0.0], [4.0, 0.0]]
    """
    _check_variables(variables)
    means = model.apply(variables, method="class_means")
    return model.apply(variables, means, method="decode")[0]


def _check_variables(variables: Any) -> None:
    if not isinstance(variables, Mapping):
        raise TypeError(f"variables must be the model's variables (a mapping such as model.init(...)); "
                        f"got {type(variables).__name__}.")


def image_grid(images: ArrayLike) -> np.ndarray:
    """Tiles ``(rows, cols, H, W[, C])`` images into one ``(rows·H, cols·W[, C])`` image
    (a single channel is dropped, for ``imshow``).

    Example:
      >>> image_grid(np.zeros((2, 3, 28, 28, 1))).shape
      (56, 84)
    """
    images = np.asarray(as_array(images, "images"))
    if images.ndim not in (4, 5) or images.size == 0:
        raise ValueError(f"images must have shape (rows, cols, H, W[, C]), none empty; got {images.shape}.")
    if not (np.issubdtype(images.dtype, np.number) or images.dtype == np.bool_) or np.iscomplexobj(images):
        raise ValueError(f"images must hold real numbers; got dtype {images.dtype}.")
    rows, cols, h, w = images.shape[:4]
    grid = images.swapaxes(1, 2).reshape((rows * h, cols * w, *images.shape[4:]))
    return grid[..., 0] if grid.ndim == 3 and grid.shape[-1] == 1 else grid
