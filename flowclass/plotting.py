"""Matplotlib figures for 2-D problems: decision regions and latent-space views."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from numpy.typing import ArrayLike

_CLASS_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def grid_over(
    x: np.ndarray, *, margin: float = 0.5, resolution: int = 300
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``resolution × resolution`` grid covering ``x`` (shape ``(N, 2)``) plus a margin.

    Returns ``(xx, yy, points)`` with ``points`` of shape ``(resolution², 2)``.

    >>> xx, yy, points = grid_over(np.array([[0.0, 0.0], [1.0, 2.0]]), resolution=3)
    >>> xx.shape, points.shape, points[0].tolist(), points[-1].tolist()
    ((3, 3), (9, 2), [-0.5, -0.5], [1.5, 2.5])
    """
    low, high = x.min(axis=0) - margin, x.max(axis=0) + margin
    xx, yy = np.meshgrid(np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution))
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], axis=-1).astype(np.float32)


def plot_decision_regions(
    ax: Axes, predict_proba: Callable[[np.ndarray], ArrayLike], x: np.ndarray, y: np.ndarray, *, title: str = ""
) -> None:
    """Shades ``p(class 1 | x)`` over the plane, draws the 0.5 contour and scatters ``(x, y)``.

    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> x, y = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]), np.array([0, 1, 0])
    >>> def predict_proba(points):  # any (N, 2) -> (N, K) function, e.g. a jitted model.apply
    ...     p1 = 1 / (1 + np.exp(-4 * (points[:, 1] - 0.5)))
    ...     return np.stack([1 - p1, p1], axis=-1)
    >>> plot_decision_regions(ax, predict_proba, x, y, title="p(class 1 | x)")
    >>> plt.close(fig)
    """
    xx, yy, points = grid_over(x)
    prob = np.asarray(predict_proba(points))[:, 1].reshape(xx.shape)
    ax.contourf(xx, yy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.35)
    ax.contour(xx, yy, prob, levels=[0.5], colors="k", linewidths=1.2)
    scatter_classes(ax, x, y, size=2)
    ax.set_title(title)
    ax.set_aspect("equal")


def scatter_classes(ax: Axes, x: np.ndarray, y: np.ndarray, *, size: float = 2, alpha: float = 0.5) -> None:
    """Scatter plot of 2-D points coloured by class.

    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> x, y = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]), np.array([0, 1, 0])
    >>> scatter_classes(ax, x, y)
    >>> len(ax.collections)  # one scatter per class
    2
    >>> plt.close(fig)
    """
    for k in np.unique(y):
        pts = x[y == k]
        ax.scatter(pts[:, 0], pts[:, 1], s=size, alpha=alpha, color=_CLASS_COLOURS[int(k) % 4], label=f"class {k}")


def plot_latent(ax: Axes, z: np.ndarray, y: np.ndarray, means: ArrayLike, *, title: str = "latent space") -> None:
    """Latent codes ``z = f(x)`` by class, with 1σ and 2σ circles around each class mean.

    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> x, y = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]), np.array([0, 1, 0])
    >>> plot_latent(ax, x, y, means=[[-1.0, 0.0], [1.0, 0.0]])
    >>> len(ax.patches)  # two circles per class
    4
    >>> plt.close(fig)
    """
    scatter_classes(ax, z, y)
    for k, mean in enumerate(np.asarray(means)):
        for radius in (1.0, 2.0):
            ax.add_patch(_circle(mean, radius, _CLASS_COLOURS[k % 4]))
        ax.plot(*mean, marker="x", color="k")
    ax.set_title(title)
    ax.set_aspect("equal")


def _circle(centre, radius, colour):
    from matplotlib.patches import Circle

    return Circle(centre, radius, fill=False, color=colour, linestyle="--", linewidth=1)
