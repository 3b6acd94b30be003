"""Data parallelism with ``jax.sharding``: one mesh axis "data" over the local devices.

Batches carry a leading device axis (see :mod:`physnetjax.train.batching`); it is
sharded over the mesh with ``NamedSharding(mesh, P("data"))`` and the train state
is replicated. ``jax.jit`` then runs each device's slice where it lives and
all-reduces the loss sums and gradients — the same program on 1 or D devices.

Multi-host: call ``jax.distributed.initialize()`` first in every process; each
process then feeds its own ``jax.local_devices()`` with its own slice of the data
(a different ``--seed`` offset or split per process) and builds global arrays with
``jax.make_array_from_process_local_data``. The trainer here shards over the
devices of one process.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


def device_mesh(devices=None) -> Mesh:
    """A 1-D mesh named "data" over ``devices`` (default: all local devices)."""
    devices = jax.local_devices() if devices is None else devices
    return Mesh(np.asarray(devices), (AXIS,))


def shard_batch(tree, mesh: Mesh):
    """Put every leaf (leading axis = devices) on the mesh, split along that axis."""
    sharding = NamedSharding(mesh, PartitionSpec(AXIS))
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), tree)


def replicate(tree, mesh: Mesh):
    """Put every leaf on every device of the mesh."""
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), tree)


def shard_member_batch(tree, mesh: Mesh):
    """Like :func:`shard_batch` for ensemble batches, whose leaves are (K members, D devices, ...)."""
    sharding = NamedSharding(mesh, PartitionSpec(None, AXIS))
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, sharding), tree)
