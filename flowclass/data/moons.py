"""Two moons: the slides' splits and the true class densities.

``sklearn.datasets.make_moons`` places class 0 on the upper half circle
``m_0(t) = (cos t, sin t)`` and class 1 on the lower one ``m_1(t) = (1 − cos t, ½ − sin t)``,
``t ∈ [0, π]`` evenly spaced, and adds ``N(0, σ² I)`` noise, with equal class sizes. So

    p(x | c) = (1/π) ∫_0^π N(x; m_c(t), σ² I) dt,

which we integrate with the midpoint rule on ``num_nodes`` nodes. The Bayes-optimal
classifier is ``argmax_c p(x | c)`` (equal priors): no classifier can beat its accuracy
in expectation. :func:`bayes_labels` caches its labels on disk, keyed by the points' content.

Every function checks its arguments (counts positive integers, ``noise`` a finite number, ``x``
a non-empty finite ``(N, 2)`` array of real numbers, lists accepted) and raises ``ValueError``
(``TypeError`` for ``None`` or a string where an array belongs) naming the argument.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from flowclass._validation import as_array, check_int, check_positive_int, check_real, is_real_number_dtype


def make_moons(n_samples: int, noise: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """``sklearn.datasets.make_moons`` as ``float32`` inputs and ``int32`` labels.

    >>> x, y = make_moons(100, noise=0.1, random_state=0)
    >>> x.shape, x.dtype, y.dtype, int(y.sum())
    ((100, 2), dtype('float32'), dtype('int32'), 50)
    """
    from sklearn.datasets import make_moons as sk_make_moons

    check_positive_int(n_samples, "n_samples")
    noise = check_real(noise, "noise", minimum=0.0)
    if random_state is not None:
        random_state = check_int(random_state, "random_state", minimum=0)
    x, y = sk_make_moons(int(n_samples), noise=noise, random_state=random_state)
    return x.astype(np.float32), y.astype(np.int32)


def moons_splits(
    noise: float, *, n_samples: int = 10_000, n_train: int = 8_500, random_state: int = 170
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The slides' data: ``make_moons(10000, noise, random_state=170)``, first 8500 for
    training, the remaining 1500 for test. Returns ``(x_train, y_train), (x_test, y_test)``.

    >>> (x, y), (x_test, y_test) = moons_splits(noise=0.1)
    >>> x.shape, x_test.shape
    ((8500, 2), (1500, 2))

    Raises:
      ValueError: as :func:`make_moons`, and for ``n_train`` not an integer in ``[1, n_samples)``.
    """
    check_positive_int(n_samples, "n_samples")
    n_train = check_int(n_train, "n_train", minimum=1)
    if n_train >= n_samples:
        raise ValueError(f"n_train must be below n_samples = {n_samples} (the rest is the test set); got {n_train}.")
    x, y = make_moons(n_samples, noise, random_state)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


@jax.jit
def _class_log_density(x: jnp.ndarray, noise: float, t: jnp.ndarray) -> jnp.ndarray:
    def per_class(centres):  # centres (M, 2) -> (N,)
        sq = jnp.sum((x[:, None, :] - centres[None]) ** 2, axis=-1)
        return jax.nn.logsumexp(-0.5 * sq / noise**2, axis=-1)

    upper = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1)
    lower = jnp.stack([1.0 - jnp.cos(t), 0.5 - jnp.sin(t)], axis=-1)
    log_norm = -math.log(t.shape[0]) - jnp.log(2.0 * jnp.pi * noise**2)
    return jnp.stack([per_class(upper), per_class(lower)], axis=-1) + log_norm


def _check_points(x: ArrayLike) -> np.ndarray:
    """``x`` as a NumPy array (its dtype kept: the cache key has it) after checking it is a finite ``(N, 2)`` batch."""
    x = np.asarray(as_array(x, "x"))
    if x.ndim != 2 or x.shape[1] != 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty array of shape (N, 2); got shape {x.shape}.")
    if not is_real_number_dtype(x.dtype):
        raise ValueError(f"x must hold real numbers; got dtype {x.dtype}.")
    finite = np.isfinite(x.astype(np.float64))
    if not finite.all():
        raise ValueError(f"x must be finite; got {int(np.sum(~finite))} NaN/inf value(s).")
    return x


def _check_noise(noise: float) -> float:
    try:
        return check_real(noise, "noise", minimum=0.0, open_min=True)
    except ValueError:
        raise ValueError(f"noise must be a finite number > 0 (the moons density needs noise > 0); "
                         f"got {noise!r}.") from None


def _check_count(value: int, name: str) -> int:
    check_positive_int(value, name)
    return int(value)


def moons_class_log_density(x: ArrayLike, noise: float, *, num_nodes: int = 2048, chunk: int = 8192) -> np.ndarray:
    """True ``log p(x | c)`` of ``make_moons`` data for ``c ∈ {0, 1}``, shape ``(N, 2)``.

    Raises:
      ValueError: ``x`` not a non-empty finite ``(N, 2)`` array of real numbers, ``noise`` not a
        finite number ``> 0``, ``num_nodes`` or ``chunk`` not a positive integer.

    >>> points = np.array([[0.0, 1.0], [1.0, -0.5]])  # the tops of the upper and lower moon
    >>> moons_class_log_density(points, noise=0.1).argmax(-1).tolist()
    [0, 1]
    """
    noise, num_nodes = _check_noise(noise), _check_count(num_nodes, "num_nodes")
    chunk = _check_count(chunk, "chunk")
    x = _check_points(x).astype(np.float64)
    t = jnp.asarray((np.arange(num_nodes) + 0.5) * np.pi / num_nodes, jnp.float32)
    pieces = []
    for start in range(0, len(x), chunk):
        piece = np.zeros((chunk, 2), np.float32)  # pad so every chunk has one compiled shape
        rows = x[start : start + chunk]
        piece[: len(rows)] = rows
        pieces.append(np.asarray(_class_log_density(jnp.asarray(piece), noise, t))[: len(rows)])
    return np.concatenate(pieces).astype(np.float64)


def moons_log_density(x: ArrayLike, noise: float, **kwargs: Any) -> np.ndarray:
    """True marginal ``log p(x) = log ½ (p(x | 0) + p(x | 1))``, shape ``(N,)``.

    >>> log_p = moons_log_density(np.array([[0.0, 1.0], [0.5, 0.25], [3.0, 3.0]]), noise=0.1)
    >>> bool(log_p[0] > log_p[1] > log_p[2])  # on a moon, between the moons, far away
    True
    """
    per_class = moons_class_log_density(x, noise, **kwargs)
    return np.logaddexp(per_class[:, 0], per_class[:, 1]) - math.log(2.0)


def bayes_predict(x: ArrayLike, noise: float, **kwargs: Any) -> np.ndarray:
    """Bayes-optimal labels ``argmax_c p(x | c)`` for ``make_moons`` data.

    >>> bayes_predict(np.array([[0.0, 1.0], [1.0, -0.5]]), noise=0.1).tolist()
    [0, 1]
    """
    return np.argmax(moons_class_log_density(x, noise, **kwargs), axis=-1).astype(np.int32)


_CACHE_FORMAT = b"flowclass.moons.bayes_labels/1"  # bump when the labels' meaning changes


def _cache_key(x: np.ndarray, noise: float, num_nodes: int) -> str:
    digest = hashlib.sha256(_CACHE_FORMAT)
    for part in (str(x.dtype), repr(x.shape), float(noise).hex(), str(num_nodes)):
        digest.update(part.encode() + b"\0")
    digest.update(np.ascontiguousarray(x).tobytes())
    return digest.hexdigest()


def _read_labels(path: Path, n: int) -> np.ndarray | None:
    """The labels stored at ``path`` if they are ``n`` int32 values in {0, 1}; else ``None``.
    The header is checked before the data are read, so a hostile file costs no memory."""
    try:
        stored = np.load(path, mmap_mode="r", allow_pickle=False)
        if not isinstance(stored, np.ndarray) or stored.shape != (n,) or stored.dtype != np.int32:
            return None
        labels = np.array(stored)
        del stored  # closes the memory map
    except (OSError, ValueError, EOFError):
        return None
    return labels if np.all((labels == 0) | (labels == 1)) else None


def _write_atomically(path: Path, labels: np.ndarray) -> None:
    """Writes ``labels`` to ``path`` through a temporary file in the same directory and
    ``os.replace``: readers see the old file or the whole new one, never a partial write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, labels, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def bayes_labels(
    x: ArrayLike, noise: float, *, cache_dir: str | os.PathLike[str] | None = None, num_nodes: int = 2048
) -> np.ndarray:
    """The exact Bayes-optimal labels :func:`bayes_predict` of ``make_moons`` points ``x``
    (shape ``(N, 2)``), as ``int32`` of shape ``(N,)``, optionally cached on disk.

    The labels depend only on the points, the noise ``σ`` and the quadrature (``num_nodes``
    midpoint nodes), so with ``cache_dir`` they are stored there as
    ``moons_bayes_noise<σ>_n<N>_<hash>.npy``, ``<hash>`` a SHA-256 of ``x``'s bytes, shape and
    dtype, ``σ`` and ``num_nodes``: a later call with the same arguments reads them instead of
    integrating (seconds for 10⁵ points on a CPU). The file is written atomically (a temporary
    file in ``cache_dir``, then ``os.replace``) and checked when read (shape ``(N,)``, dtype
    ``int32``, values in {0, 1}); a truncated, corrupt or mismatching file is recomputed and
    replaced. A cache that cannot be written only warns (``RuntimeWarning``): the labels are
    returned all the same. :func:`flowclass.runtime.default_cache_dir` is the usual ``cache_dir``.

    Raises:
      ValueError: ``x`` is not a non-empty, finite ``(N, 2)`` array of real numbers, ``noise`` not
        a finite number ``> 0``, or ``num_nodes`` not a positive integer.

    >>> import tempfile
    >>> x, y = make_moons(200, noise=0.2, random_state=0)
    >>> with tempfile.TemporaryDirectory() as cache:
    ...     labels = bayes_labels(x, 0.2, cache_dir=cache)      # integrates and stores
    ...     again = bayes_labels(x, 0.2, cache_dir=cache)       # reads the file
    ...     names = [p.name[:21] for p in Path(cache).iterdir()]
    >>> labels.dtype, labels.shape, bool((labels == again).all()), names
    (dtype('int32'), (200,), True, ['moons_bayes_noise0.2_'])
    >>> float(np.mean(labels == y)) > 0.95
    True
    """
    x = _check_points(x)
    noise, num_nodes = _check_noise(noise), _check_count(num_nodes, "num_nodes")
    if cache_dir is None:
        return bayes_predict(x, noise, num_nodes=num_nodes)
    path = Path(cache_dir) / f"moons_bayes_noise{noise:g}_n{len(x)}_{_cache_key(x, noise, num_nodes)[:32]}.npy"
    if path.is_file():
        cached = _read_labels(path, len(x))
        if cached is not None:
            return cached
    labels = bayes_predict(x, noise, num_nodes=num_nodes)
    try:
        _write_atomically(path, labels)
    except OSError as error:
        warnings.warn(f"could not cache the Bayes labels in {path}: {error}", RuntimeWarning, stacklevel=2)
    return labels
