"""k-means clusters and their prototypes: neighbourhoods by clustering.

Paper 1, App. B.5: the training features are clustered into a small number C
of neighbourhoods (100 for MNIST, 500 for SVHN, 1000 for CIFAR-10), and the
m prototypes closest to each cluster centre (5, or 10 for CIFAR-10) condition
the likelihood of that cluster's points. With few neighbourhoods the
neighbourhood can be marginalised exactly (eq. 4 with a sum over C sets).

Lloyd's algorithm (Lloyd, 1982) from k-means++ seeds (Arthur and
Vassilvitskii, 2007), in JAX:

  seeds:  c_1 uniform; c_j = x_i with probability D(x_i)^2 / sum D^2, where
          D(x) is the distance to the nearest seed so far;
  repeat: a_i = argmin_j ||x_i - c_j||^2  (exact, `nbflows.neighbours.knn`)
          c_j = mean {x_i : a_i = j}       (an empty cluster keeps its centre)
  until the assignments stop changing.

At convergence each point's cluster is its nearest centre and each centre is
its cluster's mean. The prototypes of cluster j are its m members nearest
c_j, nearest first; a cluster with fewer than m members is completed with
the non-members nearest c_j.

Example:
  >>> import numpy as np
  >>> from nbflows.neighbours import kmeans
  >>> x = np.array([[0.], [0.1], [0.2], [5.], [5.1], [5.2]], np.float32)
  >>> result = kmeans.fit(x, num_clusters=2, num_prototypes=2, seed=0)
  >>> sorted(result.assignments.tolist()) == [0, 0, 0, 1, 1, 1]
  True
  >>> sorted(sorted(p) for p in result.prototypes.tolist())
  [[0, 1], [3, 4]]
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from nbflows.neighbours import knn


class KMeans(NamedTuple):
  """A fitted k-means clustering.

  Attributes:
    centres: float32 [C, D] cluster centres.
    assignments: int32 [N] the cluster of each training point (its nearest
      centre).
    prototypes: int32 [C, m] for each cluster, the indices of the m points
      nearest its centre among its members, nearest first.
    num_iterations: Lloyd iterations run.
    converged: whether the assignments stopped changing.
  """
  centres: np.ndarray
  assignments: np.ndarray
  prototypes: np.ndarray
  num_iterations: int
  converged: bool


def fit(x: np.ndarray, num_clusters: int, num_prototypes: int, seed: int = 0,
        max_iterations: int = 100, progress: bool = False) -> KMeans:
  """Clusters `x` with k-means++ seeds and Lloyd iterations.

  Args:
    x: float [N, D] features (e.g. PCA coefficients).
    num_clusters: C, the number of clusters.
    num_prototypes: m, prototypes per cluster.
    seed: seed of the k-means++ draws.
    max_iterations: Lloyd iterations at most.
    progress: show a tqdm bar of the iterations.

  Returns:
    The fitted `KMeans`; its assignments are the nearest centres of the
    returned centres even when it stopped before converging.

  Raises:
    ValueError: unless 1 <= num_clusters <= N and 1 <= num_prototypes <= N.
  """
  x = np.asarray(x, np.float32)
  n = len(x)
  if not 1 <= num_clusters <= n:
    raise ValueError(f"num_clusters={num_clusters}; expected between 1 and "
                     f"the number of points, {n}")
  if not 1 <= num_prototypes <= n:
    raise ValueError(f"num_prototypes={num_prototypes}; expected between 1 "
                     f"and the number of points, {n}")
  centres = np.asarray(kmeans_plus_plus(jnp.asarray(x), num_clusters,
                                        jax.random.key(seed)))
  assignments = assign(x, centres)
  converged = False
  iteration = 0
  with tqdm.tqdm(total=max_iterations, desc="k-means", unit="iteration",
                 disable=not progress) as bar:
    while iteration < max_iterations and not converged:
      iteration += 1
      centres = np.asarray(_cluster_means(jnp.asarray(x), assignments,
                                          jnp.asarray(centres)))
      previous, assignments = assignments, assign(x, centres)
      converged = bool(np.array_equal(previous, assignments))
      bar.update()
  return KMeans(centres=centres, assignments=assignments,
                prototypes=prototypes(x, centres, assignments, num_prototypes),
                num_iterations=iteration, converged=converged)


@functools.partial(jax.jit, static_argnames="num_clusters")
def kmeans_plus_plus(x: jax.Array, num_clusters: int, key: jax.Array
                     ) -> jax.Array:
  """k-means++ seeds: each next seed drawn with probability proportional to D^2.

  Args:
    x: [N, D] points.
    num_clusters: number of seeds C.
    key: JAX random key.

  Returns:
    [C, D] seeds, rows of `x`.
  """
  first_key, key = jax.random.split(key)
  first = x[jax.random.randint(first_key, (), 0, x.shape[0])]
  d2 = jnp.sum((x - first) ** 2, axis=1)                          # [N]
  centres = jnp.zeros((num_clusters, x.shape[1]), x.dtype).at[0].set(first)

  def add_seed(j, carry):
    centres, d2 = carry
    # log(0) = -inf: points on a seed are never drawn again.
    i = jax.random.categorical(jax.random.fold_in(key, j), jnp.log(d2))
    centres = centres.at[j].set(x[i])
    return centres, jnp.minimum(d2, jnp.sum((x - x[i]) ** 2, axis=1))

  centres, _ = jax.lax.fori_loop(1, num_clusters, add_seed, (centres, d2))
  return centres


def assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
  """The index of the nearest centre of each point, int32 [N] (exact)."""
  nearest, _ = knn.knn(centres, 1, queries=x, progress=False)
  return nearest[:, 0]


@jax.jit
def _cluster_means(x, assignments, centres):
  """Mean of each cluster's points; an empty cluster keeps its centre."""
  c = centres.shape[0]
  sums = jax.ops.segment_sum(x, assignments, num_segments=c)
  counts = jax.ops.segment_sum(jnp.ones(x.shape[0], x.dtype), assignments,
                               num_segments=c)
  return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1)[:, None],
                   centres)


def prototypes(x: np.ndarray, centres: np.ndarray, assignments: np.ndarray,
               num_prototypes: int) -> np.ndarray:
  """For each cluster, its `num_prototypes` members nearest its centre.

  Args:
    x: [N, D] points.
    centres: [C, D] centres.
    assignments: int [N] cluster of each point.
    num_prototypes: m.

  Returns:
    int32 [C, m] indices into `x`, nearest first; a cluster with fewer than
    m members is completed with the non-members nearest its centre.
  """
  x = np.asarray(x, np.float32)
  num_clusters = len(centres)
  d2 = np.sum((x - centres[assignments]) ** 2, axis=1)
  order = np.lexsort((d2, assignments))             # by cluster, then distance
  starts = np.searchsorted(assignments[order], np.arange(num_clusters))
  sizes = np.bincount(assignments, minlength=num_clusters)
  result = np.zeros((num_clusters, num_prototypes), np.int32)
  small = []
  for c in range(num_clusters):
    members = order[starts[c]:starts[c] + min(sizes[c], num_prototypes)]
    result[c, :len(members)] = members
    if sizes[c] < num_prototypes:
      small.append(c)
  if small:
    nearest, _ = knn.knn(x, num_prototypes, queries=centres[small],
                         progress=False)
    for c, candidates in zip(small, nearest):
      others = [i for i in candidates if assignments[i] != c]
      result[c, sizes[c]:] = others[:num_prototypes - sizes[c]]
  return result
