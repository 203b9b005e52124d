"""Data parallelism over a ("data",) mesh of every device, on one or many hosts.

The batch is sharded along its first axis over the mesh; parameters and
optimizer state are replicated, or, with `config.sharding.fsdp`, their large
arrays are sharded over the same axis (`state_sharding`, FSDP-style: XLA
gathers a parameter where a step needs it whole). Each host feeds its own slice of the global
batch (`config.batch_size // jax.process_count()` examples, as the input
pipeline yields them), and `jax.make_array_from_process_local_data` assembles
the global array, so the same code runs on one CPU, on eight forced CPU
devices and on a pod.

Example:
  >>> import numpy as np
  >>> mesh = make_mesh()
  >>> x = np.zeros((4 * mesh.size, 2), np.float32)
  >>> batch = shard_batch({"x": x}, mesh)
  >>> batch["x"].shape == x.shape, batch["x"].sharding == data_sharding(mesh)
  (True, True)
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np

DATA_AXIS = "data"
Mesh = jax.sharding.Mesh
NamedSharding = jax.sharding.NamedSharding
PartitionSpec = jax.sharding.PartitionSpec


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A one-axis ("data",) mesh over `devices` (default: every device).

  `jax.devices()` lists the devices of each process contiguously, so each
  host's devices hold a contiguous block of the global batch.
  """
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Shards the leading (batch) axis over the mesh."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, PartitionSpec())


def fsdp_spec(shape: Tuple[int, ...], num_devices: int,
              min_size: int) -> PartitionSpec:
  """Shards the largest dimension that splits evenly, for arrays >= min_size.

  Example:
    >>> fsdp_spec((3, 64, 32), 8, min_size=1024)
    P(None, 'data', None)
    >>> fsdp_spec((3, 5), 8, min_size=1), fsdp_spec((64,), 8, min_size=1024)
    (P(), P())
  """
  if math.prod(shape) < min_size:
    return PartitionSpec()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % num_devices == 0:
      return PartitionSpec(*[DATA_AXIS if d == dim else None
                             for d in range(len(shape))])
  return PartitionSpec()


def state_sharding(abstract_state: Any, mesh: Mesh, fsdp: bool,
                   min_size: int = 2 ** 14) -> Any:
  """The sharding of each leaf of a training state.

  Args:
    abstract_state: the state, or its `jax.eval_shape` (leaves with .shape).
    mesh: the device mesh.
    fsdp: shard every leaf of >= `min_size` elements on its largest
      dimension divisible by the number of devices (the optimizer's moments
      have the parameters' shapes, so they are sharded alike); False
      replicates everything.
    min_size: the smallest array worth sharding.

  Returns:
    A pytree of `NamedSharding`s with the structure of `abstract_state`.
  """
  if not fsdp:
    return jax.tree.map(lambda _: replicated(mesh), abstract_state)
  return jax.tree.map(
      lambda x: NamedSharding(mesh, fsdp_spec(x.shape, mesh.size, min_size)),
      abstract_state)


def check_batch_size(batch_size: int, mesh: Mesh,
                     field: str = "config.batch_size") -> None:
  """Raises ValueError unless the global batch splits evenly over the mesh.

  Args:
    batch_size: the global batch size.
    mesh: the device mesh.
    field: the config field to name in the error.

  Raises:
    ValueError: if `batch_size` is not a multiple of the number of devices.
  """
  if batch_size % mesh.size:
    raise ValueError(
        f"{field}={batch_size} is not divisible by the {mesh.size} devices of "
        f"the mesh (over {jax.process_count()} processes); use a multiple of "
        f"{mesh.size}")


def shard_batch(local_batch: Mapping[str, np.ndarray],
                mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each host's slice into global arrays sharded on axis 0.

  Args:
    local_batch: this host's examples, each leaf [B // process_count, ...].
    mesh: the device mesh.

  Returns:
    The same keys, each a global `jax.Array` [B, ...] with `data_sharding`.
  """
  sharding = data_sharding(mesh)
  return {name: jax.make_array_from_process_local_data(sharding, value)
          for name, value in local_batch.items()}


def padded_size(batch_size: int, mesh: Mesh) -> int:
  """The smallest multiple of the number of devices >= `batch_size`."""
  return math.ceil(batch_size / mesh.size) * mesh.size


def shard_eval_batch(batch: Mapping[str, np.ndarray], mesh: Mesh,
                     size: int) -> Tuple[dict[str, jax.Array], int]:
  """Pads a full evaluation batch to `size` rows and shards it.

  Every host sees the same evaluation batch (one deterministic pass over the
  split); the batch is padded by repeating its first row, so padded rows are
  valid inputs, and each process contributes its contiguous block of rows.

  Args:
    batch: a whole evaluation batch, each leaf [n, ...] with n <= size.
    mesh: the device mesh.
    size: the padded global batch size, a multiple of `mesh.size` (one size
      for every batch of a split, so the evaluation step compiles once).

  Returns:
    (global batch of `size` rows sharded on axis 0, n): the caller keeps the
    first n rows of the per-example results.

  Raises:
    ValueError: if the batch has more than `size` rows or `size` does not
      split over the devices.
  """
  n = len(next(iter(batch.values())))
  if n > size:
    raise ValueError(f"evaluation batch has {n} rows; expected at most {size}")
  check_batch_size(size, mesh, field="padded evaluation batch size")
  per_process = size // jax.process_count()
  start = jax.process_index() * per_process
  sharding = data_sharding(mesh)
  sharded = {}
  for name, value in batch.items():
    padding = np.repeat(value[:1], size - n, axis=0)
    padded = np.concatenate([value, padding], axis=0)
    sharded[name] = jax.make_array_from_process_local_data(
        sharding, padded[start:start + per_process], padded.shape)
  return sharded, n
