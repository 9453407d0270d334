"""Data-parallel placement: one mesh axis ``'data'`` over devices; batches split, the rest replicated.

The same jitted step runs on 1 CPU, 8 TPU cores, or many hosts (after
``jax.distributed.initialize()``): XLA partitions the computation from the shardings.
On a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (set before importing
jax) splits one machine into 2 devices, which keeps both cores busy on convolutions.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``'data'`` over ``devices`` (default: all devices).

    >>> mesh = data_mesh()
    >>> mesh.axis_names, mesh.devices.size == jax.device_count()
    (('data',), True)
    """
    devices = jax.devices() if devices is None else devices
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
    """Raises ``ValueError`` unless ``batch_size`` splits evenly over the mesh's devices.

    >>> check_divisible(128, data_mesh(jax.devices()[:1]))  # fine: returns None
    """
    devices = mesh.devices.size
    if batch_size % devices:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of devices ({devices}).")
