"""Hostile and corrupt data files: each is read in a child process under a 512 MiB address-space
cap (``RLIMIT_AS``) and must end in a clear error, naming the file, within seconds.

The child loads ``flowclass/data/mnist.py`` by its path: the loader imports only NumPy and the
standard library (asserted below), so the cap measures the loader, not JAX (importing
``flowclass`` alone maps about 500 MiB of address space, NumPy 140 MiB). Before the loader read
files as a stream, several of these files cost gigabytes (see ``python tests/test_hostile_files.py
--measure``, which prints peak memory and time for this loader and for any other copy of it).
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LOADER = ROOT / "flowclass" / "data" / "mnist.py"
CAP = 512 * 2**20  # address space of each child, bytes
SECONDS = 10.0
MIB = 2**20
REAL_MNIST = [
    Path(d) / "mnist.pkl.gz" for d in (os.environ.get("FLOWCLASS_TEST_MNIST_DIR"), ROOT / ".ci-cache" / "mnist") if d
]
REAL_MNIST = next((p for p in REAL_MNIST if p.is_file()), None)

_CHILD = r"""
import importlib.util, json, resource, sys, time
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
spec = importlib.util.spec_from_file_location("loader_under_test", sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
call, args = sys.argv[3], json.loads(sys.argv[4])
start = time.perf_counter()
try:
    result = getattr(module, call)(*args)
    out = {"ok": True, "result": {k: {"x_shape": list(x.shape), "x_dtype": str(x.dtype), "x_min": float(x.min()),
                                      "x_max": float(x.max()), "x_head": x.reshape(len(x), -1)[0, :8].tolist(),
                                      "y_dtype": str(y.dtype), "y_min": int(y.min()), "y_max": int(y.max()),
                                      "y_head": y[:5].tolist()} for k, (x, y) in result.items()}
           if isinstance(result, dict) else {"shape": list(result.shape)}}
except BaseException as error:
    out = {"ok": False, "type": type(error).__name__, "mro": [c.__name__ for c in type(error).__mro__],
           "message": str(error)}
out["seconds"] = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status") if line.startswith("Vm"))
out["peak_rss_mib"] = int(status["VmHWM"].split()[0]) / 1024  # this process only (ru_maxrss survives exec)
out["peak_vm_mib"] = int(status["VmPeak"].split()[0]) / 1024
out["heavy_modules"] = sorted(m for m in ("jax", "flowclass", "tensorflow") if m in sys.modules)
print(json.dumps(out))
"""


def run_isolated(call: str, args: list, *, loader: Path = LOADER, cap: int = CAP, timeout: float = 120) -> dict:
    """Runs ``loader.call(*args)`` in a fresh Python under an address-space cap of ``cap`` bytes;
    returns the outcome (result summary or error type and message), its seconds and peak RSS."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(cap), str(Path(loader).resolve()), call, json.dumps([str(a) for a in args])],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd="/",
    )
    lines = proc.stdout.strip().splitlines()
    if not lines:
        return {
            "ok": False,
            "type": f"child died (exit {proc.returncode})",
            "mro": [],
            "message": proc.stderr[-2000:],
            "seconds": float("nan"),
            "peak_rss_mib": float("nan"),
            "peak_vm_mib": float("nan"),
            "heavy_modules": [],
        }
    return json.loads(lines[-1])


# ------------------------------------------------------------------ file builders


@lru_cache(maxsize=1)
def _zeros_member(size: int = 64 * MIB) -> bytes:
    """One gzip member holding ``size`` zero bytes (64 MiB -> 65 KB), built in 1 MiB chunks."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(MIB)
    return b"".join([packer.compress(chunk) for _ in range(size // MIB)] + [packer.flush()])


def _gzip_bomb(path: Path, prefix: bytes, zeros: int) -> Path:
    """``prefix`` then ``zeros`` zero bytes (a multiple of 64 MiB) as concatenated gzip members:
    1 GiB costs about 1 MB of file and no memory to write."""
    with open(path, "wb") as f:
        f.write(gzip.compress(prefix))
        for _ in range(zeros // (64 * MIB)):
            f.write(_zeros_member())
    return path


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _idx_header(*shape: int) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape)


def _write_idx_dir(directory: Path, *, n=(6, 4), size=((28, 28), (28, 28)), labels=None, n_labels=None, gz=True):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    for i, split in enumerate(("train", "test")):
        images = rng.integers(0, 256, (n[i], *size[i]), dtype=np.uint8)
        y = rng.integers(0, 10, n[i] if n_labels is None else n_labels[i], dtype=np.uint8)
        if labels is not None and split == "train":
            y = np.asarray(labels, np.uint8)
        for stem, array in zip(
            {
                "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
            }[split],
            (images, y),
            strict=True,
        ):
            data = _idx_bytes(array)
            (directory / (f"{stem}.gz" if gz else stem)).write_bytes(gzip.compress(data) if gz else data)
    return directory


def _parts(n=(5, 3, 2), x_dtype=np.float32, scale=1 / 256, y=None, x=None):
    """Train, valid and test ``(images, labels)``; ``x`` and ``y`` replace the training pair's."""
    rng = np.random.default_rng(1)
    parts = []
    for i, k in enumerate(n):
        images = (rng.integers(0, 256, (k, 784)) * scale).astype(x_dtype)
        labels = rng.integers(0, 10, k).astype(np.int64)
        parts.append((images if x is None or i else x, labels if y is None or i else y))
    return tuple(parts)


def _write_pickle(path: Path, obj, protocol=2) -> Path:
    path.write_bytes(gzip.compress(pickle.dumps(obj, protocol=protocol)))
    return path


class _Reduce:
    """Pickles as ``func(*args)`` (with ``state`` for BUILD): how a hostile pickle is written."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# each builder writes its files under the directory it is given and returns (call, args)


def ndarray_call(d: Path):
    """~150 bytes of gzip asking numpy.ndarray(shape, dtype) for 314 MB of uninitialised memory per array."""
    x, y = _Reduce(np.ndarray, ((100_000, 784), np.dtype("f4"))), _Reduce(np.ndarray, ((100_000,), np.dtype("i8")))
    return "read_mnist_pickle", [_write_pickle(d / "mnist.pkl.gz", ((x, y),) * 3)]


def reconstruct_with_shape(d: Path):
    """_reconstruct(ndarray, (10**6, 784), b'b'): numpy's own helper asked for uninitialised memory."""
    x = _Reduce(_reconstruct(), (np.ndarray, (1_000_000, 784), b"b"))
    return "read_mnist_pickle", [_write_pickle(d / "mnist.pkl.gz", ((x, x),) * 3)]


def data_shorter_than_shape(d: Path):
    """An array state claiming shape (10**6, 784) float32 with 16 bytes of data."""
    x = _Reduce(_reconstruct(), (np.ndarray, (0,), b"b"), (1, (1_000_000, 784), np.dtype("f4"), False, bytes(16)))
    return "read_mnist_pickle", [_write_pickle(d / "mnist.pkl.gz", ((x, x),) * 3)]


def pickle_bomb_declared(d: Path):
    """A pickle string declaring 2 GiB, then 1 GiB of zeros: a 1 MB gzip."""
    prefix = b"\x80\x02(T" + struct.pack("<i", 2**31 - 1)
    return "read_mnist_pickle", [_gzip_bomb(d / "mnist.pkl.gz", prefix, 1024 * MIB)]


def zeros_bomb(d: Path):
    """1 GiB of zero bytes in a 1 MB gzip."""
    return "read_mnist_pickle", [_gzip_bomb(d / "mnist.pkl.gz", b"", 1024 * MIB)]


def pickle_strings_past_cap(d: Path):
    """Eight honest 64 MiB pickle strings (512 MiB, all in the file): the pickle size cap's worst case."""
    path = d / "mnist.pkl.gz"
    with open(path, "wb") as f:
        f.write(gzip.compress(b"\x80\x02("))
        for _ in range(8):
            f.write(gzip.compress(b"T" + struct.pack("<i", 64 * MIB)))
            f.write(_zeros_member())
        f.write(gzip.compress(b"t."))
    return "read_mnist_pickle", [path]


def object_dtype(d: Path):
    """Pixels as Python objects (a list of 784 floats per image in the pickle)."""
    x = np.full((1, 784), 0.5, dtype=object)
    return "read_mnist_pickle", [_write_pickle(d / "mnist.pkl.gz", ((x, np.array([1])),) * 3)]


def truncated_pickle(d: Path):
    raw = pickle.dumps(_parts(), protocol=2)
    (d / "mnist.pkl.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    return "read_mnist_pickle", [d / "mnist.pkl.gz"]


def truncated_gzip(d: Path):
    (d / "mnist.pkl.gz").write_bytes(gzip.compress(pickle.dumps(_parts(), protocol=2))[:3000])
    return "read_mnist_pickle", [d / "mnist.pkl.gz"]


def trailing_data(d: Path):
    (d / "mnist.pkl.gz").write_bytes(gzip.compress(pickle.dumps(_parts(), protocol=2) + b"more"))
    return "read_mnist_pickle", [d / "mnist.pkl.gz"]


def too_many_opcodes(d: Path):
    (d / "mnist.pkl.gz").write_bytes(gzip.compress(b"\x80\x02(" + b"N" * 100_000 + b"t."))
    return "read_mnist_pickle", [d / "mnist.pkl.gz"]


def pickle_labels_out_of_range(d: Path):
    return "read_mnist_pickle", [_write_pickle(d / "mnist.pkl.gz", _parts(y=np.array([-1, 3, 735_420_920, 1, 2])))]


def pickle_labels_float(d: Path):
    return "read_mnist_pickle", [_write_pickle(d / "mnist.pkl.gz", _parts(y=np.array([0.0, 1.0, 2.0, 3.0, 4.0])))]


def pickle_length_mismatch(d: Path):
    return "read_mnist_pickle", [_write_pickle(d / "mnist.pkl.gz", _parts(y=np.array([0, 1, 2, 3])))]


def pickle_pixels_0_255(d: Path):
    return "read_mnist_pickle", [_write_pickle(d / "mnist.pkl.gz", _parts(scale=1.0))]


def pickle_pixels_nan(d: Path):
    return "read_mnist_pickle", [_write_pickle(d / "mnist.pkl.gz", _parts(x=np.full((5, 784), np.nan, np.float32)))]


def idx_bomb(d: Path):
    """A training-images header (60000, 28, 28) followed by 1 GiB of zeros: a 1 MB gzip."""
    return "read_idx", [_gzip_bomb(d / "train-images-idx3-ubyte.gz", _idx_header(60000, 28, 28), 1024 * MIB)]


def idx_huge_header(d: Path):
    """A 20-byte file whose header claims (2**32 - 1)**3 bytes."""
    (d / "images").write_bytes(_idx_header(2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(4))
    return "read_idx", [d / "images"]


def idx_big_header_short_data(d: Path):
    """A header claiming 157 MB (under the cap) over 100 bytes of data."""
    (d / "images.gz").write_bytes(gzip.compress(_idx_header(200_000, 28, 28) + bytes(100)))
    return "read_idx", [d / "images.gz"]


def idx_truncated_plain(d: Path):
    (d / "images").write_bytes(_idx_bytes(np.zeros((3, 28, 28)))[:-10])
    return "read_idx", [d / "images"]


def idx_truncated_gzip(d: Path):
    images = np.random.default_rng(3).integers(0, 256, (3, 28, 28))  # incompressible: 500 bytes are a part
    (d / "images.gz").write_bytes(gzip.compress(_idx_bytes(images))[:500])
    return "read_idx", [d / "images.gz"]


def idx_labels_out_of_range(d: Path):
    return "load_idx_dir", [_write_idx_dir(d / "data", labels=[0, 1, 17, 3, 4, 5])]


def idx_length_mismatch(d: Path):
    return "load_idx_dir", [_write_idx_dir(d / "data", n_labels=(5, 4))]


def idx_test_size_differs(d: Path):
    return "load_idx_dir", [_write_idx_dir(d / "data", size=((28, 28), (32, 32)))]


def idx_plain_and_gz_differ(d: Path):
    directory = _write_idx_dir(d / "data")
    packed = directory / "train-labels-idx1-ubyte.gz"
    other = np.frombuffer(gzip.decompress(packed.read_bytes()), np.uint8).copy()
    other[-1] = (other[-1] + 1) % 10
    (directory / "train-labels-idx1-ubyte").write_bytes(other.tobytes())
    return "load_idx_dir", [directory]


def idx_plain_and_gz_bomb(d: Path):
    """A plain file next to a .gz that inflates to 1 GiB: the comparison stops at the plain size."""
    directory = _write_idx_dir(d / "data", gz=False)
    plain = (directory / "train-images-idx3-ubyte").read_bytes()
    _gzip_bomb(directory / "train-images-idx3-ubyte.gz", plain, 1024 * MIB)
    return "load_idx_dir", [directory]


@dataclass(frozen=True)
class Case:
    build: Callable[[Path], tuple[str, list]]
    error: str  # a class in the error's MRO
    patterns: tuple[str, ...]  # in the message, besides the file's name


CASES = [
    Case(ndarray_call, "ValueError", ("numpy.ndarray", "uninitialised")),
    Case(reconstruct_with_shape, "ValueError", ("_reconstruct", r"\(0,\)")),
    Case(data_shorter_than_shape, "ValueError", ("needs 3136000000 bytes", "gives 16")),
    Case(pickle_bomb_declared, "ValueError", ("268435456 bytes allowed", "2147483647")),
    Case(zeros_bomb, "ValueError", (r"opcode '\\x00' at byte 0",)),
    Case(pickle_strings_past_cap, "ValueError", ("268435456 bytes allowed", "max_bytes")),
    Case(object_dtype, "ValueError", ("dtype 'O8'", "plain numeric")),
    Case(truncated_pickle, "ValueError", ("not a readable MNIST pickle", "short")),
    Case(truncated_gzip, "ValueError", ("corrupt or truncated",)),
    Case(trailing_data, "ValueError", ("followed by more data",)),
    Case(too_many_opcodes, "ValueError", ("more than 10000 opcodes",)),
    Case(pickle_labels_out_of_range, "ValueError", (r"train split", r"\[0, 10\)", "got -1 at index 0")),
    Case(pickle_labels_float, "ValueError", ("integer class indices", "float64")),
    Case(pickle_length_mismatch, "ValueError", ("expected 5 labels", r"got shape \(4,\)")),
    Case(pickle_pixels_0_255, "ValueError", (r"\[0, 1\]", "0-255")),
    Case(pickle_pixels_nan, "ValueError", ("finite",)),
    Case(idx_bomb, "ValueError", ("truncated or padded", "47040016 bytes", "has more")),
    Case(idx_huge_header, "ValueError", ("max_bytes", "refused before reading")),
    Case(idx_big_header_short_data, "ValueError", ("truncated or padded", "the file has 116")),
    Case(idx_truncated_plain, "ValueError", ("truncated or padded",)),
    Case(idx_truncated_gzip, "ValueError", ("corrupt or truncated",)),
    Case(idx_labels_out_of_range, "ValueError", (r"\[0, 10\)", "got 17 at index 2")),
    Case(idx_length_mismatch, "ValueError", ("expected 6 labels", r"got shape \(5,\)")),
    Case(idx_test_size_differs, "ValueError", ("32x32", "28x28")),
    Case(idx_plain_and_gz_differ, "ValueError", ("train-labels-idx1-ubyte.gz", "different data")),
    Case(idx_plain_and_gz_bomb, "ValueError", ("train-images-idx3-ubyte.gz", "different data")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.build.__name__ for c in CASES])
def test_hostile_file_ends_in_a_clear_error_in_bounded_memory(tmp_path, case):
    call, args = case.build(tmp_path)
    out = run_isolated(call, args)
    assert not out["ok"], f"{case.build.__name__} was accepted: {out}"
    assert case.error in out["mro"], out
    assert "MemoryError" not in out["mro"], out  # rejected by a check, not by the cap
    for pattern in case.patterns:
        assert re.search(pattern, out["message"]), (pattern, out["message"])
    named = Path(args[0]).name
    assert named in out["message"] or str(args[0]) in out["message"], out["message"]
    assert out["seconds"] < SECONDS, out
    assert out["heavy_modules"] == [], out


def test_bombs_are_small_files(tmp_path):
    """The bombs above are what the issue measured: about 1 MB of gzip inflating to 1 GiB."""
    _, (path,) = idx_bomb(tmp_path)
    assert path.stat().st_size < 1.2e6
    _, (path,) = ndarray_call(tmp_path)
    assert path.stat().st_size < 300


def test_uint8_pickle_is_scaled_like_the_idx_files(tmp_path):
    parts = _parts(x_dtype=np.uint8, scale=1)
    out = run_isolated("read_mnist_pickle", [_write_pickle(tmp_path / "mnist.pkl.gz", parts)])
    assert out["ok"], out
    train = out["result"]["train"]
    assert train["x_dtype"] == "float32" and 0.0 <= train["x_min"] and train["x_max"] <= 1.0
    np.testing.assert_allclose(train["x_head"], parts[0][0][0, :8] / np.float32(255.0), rtol=1e-6)
    assert train["y_dtype"] == "int32" and train["y_head"] == parts[0][1][:5].tolist()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles_numpy_writes_are_read_back(tmp_path, protocol):
    """Python 3 pickles (``_codecs.encode`` at protocol 2, bytes at 3+, frames at 4,
    ``_frombuffer`` at 5) and big-endian or Fortran-ordered arrays all load, bit for bit."""
    parts = list(_parts())
    parts[1] = (np.asfortranarray(parts[1][0]).astype(">f8"), parts[1][1].astype(">i2"))
    parts[2] = (parts[2][0], parts[2][1].astype(np.uint8))
    splits = _load_in_process(_write_pickle(tmp_path / "mnist.pkl.gz", tuple(parts), protocol))
    x = np.concatenate([parts[0][0], parts[1][0]]).astype(np.float32)
    np.testing.assert_array_equal(splits["train"][0].reshape(-1, 784), x)
    np.testing.assert_array_equal(splits["train"][1], np.concatenate([parts[0][1], parts[1][1]]))
    np.testing.assert_array_equal(splits["test"][0].reshape(-1, 784), parts[2][0])
    assert splits["test"][1].dtype == np.int32
    assert all(a.flags.writeable for split in splits.values() for a in split)


def _load_in_process(path):
    from flowclass.data import read_mnist_pickle

    return read_mnist_pickle(path)


def test_plain_file_next_to_an_identical_gz_loads(tmp_path):
    directory = _write_idx_dir(tmp_path / "data")
    for packed in directory.glob("*.gz"):
        packed.with_suffix("").write_bytes(gzip.decompress(packed.read_bytes()))
    out = run_isolated("load_idx_dir", [directory])
    assert out["ok"] and out["result"]["train"]["x_shape"] == [6, 28, 28, 1], out


def test_loader_imports_neither_jax_nor_flowclass(tmp_path):
    out = run_isolated("load_idx_dir", [_write_idx_dir(tmp_path / "data")])
    assert out["ok"] and out["heavy_modules"] == [], out
    assert out["peak_rss_mib"] < 100, out  # NumPy and a few small files


@pytest.mark.skipif(REAL_MNIST is None, reason="needs mnist.pkl.gz ($FLOWCLASS_TEST_MNIST_DIR or .ci-cache/mnist)")
def test_real_mnist_pickle_loads_in_bounded_memory():
    """The classic file (17 MB gzip, 220 MB of pickle) loads under a 1 GiB cap, peak RSS < 600 MiB
    (416 MiB measured; the loader before streaming needed 835 MiB)."""
    out = run_isolated("read_mnist_pickle", [REAL_MNIST], cap=1024 * MIB)
    assert out["ok"], out
    train, test = out["result"]["train"], out["result"]["test"]
    assert train["x_shape"] == [60000, 28, 28, 1] and test["x_shape"] == [10000, 28, 28, 1]
    assert test["y_head"] == [7, 2, 1, 0, 4] and (train["y_min"], train["y_max"]) == (0, 9)
    assert train["x_dtype"] == "float32" and train["x_min"] == 0.0 and train["x_max"] <= 1.0
    assert out["peak_rss_mib"] < 600, out


# -------------------------------------------------------------- TFDS: the loader's own error


def _fake_tfds(tmp_path, monkeypatch, body: str):
    package = tmp_path / "fake" / "tensorflow_datasets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path / "fake"))
    monkeypatch.delitem(sys.modules, "tensorflow_datasets", raising=False)


def test_tfds_not_installed(monkeypatch):
    from flowclass.data import DataNotFoundError
    from flowclass.data.mnist import load_tfds

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import raises ImportError
    with pytest.raises(DataNotFoundError, match=r"(?s)'mnist'.*TensorFlow Datasets.*pip install.*IDX files") as info:
        load_tfds("mnist")
    assert isinstance(info.value.__cause__, ImportError)


def test_tfds_with_a_missing_dependency(tmp_path, monkeypatch):
    """The issue's fresh install: tfds itself imports, one of its dependencies does not."""
    from flowclass.data import DataNotFoundError
    from flowclass.data.mnist import load_tfds

    _fake_tfds(tmp_path, monkeypatch, "import importlib_resources_not_installed_here\n")
    with pytest.raises(DataNotFoundError, match="importlib_resources_not_installed_here") as info:
        load_tfds("fashion_mnist")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_tfds_build_failure(tmp_path, monkeypatch):
    from flowclass.data import DataNotFoundError
    from flowclass.data.mnist import load_tfds

    _fake_tfds(
        tmp_path,
        monkeypatch,
        "def load(*a, **k):\n    raise RuntimeError('download failed: offline')\ndef as_numpy(x):\n    return x\n",
    )
    with pytest.raises(DataNotFoundError, match=r"building its 'train' split failed.*download failed: offline"):
        load_tfds("mnist")


def test_tfds_output_is_checked(tmp_path, monkeypatch):
    from flowclass.data.mnist import load_tfds

    body = (
        "import numpy as np\n"
        "def load(*a, **k):\n    return np.zeros((3, 28, 28, 1), np.uint8), np.array([0, 12, 1])\n"
        "def as_numpy(x):\n    return x\n"
    )
    _fake_tfds(tmp_path, monkeypatch, body)
    with pytest.raises(ValueError, match=r"TensorFlow Datasets' 'mnist' \(train split\).*got 12 at index 1"):
        load_tfds("mnist")


# ------------------------------------------------------------------- figures for the issue


def measure(loaders: list[Path], cap: int) -> None:
    """Prints peak RSS and seconds of every hostile case for each loader (``--measure``)."""
    import tempfile

    print(f"{'case':28s}" + "".join(f" | {p.name[:12]}: RSS, VM MiB, s, outcome" for p in loaders))
    for case in CASES:
        row = f"{case.build.__name__:28s}"
        for loader in loaders:
            with tempfile.TemporaryDirectory() as d:
                call, args = case.build(Path(d))
                out = run_isolated(call, args, loader=loader, cap=cap, timeout=600)
            outcome = "accepted" if out["ok"] else out["type"]
            row += f" | {out['peak_rss_mib']:6.0f} {out['peak_vm_mib']:6.0f} {out['seconds']:6.2f} {outcome[:22]:22s}"
        print(row, flush=True)


if __name__ == "__main__":  # python tests/test_hostile_files.py --measure [--cap GiB] [other_loader.py ...]
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--measure", action="store_true", required=True)
    parser.add_argument("--cap", type=float, default=0.5, help="address-space cap of each child, GiB")
    parser.add_argument("loaders", nargs="*", type=Path)
    options = parser.parse_args()
    measure(options.loaders or [LOADER], int(options.cap * 2**30))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_mutated_pickles_load_or_raise_value_error(tmp_path, protocol):
    """400 random byte changes and cuts of a small pickle: each loads checked arrays or raises a
    ValueError naming the file; nothing else escapes (no TypeError, KeyError, IndexError...)."""
    from flowclass.data import read_mnist_pickle

    raw = pickle.dumps(_parts(n=(2, 1, 1)), protocol=protocol)
    rng = np.random.default_rng(protocol)
    path = tmp_path / "mnist.pkl.gz"
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(400):
        data = bytearray(raw)
        for _ in range(rng.integers(1, 4)):
            data[rng.integers(len(data))] = rng.integers(256)
        if rng.random() < 0.3:
            data = data[: rng.integers(len(data))]
        path.write_bytes(gzip.compress(bytes(data)))
        try:
            splits = read_mnist_pickle(path)
        except ValueError as error:
            assert str(path) in str(error)
            outcomes["refused"] += 1
        else:
            for x, y in splits.values():
                assert x.dtype == np.float32 and np.all((x >= 0) & (x <= 1)) and np.all((y >= 0) & (y < 10))
            outcomes["loaded"] += 1
    assert outcomes["refused"] > 100 and outcomes["loaded"] > 10, outcomes  # both paths really taken
