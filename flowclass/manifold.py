"""How well attack paths stay on the data manifold, measured with a known data density.

A point is *on the manifold* when its log-density clears ``τ``, the ``q``-th percentile
(1st by default) of the log-densities of held-out data, so that ``1 − q/100`` of real data
counts as on it:

    on(x) = [log p(x) > τ],     τ = percentile_q { log p(x_i) : x_i held-out }

For a path ``x_0, ..., x_T`` of an :class:`~flowclass.attacks.AttackResult` that moved for
``m = num_steps`` steps (it stays put afterwards), the moves are ``x_1 .. x_m`` and

    on-manifold fraction = (1/m) Σ_{s=1..m} on(x_s)                  (undefined if m = 0)
    length fraction      = Σ_s ℓ_s on(x_s) / Σ_s ℓ_s,   ℓ_s = ‖x_s − x_{s−1}‖
    stays on manifold    = Π_{s=1..m} on(x_s)
    ends on manifold     = on(x_m)

The length-weighted share does not depend on how finely an optimiser cuts the path.

``log p`` is any density evaluated on NumPy batches, e.g. the true moons density
:func:`flowclass.data.moons_log_density`. Every function checks its arguments (shapes, real
numbers, step counts in ``[0, T]``, finite thresholds) and raises ``ValueError`` naming the
argument (``TypeError`` for ``None`` where an array or a callable belongs).

Example:
  >>> import numpy as np
  >>> path = np.array([[0.0, 0.0], [-1.0, -2.0], [-1.0, -2.0]])  # log p at s = 0, 1, 2 of 2 paths
  >>> on_manifold_fraction(path, np.array([2, 1]), threshold=-1.5).tolist()
  [1.0, 0.0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from flowclass._validation import as_array, check_callable, check_positive_int, check_real, is_real_number_dtype

if TYPE_CHECKING:
    from flowclass.attacks import AttackResult

LogDensityFn = Callable[[np.ndarray], np.ndarray]


def manifold_threshold(reference_log_density: ArrayLike, percentile: float = 1.0) -> float:
    """``τ``: the ``percentile``-th percentile of held-out data's log-densities.

    >>> manifold_threshold(np.arange(101.0), percentile=1.0)
    1.0
    """
    values = _real_array(reference_log_density, "reference_log_density", ndim=1)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"reference_log_density must be a non-empty finite 1-D array; got shape {values.shape} "
                         f"with {int(np.sum(~np.isfinite(values)))} NaN/inf.")
    percentile = check_real(percentile, "percentile", minimum=0.0, maximum=100.0)
    return float(np.percentile(values, percentile))


def path_log_density(inputs: ArrayLike, num_steps: ArrayLike, log_density_fn: LogDensityFn) -> np.ndarray:
    """``log p(x_s)`` along every path, shape ``(T + 1, n)``.

    Only steps up to ``max(num_steps)`` are evaluated; later entries repeat each path's
    value at its last move (the path stays put there).

    >>> inputs = np.array([[[0.0], [0.0]], [[1.0], [2.0]], [[5.0], [3.0]]])  # (T + 1 = 3, n = 2, 1)
    >>> path_log_density(inputs, np.array([1, 2]), lambda x: 1.0 - np.abs(x[:, 0])).tolist()
    [[1.0, 1.0], [0.0, -1.0], [0.0, -2.0]]
    """
    inputs = _real_array(inputs, "inputs")
    if inputs.ndim < 2 or 0 in inputs.shape[:2]:
        raise ValueError(f"inputs must be paths of shape (T + 1, n, ...) with T + 1, n >= 1; got {inputs.shape}.")
    num_steps = _check_steps(num_steps, inputs.shape[0] - 1, inputs.shape[1])
    check_callable(log_density_fn, "log_density_fn")
    last = int(num_steps.max())
    moved = inputs[: last + 1]
    values = np.asarray(log_density_fn(moved.reshape(-1, *inputs.shape[2:]))).reshape(moved.shape[:2])
    rows = np.minimum(np.arange(inputs.shape[0])[:, None], num_steps[None, :])
    return values[rows, np.arange(inputs.shape[1])[None, :]]


def on_manifold_fraction(
    log_density_path: ArrayLike, num_steps: ArrayLike, threshold: float, *, inputs: ArrayLike | None = None
) -> np.ndarray:
    """Per path, the share of its moves ``x_1, ..., x_m`` on the manifold; NaN where nothing moved.

    With the path's ``inputs`` ``(T + 1, n, ...)``, each move is weighted by its length
    ``‖x_s − x_{s−1}‖``: the share of the path's length on the manifold.

    >>> log_p = np.array([[0.0, 0.0], [-1.0, -2.0], [-2.0, -2.0]])  # paths that moved 2 and 1 steps
    >>> on_manifold_fraction(log_p, np.array([2, 1]), threshold=-1.5).tolist()
    [0.5, 0.0]
    """
    on, moves = _on_moves(log_density_path, num_steps, threshold)
    weights = moves.astype(np.float64)
    if inputs is not None:
        inputs = _real_array(inputs, "inputs").astype(np.float64)
        if inputs.shape[:2] != on.shape:
            raise ValueError(f"inputs must be the paths of log_density_path, shape {on.shape} + event shape; "
                             f"got {inputs.shape}.")
        steps = np.linalg.norm(np.diff(inputs, axis=0).reshape(inputs.shape[0] - 1, inputs.shape[1], -1), axis=-1)
        weights[1:] *= steps
    total = weights.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (weights * on).sum(0) / total, np.nan)


def nearest_distance(
    points: np.ndarray | jax.Array, reference: np.ndarray | jax.Array, *, chunk: int = 2048
) -> np.ndarray:
    """Euclidean distance from each of ``points (n, ...)`` to its nearest row of ``reference (N, ...)``.

    >>> nearest_distance(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 1.0], [3.0, 0.0]])).tolist()
    [1.0, 4.0]
    """
    points = _real_array(points, "points")
    reference = _real_array(reference, "reference")
    if points.ndim < 2 or reference.ndim < 2 or points.shape[1:] != reference.shape[1:]:
        raise ValueError(f"points (n, ...) and reference (N, ...) must be batches of the same event shape; got "
                         f"{points.shape} and {reference.shape}.")
    if len(reference) == 0:
        raise ValueError("reference is empty; expected at least one reference point.")
    for array, name in ((points, "points"), (reference, "reference")):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite; got {int(np.sum(~np.isfinite(array)))} NaN/inf value(s).")
    check_positive_int(chunk, "chunk")
    chunk = int(chunk)
    points = points.astype(np.float32).reshape(len(points), -1)
    reference = jnp.asarray(reference.astype(np.float32).reshape(len(reference), -1))
    out = [np.asarray(_nearest(jnp.asarray(points[i : i + chunk]), reference)) for i in range(0, len(points), chunk)]
    return np.concatenate(out)


@jax.jit
def _nearest(points, reference):
    squared = (
        jnp.sum(points**2, -1)[:, None] + jnp.sum(reference**2, -1)[None, :] - 2.0 * points @ reference.T
    )
    return jnp.sqrt(jnp.maximum(jnp.min(squared, axis=-1), 0.0))


def summarize_paths(
    result: AttackResult,
    log_density_path: ArrayLike,
    *,
    threshold: float,
    reference: np.ndarray | jax.Array,
    select: ArrayLike | None = None,
) -> dict:
    """Success and on-manifold statistics of an attack's paths (optionally a ``select``-ed subset).

    ``result`` is an :class:`~flowclass.attacks.AttackResult` and ``log_density_path`` its
    :func:`path_log_density`. Returns ``n`` (paths), ``success_rate``,
    ``median_steps_to_success`` (over successful paths), ``starts_on_manifold``, and the
    path statistics over ``'all'`` paths and over the ``'successful'`` ones:
    ``n_moved`` (paths that moved; the statistics below are over these),
    ``on_manifold_step_fraction``, ``on_manifold_length_fraction`` (means over paths),
    ``stays_on_manifold``, ``ends_on_manifold`` (shares of paths),
    ``median_final_log_density`` and ``median_final_nearest_distance`` (from ``x_m`` to the
    nearest ``reference`` point, e.g. the training data). Undefined values are NaN.

    >>> from flowclass.attacks import AttackResult
    >>> inputs = np.array([[[0.0], [0.0]], [[1.0], [2.0]], [[1.0], [3.0]]])  # (T + 1, n, 1): 2 paths
    >>> result = AttackResult(inputs=inputs, probs=np.full((3, 2, 2), 0.5), objective=np.zeros((3, 2)),
    ...                       target=np.array([1, 1]), success_step=np.array([1, -1]), num_steps=np.array([1, 2]))
    >>> log_p = path_log_density(result.inputs, result.num_steps, lambda x: -x[:, 0])
    >>> summary = summarize_paths(result, log_p, threshold=-1.5, reference=np.zeros((1, 1)))
    >>> summary["success_rate"], summary["all"]["ends_on_manifold"], summary["successful"]["ends_on_manifold"]
    (0.5, 0.5, 1.0)
    """
    inputs = np.asarray(result.inputs)
    num_steps = np.asarray(result.num_steps)
    success_step = np.asarray(result.success_step)
    log_density = _real_array(log_density_path, "log_density_path", ndim=2)
    threshold = check_real(threshold, "threshold")
    if log_density.shape != inputs.shape[:2]:
        raise ValueError(f"log_density_path must have shape (T + 1, n) = {inputs.shape[:2]} (one value per point of "
                         f"result.inputs); got {log_density.shape}.")
    if select is not None:
        select = np.asarray(as_array(select, "select"))
        if select.shape != num_steps.shape or select.dtype != np.bool_:
            raise ValueError(f"select must be {num_steps.shape[0]} booleans (one per path); got shape {select.shape}, "
                             f"dtype {select.dtype}.")
        inputs, log_density = inputs[:, select], log_density[:, select]
        num_steps, success_step = num_steps[select], success_step[select]
    n = len(num_steps)
    if n == 0:
        raise ValueError("no paths to summarize: select is empty (selects no path).")
    on, moves = _on_moves(log_density, num_steps, threshold)
    last = (num_steps, np.arange(n))
    per_path = {
        "on_manifold_step_fraction": on_manifold_fraction(log_density, num_steps, threshold),
        "on_manifold_length_fraction": on_manifold_fraction(log_density, num_steps, threshold, inputs=inputs),
        "stays_on_manifold": np.all(on | ~moves, axis=0),
        "ends_on_manifold": log_density[last] > threshold,
        "final_log_density": log_density[last],
        "final_nearest_distance": nearest_distance(inputs[last], reference),
    }
    succeeded = success_step >= 0

    def over(paths):
        paths = paths & (num_steps > 0)
        if not paths.any():
            return {"n_moved": 0, **{key: float("nan") for key in _PATH_STATISTICS}}
        stats: dict[str, float] = {"n_moved": int(paths.sum())}
        for key in _PATH_STATISTICS:
            name = key.removeprefix("median_")
            values = per_path[name][paths]
            stats[key] = float(np.median(values) if key.startswith("median_") else np.nanmean(values))
        return stats

    return {
        "n": n,
        "success_rate": float(succeeded.mean()),
        "median_steps_to_success": float(np.median(success_step[succeeded])) if succeeded.any() else float("nan"),
        "starts_on_manifold": float(on[0].mean()),
        "all": over(np.ones(n, bool)),
        "successful": over(succeeded),
    }


_PATH_STATISTICS = (
    "on_manifold_step_fraction",
    "on_manifold_length_fraction",
    "stays_on_manifold",
    "ends_on_manifold",
    "median_final_log_density",
    "median_final_nearest_distance",
)


def _on_moves(log_density_path, num_steps, threshold):
    """``on (T + 1, n)``: above the threshold; ``moves (T + 1, n)``: ``1 ≤ s ≤ num_steps``."""
    log_density_path = _real_array(log_density_path, "log_density_path", ndim=2)
    num_steps = _check_steps(num_steps, log_density_path.shape[0] - 1, log_density_path.shape[1])
    threshold = check_real(threshold, "threshold")
    steps = np.arange(log_density_path.shape[0])[:, None]
    moves = (steps >= 1) & (steps <= num_steps[None, :])
    return log_density_path > threshold, moves


def _real_array(values, name: str, *, ndim: int | None = None) -> np.ndarray:
    """``values`` as a NumPy array of real numbers (``ndim`` axes if given); errors name ``name``."""
    array = np.asarray(as_array(values, name))
    if not is_real_number_dtype(array.dtype):
        raise ValueError(f"{name} must hold real numbers; got dtype {array.dtype}.")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} axes; got shape {array.shape}.")
    return array


def _check_steps(num_steps, max_steps: int, n: int) -> np.ndarray:
    """``num_steps`` as ``n`` integers in ``[0, max_steps]`` (the paths' lengths)."""
    steps = np.asarray(as_array(num_steps, "num_steps"))
    if steps.shape != (n,) or not np.issubdtype(steps.dtype, np.integer):
        raise ValueError(f"num_steps must be {n} integers (one per path); got shape {steps.shape}, "
                         f"dtype {steps.dtype}.")
    if n and (steps.min() < 0 or steps.max() > max_steps):
        raise ValueError(f"num_steps must lie in [0, T = {max_steps}]; got values in [{steps.min()}, {steps.max()}].")
    return steps
