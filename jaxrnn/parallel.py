"""Data-parallel training over local devices with ``jax.sharding``: the batch axis is split over a 1-D device
mesh, parameters and optimiser state are replicated, and the *same* jitted ``make_train_step`` runs unchanged.

Shapes: ``xs``, ``targets``, ``mask`` are ``(T, B, ...)`` (batch on axis 1); the carry is ``(B, H)`` per leaf
(batch on axis 0); ``B`` must be a multiple of the number of devices. Placing the inputs is all it takes: XLA
partitions the jitted step by the inputs' shardings, each device runs its slice of the batch, and the
gradient (a sum over the batch) is all-reduced so that every replica applies the same update. The loss and
the new parameters come back replicated; the new carry comes back sharded like the old one.

On several hosts, call ``jax.distributed.initialize()`` first and build the mesh over ``jax.devices()``
(all hosts' devices); see the README.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrnn.typing import Array, ArrayLike, Carry, Params, PyTree

BATCH_AXIS = "batch"
"""The mesh axis name the batch is split over."""


def make_mesh(devices: Iterable[Any] | None = None) -> Mesh:
    """A 1-D mesh named ``BATCH_AXIS`` over ``devices`` (default: all local devices, ``jax.local_devices()``)."""
    devices = jax.local_devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("make_mesh: no devices given")
    return Mesh(np.array(devices), (BATCH_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, batch_axis: int) -> NamedSharding:
    """Axis ``batch_axis`` split over the mesh, the other axes whole."""
    return NamedSharding(mesh, PartitionSpec(*(None,) * batch_axis, BATCH_AXIS))


def replicate(mesh: Mesh, tree: PyTree) -> PyTree:
    """``tree`` (parameters, optimiser state) copied to every device of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))


def shard_batch(mesh: Mesh, tree: PyTree, *, batch_axis: int) -> PyTree:
    """Every leaf of ``tree`` split along ``batch_axis`` over ``mesh``; the batch must divide evenly."""
    n = mesh.devices.size
    for leaf in jax.tree.leaves(tree):
        shape = np.shape(leaf)
        if len(shape) <= batch_axis or shape[batch_axis] % n:
            raise ValueError(
                f"shard_batch: an array of shape {shape} has no batch axis {batch_axis} divisible "
                f"by the {n} devices; use a global batch that is a multiple of {n}"
            )
    return jax.device_put(tree, batch_sharded(mesh, batch_axis))


def shard_train_inputs(
    mesh: Mesh,
    params: Params,
    opt_state: PyTree,
    carry: Carry,
    xs: PyTree,
    targets: ArrayLike,
    mask: ArrayLike | None = None,
) -> tuple[Params, PyTree, Carry, PyTree, Array, Array | None]:
    """The arguments of a ``make_train_step`` step, placed for data parallelism: parameters and optimiser
    state replicated, ``carry`` split on axis 0, ``xs``/``targets``/``mask`` on axis 1 (time-major)."""
    return (
        replicate(mesh, params),
        replicate(mesh, opt_state),
        shard_batch(mesh, carry, batch_axis=0),
        shard_batch(mesh, xs, batch_axis=1),
        shard_batch(mesh, targets, batch_axis=1),
        None if mask is None else shard_batch(mesh, mask, batch_axis=1),
    )
