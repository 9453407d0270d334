"""Data-parallel placement: one mesh axis ``'data'`` over devices; batches split, the rest replicated.

The same jitted step runs on 1 CPU, 8 TPU cores, or many hosts (after
``jax.distributed.initialize()``): XLA partitions the computation from the shardings.
On a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (set before importing
jax) splits one machine into 2 devices, which keeps both cores busy on convolutions.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``'data'`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Splits the leading (batch) axis over the mesh."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """The same full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def check_divisible(batch_size: int, mesh: Mesh) -> None:
    devices = mesh.devices.size
    if batch_size % devices:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of devices ({devices}).")
