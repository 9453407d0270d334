"""Data: loaders return NumPy arrays (tabular ``(N, D)`` and images NHWC, float32; labels int32).

Nothing here imports a model.
"""

from flowclass.data.labels import UNLABELLED, balanced_label_subset, hide_labels
from flowclass.data.mnist import (
    DataNotFoundError,
    load_idx_dir,
    load_image_dataset,
    read_idx,
    read_mnist_pickle,
    write_idx,
)
from flowclass.data.moons import (
    bayes_labels,
    bayes_predict,
    make_moons,
    moons_class_log_density,
    moons_log_density,
    moons_splits,
)
from flowclass.data.noise import GaussianNoise
from flowclass.data.pixels import ImagePipeline, image_pipeline
from flowclass.data.split import train_val_split
from flowclass.runtime import default_cache_dir  # the cache of the Bayes labels, and of compiled programs

__all__ = [
    "UNLABELLED",
    "DataNotFoundError",
    "GaussianNoise",
    "ImagePipeline",
    "balanced_label_subset",
    "bayes_labels",
    "default_cache_dir",
    "hide_labels",
    "image_pipeline",
    "load_idx_dir",
    "load_image_dataset",
    "read_idx",
    "read_mnist_pickle",
    "bayes_predict",
    "make_moons",
    "moons_class_log_density",
    "moons_log_density",
    "moons_splits",
    "train_val_split",
    "write_idx",
]
