"""Data-parallel placement: one mesh axis ``'data'`` over devices; batches split, the rest replicated.

The same jitted step runs on 1 CPU, 8 TPU cores, or many hosts (after
``jax.distributed.initialize()``): XLA partitions the computation from the shardings.
On a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (set before importing
jax) splits one machine into 2 devices; whether that is faster than one depends on the model and
jaxlib (``flowclass.runtime.DEFAULT_HOST_DEVICES`` gives the measurements).
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from flowclass._validation import check_positive_int

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``'data'`` over ``devices`` (default: all devices).

    >>> mesh = data_mesh()
    >>> mesh.axis_names, mesh.devices.size == jax.device_count()
    (('data',), True)
    """
    devices = jax.devices() if devices is None else devices
    if isinstance(devices, (str, bytes)) or not hasattr(devices, "__len__") or len(devices) == 0 or not all(
        isinstance(d, jax.Device) for d in devices
    ):
        raise ValueError(f"devices must be a non-empty sequence of jax.Device (e.g. jax.devices()); got {devices!r}.")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Splits the leading (batch) axis over the mesh.

    >>> batch = jax.device_put(np.zeros((8, 2)), batch_sharding(data_mesh()))
    >>> sum(shard.data.shape[0] for shard in batch.addressable_shards)  # one slice per device
    8
    """
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """The same full copy on every device.

    >>> weights = jax.device_put(np.ones((2, 2)), replicated(data_mesh()))
    >>> all(shard.data.shape == (2, 2) for shard in weights.addressable_shards)
    True
    """
    return NamedSharding(mesh, PartitionSpec())


def check_divisible(batch_size: int, mesh: Mesh) -> None:
    """Raises ``ValueError`` unless ``batch_size`` (a positive integer) splits evenly over the mesh's devices;
    ``TypeError`` if ``mesh`` is not a :class:`jax.sharding.Mesh`.

    >>> check_divisible(128, data_mesh(jax.devices()[:1]))  # fine: returns None
    """
    check_positive_int(batch_size, "batch_size")
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh (flowclass.sharding.data_mesh()); "
                        f"got {type(mesh).__name__}.")
    devices = mesh.devices.size
    if batch_size % devices:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of devices ({devices}).")
