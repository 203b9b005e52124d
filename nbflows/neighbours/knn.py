"""Exact k nearest neighbours (squared Euclidean), blockwise on every JAX device.

For a block of queries q (rows) and the database points y, the ranking
score of y for q is

  s(q, y) = 2 q.y - ||y||^2 = ||q||^2 - ||q - y||^2,

one matrix product per chunk of the database (the bias is added inside the
reduction that follows, at no extra pass). Selecting the k largest of each
row directly costs XLA about as much as the product itself, so it is done in
two stages:

  1. The database is cut into groups of g consecutive points, and only each
     group's maximum score is kept: memory [block, N / g], never N x N.
  2. The k nearest points lie in the k groups with the largest maxima (a
     point in any other group is beaten by the maxima of k groups, so by k
     points). Those k g candidates are scored again exactly and the top k
     of them is the answer.

With `exclude_self`, the query's own point may inflate its group's maximum,
so k + 1 groups are kept (the true top-k groups are among them) and the point
itself is masked in stage 2. Padding points have ||y||^2 = 1e30, so they
never win.

Query blocks are spread over all of JAX's devices (`jax.shard_map`); the
database is replicated. Memory per device is O(block (N / g + k g D) +
block chunk), independent of the number of queries.

`search="approx"` scores each query block against the whole database at
once and keeps `jax.lax.approx_max_k(scores, k, recall_target)`, which TPUs
fuse with the product (the reduction is the expensive part there). On CPU
and GPU `approx_max_k` falls back to an exact top-k, so "approx" returns the
exact neighbours there (recall 1.0, tested); its recall on a TPU is the
`recall_target` XLA aims for, not measured here. Its memory is
O(block N) per device.

`backend="faiss"` runs the same search with faiss' exact IndexFlatL2 (on
every GPU faiss sees, else on the CPU), for users who already run faiss; it
returns the same neighbour sets (up to ties), nearest first, and the same
distances up to float32 rounding. faiss is not an nbflows requirement
(`pip install faiss-cpu` or `faiss-gpu`).

Example:
  >>> import numpy as np
  >>> from nbflows.neighbours import knn
  >>> x = np.array([[0.], [1.], [3.], [7.]], np.float32)
  >>> indices, distances = knn.knn(x, 1, progress=False)
  >>> indices[:, 0].tolist(), distances[:, 0].tolist()
  ([1, 0, 1, 2], [1.0, 1.0, 4.0, 16.0])
"""
from __future__ import annotations

from concurrent import futures
import functools
import os
from typing import List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from jax import lax
from jax.sharding import Mesh, PartitionSpec

# Squared norm given to padding points: far from everything, and finite.
_FAR = 1e30
SEARCHES = ("exact", "approx")
BACKENDS = ("jax", "faiss")


def knn(database: np.ndarray, k: int, *, queries: Optional[np.ndarray] = None,
        database_labels: Optional[np.ndarray] = None,
        query_labels: Optional[np.ndarray] = None, exclude_self: bool = True,
        block_size: int = 256, chunk_size: int = 2048, group_size: int = 16,
        progress: bool = True, devices: Optional[Sequence[jax.Device]] = None,
        search: str = "exact", recall_target: float = 0.95,
        backend: str = "jax", host_threads: Optional[int] = None
        ) -> Tuple[np.ndarray, np.ndarray]:
  """The k nearest database points of each query, exactly.

  Args:
    database: float `[N, D]` points searched.
    k: number of neighbours.
    queries: float `[Q, D]`; None finds the neighbours of the database's own
      points.
    database_labels: int `[N]`; if given, a query's neighbours are restricted
      to database points with its label.
    query_labels: int `[Q]` labels of `queries` (needed with
      `database_labels` when `queries` is given).
    exclude_self: with `queries=None`, leave each point out of its own
      neighbours (duplicates of it still count). Ignored otherwise.
    block_size: queries per block and device.
    chunk_size: database points per matrix product (the product's
      `4 block_size chunk_size` bytes should fit in the cache).
    group_size: g, database points per group in the first stage.
    progress: show a tqdm progress bar.
    devices: JAX devices to spread the query blocks over (default: all).
    search: "exact" (two stages, above) or "approx" (`lax.approx_max_k`,
      for TPUs; exact on CPU and GPU).
    recall_target: the recall "approx" asks of `approx_max_k`.
    host_threads: query blocks searched at once, each from its own host
      thread (default: the CPU cores this process may use when `devices`
      are CPUs, else 1).
    backend: "jax" (above) or "faiss" (IndexFlatL2; exact search only, and
      the block, chunk, group and device arguments do not apply).

  Returns:
    `(indices, distances)`: int32 `[Q, k]` indices into `database` and
    float32 `[Q, k]` squared Euclidean distances, nearest first.

  Raises:
    ValueError: for mismatched shapes, or if some query has fewer than `k`
      eligible database points (same label, itself excluded); the message
      names both numbers; for an unknown `search` or `backend`, or
      `search="approx"` with faiss.
    ImportError: for `backend="faiss"` without faiss installed.
  """
  if search not in SEARCHES:
    raise ValueError(f"search={search!r}; expected one of {SEARCHES}")
  if backend not in BACKENDS:
    raise ValueError(f"backend={backend!r}; expected one of {BACKENDS}")
  if backend == "faiss" and search != "exact":
    raise ValueError(f"search={search!r} with backend='faiss'; faiss "
                     "IndexFlatL2 is exact, so search must be 'exact'")
  database = np.asarray(database, np.float32)
  self_join = queries is None
  queries = database if self_join else np.asarray(queries, np.float32)
  if (database.ndim != 2 or queries.ndim != 2 or
      queries.shape[1] != database.shape[1]):
    raise ValueError(f"database has shape {database.shape} and queries "
                     f"{queries.shape}; expected [N, D] and [Q, D]")
  if k < 1:
    raise ValueError(f"k={k}; expected k >= 1")
  groups = _label_groups(len(queries), len(database), database_labels,
                         query_labels, self_join)
  excluded = int(self_join and exclude_self)
  for q_rows, db_rows, label in groups:
    if k > len(db_rows) - excluded:
      where = "" if label is None else f" with label {label}"
      also = " (the point itself excluded)" if excluded else ""
      raise ValueError(
          f"k={k} neighbours requested, but there are only "
          f"{len(db_rows) - excluded} eligible database points{where}{also}")
  if backend == "faiss":
    return _faiss_search(database, queries, groups, k, excluded)

  mesh = Mesh(np.array(devices or jax.devices()), ("devices",))
  # Powers of two throughout: few distinct shapes, so few compilations.
  largest = max(len(rows) for _, rows, _ in groups)
  chunk = min(chunk_size, _power_of_two(largest))
  capacity = -(-largest // chunk) * chunk      # one shape for every label
  kept = k + excluded                          # groups kept in stage 1
  # At least `kept` groups: g = the largest power of two <= capacity / kept.
  group = min(group_size, chunk, 1 << ((capacity // kept).bit_length() - 1))
  q_largest = max(len(rows) for rows, _, _ in groups)
  block = min(block_size, _power_of_two(-(-q_largest // mesh.size)))
  if search == "approx":
    step = _approx_step(mesh, block, k, float(recall_target))
  else:
    step = _search_step(mesh, block, chunk, group, k, kept)

  indices = np.zeros((len(queries), k), np.int32)
  distances = np.zeros((len(queries), k), np.float32)
  total = sum(-(-len(q) // block) for q, _, _ in groups)
  host_threads = host_threads or default_host_threads(mesh.devices.ravel())
  with tqdm.tqdm(total=total, unit="block", disable=not progress,
                 desc="k nearest neighbours") as bar, \
      futures.ThreadPoolExecutor(host_threads) as pool:
    for q_rows, db_rows, _ in groups:
      y = database[db_rows]
      points = np.zeros((capacity, y.shape[1]), np.float32)
      points[:len(y)] = y
      norms = np.full(capacity, _FAR, np.float32)
      norms[:len(y)] = np.einsum("nd,nd->n", y, y)
      points, norms = jax.device_put((points, norms))
      num_chunks = np.int32(-(-len(y) // chunk))
      q = queries[q_rows]
      own = np.arange(len(q), dtype=np.int32) if excluded else np.full(
          len(q), -1, np.int32)
      rows = block * mesh.size
      search_rows = functools.partial(_search_rows, step, q, own, points,
                                      norms, num_chunks, rows)
      found, scores = [], []
      # On CPU, XLA runs one query block's loop of products mostly on one
      # core; `host_threads` blocks at once keep every core busy.
      starts = range(0, len(q), rows)
      for start, (i, s) in zip(starts, pool.map(search_rows, starts)):
        found.append(i)
        scores.append(s)
        bar.update(min(mesh.size, -(-(len(q) - start) // block)))
      found = np.concatenate(found)[:len(q)]
      scores = np.concatenate(scores)[:len(q)]
      indices[q_rows] = db_rows[found]
      # ||q - y||^2 = ||q||^2 - s, clipped at 0 against rounding.
      distances[q_rows] = np.maximum(
          np.einsum("nd,nd->n", q, q)[:, None] - scores, 0.0)
  return indices, distances


def default_host_threads(devices: Sequence[jax.Device]) -> int:
  """`knn`'s default `host_threads`: the CPU cores usable on CPU, else 1."""
  return len(os.sched_getaffinity(0)) if devices[0].platform == "cpu" else 1


def _faiss_search(database, queries, groups, k: int, excluded: int
                  ) -> Tuple[np.ndarray, np.ndarray]:
  """`knn` with faiss IndexFlatL2, one index per label group."""
  try:
    import faiss  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise ImportError(
        "knn backend 'faiss' needs faiss, which is not an nbflows "
        "requirement: `pip install faiss-cpu` (or faiss-gpu)") from error
  indices = np.zeros((len(queries), k), np.int32)
  distances = np.zeros((len(queries), k), np.float32)
  for q_rows, db_rows, _ in groups:
    index = faiss.IndexFlatL2(database.shape[1])
    if faiss.get_num_gpus() > 0:
      index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(database[db_rows]))
    d, i = index.search(np.ascontiguousarray(queries[q_rows]), k + excluded)
    if excluded:
      # Drop each point itself, or the last one where ties at distance 0
      # pushed it out of the k + 1 found.
      own = i == np.arange(len(q_rows))[:, None]                  # [Q, k+1]
      own[:, -1] |= ~own.any(axis=1)
      keep = ~own
      i, d = i[keep].reshape(-1, k), d[keep].reshape(-1, k)
    indices[q_rows] = db_rows[i]
    distances[q_rows] = np.maximum(d, 0.0)
  return indices, distances


def _search_rows(step, q, own, points, norms, num_chunks, rows: int,
                 start: int) -> Tuple[np.ndarray, np.ndarray]:
  """`step` on the `rows` queries from `start` (padded): host (indices, scores)."""
  return jax.device_get(step(_pad_rows(q[start:start + rows], rows),
                             _pad_rows(own[start:start + rows], rows, -1),
                             points, norms, num_chunks))


def _label_groups(num_queries, num_database, database_labels, query_labels,
                  self_join) -> List[Tuple[np.ndarray, np.ndarray, object]]:
  """[(query rows, database rows, label)]: one search per label (or one)."""
  if database_labels is None:
    return [(np.arange(num_queries), np.arange(num_database), None)]
  if self_join:
    query_labels = database_labels
  elif query_labels is None:
    raise ValueError("database_labels given without query_labels; both are "
                     "needed to restrict neighbours to the same label")
  query_labels = np.asarray(query_labels)
  database_labels = np.asarray(database_labels)
  if query_labels.shape != (num_queries,) or database_labels.shape != (
      num_database,):
    raise ValueError(f"labels have shapes {query_labels.shape} (queries) and "
                     f"{database_labels.shape} (database); expected "
                     f"({num_queries},) and ({num_database},)")
  return [(np.flatnonzero(query_labels == c),
           np.flatnonzero(database_labels == c), c)
          for c in np.unique(query_labels)]


def _power_of_two(n: int) -> int:
  """The smallest power of two >= max(n, 8)."""
  return 1 << max(3, (int(n) - 1).bit_length())


def _pad_rows(x: np.ndarray, rows: int, value=0) -> np.ndarray:
  if len(x) == rows:
    return x
  out = np.full((rows, *x.shape[1:]), value, x.dtype)
  out[:len(x)] = x
  return out


@functools.lru_cache(maxsize=None)
def _search_step(mesh: Mesh, block: int, chunk: int, group: int, k: int,
                 kept: int):
  """The jitted step: every device finds the top-k of one query block.

  Arguments of the step: queries [devices * block, D], each query's own
  database index (or -1) [devices * block], the padded database [C, D] and
  its squared norms [C], and the number of chunks holding real points.
  Returns the indices [devices * block, k] and scores 2 q.y - |y|^2.
  """

  def per_device(q, own, points, norms, num_chunks):
    capacity = points.shape[0]
    per_chunk = chunk // group
    q = 2.0 * q              # exact in float32: the same scores, one pass

    def stage_one(j, maxima):
      y = lax.dynamic_slice_in_dim(points, j * chunk, chunk)        # [W, D]
      b = lax.dynamic_slice_in_dim(norms, j * chunk, chunk)         # [W]
      s = q @ y.T - b                                               # [B, W]
      m = s.reshape(block, per_chunk, group).max(axis=-1)
      return lax.dynamic_update_slice_in_dim(maxima, m, j * per_chunk, 1)

    maxima = jnp.full((block, capacity // group), -jnp.inf, jnp.float32)
    maxima = lax.pcast(maxima, ("devices",), to="varying")
    maxima = lax.fori_loop(0, num_chunks, stage_one, maxima)
    _, best = lax.top_k(maxima, kept)                               # [B, kept]
    # Stage two: score the kept groups' points again, exactly.
    candidates = points.reshape(-1, group, points.shape[1])[best]  # [B,kept,g,D]
    s = jnp.einsum("bd,bkgd->bkg", q, candidates) - norms.reshape(
        -1, group)[best]
    index = best[..., None] * group + jnp.arange(group)             # [B,kept,g]
    s = jnp.where(index == own[:, None, None], -jnp.inf, s)
    scores, j = lax.top_k(s.reshape(block, kept * group), k)
    return jnp.take_along_axis(index.reshape(block, -1), j, axis=1), scores

  return _sharded(per_device, mesh)


@functools.lru_cache(maxsize=None)
def _approx_step(mesh: Mesh, block: int, k: int, recall_target: float):
  """`_search_step`'s signature, with `lax.approx_max_k` over all points."""

  def per_device(q, own, points, norms, num_chunks):
    del num_chunks                        # padding points score -1e30
    s = 2.0 * (q @ points.T) - norms                                # [B, C]
    index = jnp.arange(points.shape[0])
    s = jnp.where(index == own[:, None], -jnp.inf, s)
    scores, found = lax.approx_max_k(s, k, recall_target=recall_target)
    return found.astype(jnp.int32), scores

  return _sharded(per_device, mesh)


def _sharded(per_device, mesh: Mesh):
  """Jits a step over query blocks split across `mesh`, database replicated."""
  spec, replicated = PartitionSpec("devices"), PartitionSpec()
  return jax.jit(jax.shard_map(
      per_device, mesh=mesh,
      in_specs=(spec, spec, replicated, replicated, replicated),
      out_specs=(spec, spec)))
