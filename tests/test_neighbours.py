"""Tests of the neighbour index: PCA, exact kNN, k-means, the saved file."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from configs import default
from nbflows.data import sources
from nbflows.neighbours import index as index_lib
from nbflows.neighbours import kmeans, knn, pca
from train.benchmarks import knn as benchmark_index
from train.benchmarks.knn import synthetic_images

RNG = np.random.default_rng(0)


def brute_force(queries, database, k, query_labels=None, database_labels=None,
                self_indices=None):
  """Float64 NumPy reference: (indices [Q, k], squared distances [Q, k])."""
  d2 = np.sum((queries[:, None].astype(np.float64) - database[None]) ** 2, -1)
  if query_labels is not None:
    d2[query_labels[:, None] != database_labels[None]] = np.inf
  if self_indices is not None:
    d2[np.arange(len(queries)), self_indices] = np.inf
  order = np.argsort(d2, axis=1, kind="stable")[:, :k]
  return order, np.take_along_axis(d2, order, axis=1)


@pytest.fixture(scope="module")
def points():
  x = RNG.standard_normal((150, 6)).astype(np.float32)
  labels = RNG.integers(0, 3, 150).astype(np.int32)
  return x, labels


@pytest.mark.parametrize("same_class", [False, True])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_knn_self_equals_brute_force(points, same_class, exclude_self):
  x, labels = points
  got, dist = knn.knn(x, 4, exclude_self=exclude_self, block_size=32,
                      database_labels=labels if same_class else None,
                      progress=False)
  want, want_dist = brute_force(
      x, x, 4, labels if same_class else None, labels if same_class else None,
      np.arange(len(x)) if exclude_self else None)
  np.testing.assert_array_equal(got, want)
  np.testing.assert_allclose(dist, want_dist, rtol=1e-4, atol=1e-4)
  if exclude_self:
    assert not np.any(got == np.arange(len(x))[:, None])
  if same_class:
    assert np.all(labels[got] == labels[:, None])


@pytest.mark.parametrize("same_class", [False, True])
def test_knn_queries_equal_brute_force(points, same_class):
  x, labels = points
  queries = RNG.standard_normal((37, 6)).astype(np.float32)
  query_labels = RNG.integers(0, 3, 37).astype(np.int32)
  kwargs = dict(query_labels=query_labels, database_labels=labels) if (
      same_class) else {}
  got, dist = knn.knn(x, 4, queries=queries, block_size=32, progress=False,
                      **kwargs)
  want, want_dist = brute_force(queries, x, 4, kwargs.get("query_labels"),
                                kwargs.get("database_labels"))
  np.testing.assert_array_equal(got, want)
  np.testing.assert_allclose(dist, want_dist, rtol=1e-4, atol=1e-4)


def test_knn_sorts_each_rows_neighbours_by_increasing_distance():
  x = RNG.standard_normal((120, 5)).astype(np.float32)
  got, dist = knn.knn(x, 7, block_size=16, chunk_size=32, group_size=4,
                      progress=False)
  d2 = np.sum((x[:, None].astype(np.float64) - x[None]) ** 2, -1)
  np.fill_diagonal(d2, np.inf)
  found = np.take_along_axis(d2, got.astype(np.int64), axis=1)
  np.testing.assert_allclose(found, np.sort(d2, axis=1)[:, :7], rtol=1e-4,
                             atol=1e-4)
  assert np.all(np.diff(found, axis=1) > 0)     # no ties in random points
  assert np.all(np.diff(dist, axis=1) >= 0)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_knn_two_stages_across_chunks_and_groups(exclude_self):
  # 203 points in chunks of 16 and groups of 4: many chunks, a padded last
  # chunk, and groups whose maxima decide which points are scored again.
  x = RNG.standard_normal((203, 3)).astype(np.float32)
  got, dist = knn.knn(x, 6, exclude_self=exclude_self, block_size=16,
                      chunk_size=16, group_size=4, progress=False)
  want, want_dist = brute_force(x, x, 6, self_indices=np.arange(203)
                                if exclude_self else None)
  np.testing.assert_array_equal(got, want)
  np.testing.assert_allclose(dist, want_dist, rtol=1e-4, atol=1e-4)


# knn.py is loaded on its own, without the nbflows package (and TensorFlow).
MULTI_DEVICE_SCRIPT = """
import importlib.util
import numpy as np
import jax
spec = importlib.util.spec_from_file_location("knn", "nbflows/neighbours/knn.py")
knn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(knn)
assert len(jax.devices()) == 3
x = np.random.default_rng(0).standard_normal((100, 4)).astype(np.float32)
labels = np.arange(100) % 2
got, _ = knn.knn(x, 3, database_labels=labels, block_size=8, progress=False)
d2 = np.sum((x[:, None].astype(np.float64) - x[None]) ** 2, -1)
d2[labels[:, None] != labels[None]] = np.inf
np.fill_diagonal(d2, np.inf)
assert (got == np.argsort(d2, 1)[:, :3]).all()
print("ok")
"""


def test_knn_spreads_query_blocks_over_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=3",
             JAX_PLATFORMS="cpu")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-c", MULTI_DEVICE_SCRIPT], env=env,
                       cwd=root, capture_output=True, text=True, check=False)
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_knn_too_few_eligible_points_names_both_numbers():
  x = RNG.standard_normal((10, 2)).astype(np.float32)
  labels = np.array([0] * 7 + [1] * 3)
  with pytest.raises(ValueError, match=r"k=3 .* only 2 eligible .* label 1"):
    knn.knn(x, 3, database_labels=labels, exclude_self=True, progress=False)


def test_pca_keeps_requested_variance():
  # Anisotropic data: variances 100, 25, 4, 1, 0.25, ... along random axes.
  basis, _ = np.linalg.qr(RNG.standard_normal((12, 12)))
  x = (RNG.standard_normal((400, 12)) * 10 * 0.5 ** np.arange(12)) @ basis.T
  for fraction in (0.5, 0.9, 0.99):
    fitted = pca.fit(x, fraction, block_size=128)
    features = pca.transform(fitted, x)
    centred = x - x.mean(0)
    kept = np.sum(features.astype(np.float64) ** 2) / np.sum(centred ** 2)
    assert kept >= fraction - 1e-6
    # ... and is the fewest components that do: one fewer falls short.
    p = fitted.components.shape[1]
    assert np.sum(features[:, :p - 1].astype(np.float64) ** 2) / np.sum(
        centred ** 2) < fraction
    np.testing.assert_allclose(fitted.components.T @ fitted.components,
                               np.eye(p), atol=1e-5)


def numpy_pca(x, fraction):
  """Float64 NumPy reference: (mean, kept components [D, P], variances)."""
  x = x.reshape(len(x), -1).astype(np.float64)
  mean = x.mean(0)
  eigenvalues, eigenvectors = np.linalg.eigh(np.cov(x.T, bias=True))
  eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
  kept = np.searchsorted(np.cumsum(eigenvalues) / eigenvalues.sum(),
                         fraction) + 1
  return mean, eigenvectors[:, :kept], eigenvalues[:kept]


@pytest.mark.parametrize("fraction", [0.9, 0.99, 1.0])
def test_blocked_pca_of_uint8_images_equals_numpy_pca(fraction):
  # Rank-6 uint8 images [203, 4, 4, 3]; blocks of 32 rows (a padded last
  # block) and a float32 -> float64 flush every 64 rows.
  images = synthetic_images(203, 48, rank=6, seed=1).reshape(203, 4, 4, 3)
  mean, cov = pca.covariance(images, block_size=32, flush_rows=64)
  fitted = pca.from_covariance(mean, cov, fraction)
  want_mean, want_components, want_variances = numpy_pca(images, fraction)
  assert fitted.components.shape == want_components.shape
  np.testing.assert_allclose(fitted.mean, want_mean, rtol=1e-6)
  np.testing.assert_allclose(fitted.variances, want_variances, rtol=1e-4,
                             atol=1e-3 * want_variances[0])
  assert pca.kept_fraction(fitted) >= fraction - 1e-9
  got = pca.transform(fitted, images, block_size=32)
  want = (images.reshape(203, -1) - want_mean) @ want_components
  # Equal up to the sign of each component (well-separated variances only:
  # the last components of fraction=1 are rounding noise, compared by norm).
  signs = np.sign(np.sum(got * want, axis=0))
  strong = want_variances > 1e-2 * want_variances[0]
  np.testing.assert_allclose((got * signs)[:, strong], want[:, strong],
                             atol=1e-3 * np.abs(want).max())
  np.testing.assert_allclose(np.linalg.norm(got, axis=0),
                             np.linalg.norm(want, axis=0), rtol=1e-3,
                             atol=1e-2)
  assert fitted.components.dtype == got.dtype == np.float32


def test_pca_with_fewer_rows_than_dimensions_is_the_covariance_pca():
  """The Gram route (N < D) gives from_covariance's variances and components."""
  rng = np.random.default_rng(0)
  images = np.clip(128 + rng.normal(size=(60, 6)) @ rng.normal(
      size=(6, 200)) * 20 + rng.normal(size=(60, 200)), 0, 255).astype(np.uint8)
  ours = pca.fit(images, 0.99)
  expected = pca.from_covariance(*pca.covariance(images), 0.99)
  assert ours.components.shape == expected.components.shape
  np.testing.assert_allclose(ours.variances, expected.variances, rtol=1e-4)
  np.testing.assert_allclose(ours.total_variance, expected.total_variance,
                             rtol=1e-6)
  np.testing.assert_allclose(ours.mean, expected.mean, rtol=1e-6)
  np.testing.assert_allclose(np.abs(ours.components.T @ expected.components),
                             np.eye(ours.components.shape[1]), atol=1e-3)


def test_pca_fit_is_covariance_then_eigendecomposition():
  images = synthetic_images(150, 30, rank=4)
  fitted = pca.fit(images, 0.99, block_size=64)
  again = pca.from_covariance(*pca.covariance(images, 64), 0.99)
  np.testing.assert_array_equal(fitted.components, again.components)
  with pytest.raises(ValueError, match=r"fraction=1.5"):
    pca.from_covariance(*pca.covariance(images, 64), 1.5)


def assert_neighbours_of_brute_force(got, dist, queries, database, k,
                                     self_indices=None):
  """Tie-aware: the k distances equal brute force's, each found index lies
  at its stated distance, and no nearer point is missing."""
  want, want_dist = brute_force(queries, database, k,
                                self_indices=self_indices)
  np.testing.assert_allclose(dist, want_dist, rtol=1e-5, atol=1e-4)
  true = np.sum((queries[:, None].astype(np.float64) - database[got]) ** 2,
                -1)
  np.testing.assert_allclose(true, want_dist, rtol=1e-5, atol=1e-4)
  assert all(len(set(row)) == k for row in got)
  if self_indices is not None:
    assert not np.any(got == np.asarray(self_indices)[:, None])
  # Where the k-th distance is not tied, the neighbour sets are equal.
  next_dist = brute_force(queries, database, k + 1,
                          self_indices=self_indices)[1][:, -1]
  untied = next_dist > want_dist[:, -1] + 1e-3
  for a, b in zip(got[untied], want[untied]):
    assert set(a) == set(b)


@pytest.mark.parametrize("search", ["exact", "approx"])
def test_blocked_knn_with_ties_equals_brute_force(search):
  # Integer points on a small grid: many equal distances, across chunks of
  # 16 and groups of 4 (a padded last chunk).
  x = RNG.integers(0, 4, (157, 3)).astype(np.float32)
  got, dist = knn.knn(x, 5, exclude_self=True, block_size=16, chunk_size=16,
                      group_size=4, search=search, progress=False)
  assert_neighbours_of_brute_force(got, dist, x, x, 5, np.arange(157))
  queries = RNG.integers(0, 4, (29, 3)).astype(np.float32)
  got, dist = knn.knn(x, 5, queries=queries, block_size=16, chunk_size=16,
                      group_size=4, search=search, progress=False)
  assert_neighbours_of_brute_force(got, dist, queries, x, 5)


def test_approx_search_recall_is_one_off_tpu():
  # approx_max_k falls back to an exact top-k on CPU and GPU, so "approx"
  # finds exactly the exact search's neighbours there (recall 1.0).
  import jax  # pylint: disable=g-import-not-at-top
  x = RNG.standard_normal((300, 8)).astype(np.float32)
  exact, _ = knn.knn(x, 5, progress=False)
  approx, _ = knn.knn(x, 5, progress=False, search="approx")
  if jax.default_backend() == "tpu":
    pytest.skip("on TPU approx_max_k is approximate; the benchmark reports "
                "its recall")
  assert benchmark_index.recall(approx, exact) == 1.0
  np.testing.assert_array_equal(approx, exact)
  with pytest.raises(ValueError, match=r"search='fast'"):
    knn.knn(x, 5, progress=False, search="fast")


def test_kmeans_converged_assignments_are_nearest_centres_and_means():
  centres = np.array([[0, 0], [6, 0], [0, 6], [6, 6]], np.float32)
  x = (centres[RNG.integers(0, 4, 300)] +
       RNG.standard_normal((300, 2))).astype(np.float32)
  result = kmeans.fit(x, num_clusters=4, num_prototypes=3, seed=1)
  assert result.converged
  d2 = np.sum((x[:, None] - result.centres[None]) ** 2, -1)
  np.testing.assert_array_equal(result.assignments, np.argmin(d2, axis=1))
  for c in range(4):
    members = np.flatnonzero(result.assignments == c)
    np.testing.assert_allclose(result.centres[c], x[members].mean(0),
                               atol=1e-4)
    # Prototypes: the 3 members nearest the centre, nearest first.
    want = members[np.argsort(d2[members, c], kind="stable")[:3]]
    np.testing.assert_array_equal(result.prototypes[c], want)


def test_kmeans_plus_plus_seeds_are_distinct_points():
  import jax  # pylint: disable=g-import-not-at-top
  x = np.arange(20, dtype=np.float32).reshape(10, 2)
  seeds = np.asarray(kmeans.kmeans_plus_plus(x, 10, jax.random.key(0)))
  # With C = N every point must be drawn once (D^2 = 0 for drawn points).
  assert sorted(map(tuple, seeds.tolist())) == sorted(map(tuple, x.tolist()))


@pytest.fixture(scope="module")
def digits():
  return sources.load("digits")


def neighbour_config(**overrides):
  config = default.get_config().neighbours
  with config.unlocked():
    config.update(overrides)
  return config


def test_index_knn_on_digits(digits, tmp_path):
  config = neighbour_config(k=5, same_class=True, exclude_self=True)
  index = index_lib.build_or_load(digits, config, str(tmp_path),
                                  progress=False)
  feats = {name: pca.transform(index.pca, getattr(digits, name).images)
           for name in index_lib.SPLITS}
  assert pca.kept_fraction(index.pca) >= 0.99
  for name in index_lib.SPLITS:
    split = getattr(digits, name)
    got = index.neighbours[name]
    assert got.shape == (len(split.labels), 5) and got.dtype == np.int32
    # Indices refer to the training split, of the same class.
    assert got.min() >= 0 and got.max() < len(digits.train.labels)
    np.testing.assert_array_equal(digits.train.labels[got],
                                  np.repeat(split.labels[:, None], 5, 1))
    want, _ = brute_force(feats[name], feats["train"], 5, split.labels,
                          digits.train.labels,
                          np.arange(len(split.labels)) if name == "train"
                          else None)
    np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def saved_index(digits, tmp_path_factory):
  """(config, path, index) of a k=5 index of all classes, saved once."""
  config = neighbour_config(k=5, same_class=False)
  path = str(tmp_path_factory.mktemp("index") / "digits.npz")
  return config, path, index_lib.build_or_load(digits, config, path=path,
                                               progress=False)


def test_index_returns_each_rows_neighbours_nearest_first(digits,
                                                         saved_index):
  # NCL (App. B.1) and NCT (eq. 8) concatenate the neighbours in this order.
  _, _, index = saved_index
  train = pca.transform(index.pca, digits.train.images).astype(np.float64)
  for name in ("train", "test"):
    queries = pca.transform(index.pca, getattr(digits, name).images
                            ).astype(np.float64)
    d2 = np.sum((queries[:, None] - train[None]) ** 2, -1)     # [Q, N]
    if name == "train":
      np.fill_diagonal(d2, np.inf)                         # exclude_self
    got = index.neighbours[name]
    found = np.take_along_axis(d2, got.astype(np.int64), axis=1)  # [Q, k]
    # The k smallest distances of each row, in increasing order ...
    np.testing.assert_allclose(found, np.sort(d2, axis=1)[:, :5],
                               rtol=1e-4, atol=1e-3)
    assert np.all(np.diff(found, axis=1) >= -1e-3)
    # ... and the index's own distances are these, sorted too.
    np.testing.assert_allclose(index.distances[name], found, rtol=1e-4,
                               atol=1e-3)
    assert np.all(np.diff(index.distances[name], axis=1) >= 0)


def test_approx_search_is_recorded_in_the_settings(digits):
  exact = index_lib.settings_of(digits, neighbour_config())
  approx = index_lib.settings_of(digits, neighbour_config(search="approx"))
  assert "search" not in exact and approx["search"] == "approx"


def test_index_is_saved_and_reloaded(digits, saved_index):
  config, path, built = saved_index
  loaded = index_lib.build_or_load(digits, config, path=path)
  for name in index_lib.SPLITS:
    np.testing.assert_array_equal(loaded.neighbours[name],
                                  built.neighbours[name])
    np.testing.assert_array_equal(loaded.distances[name],
                                  built.distances[name])
  np.testing.assert_array_equal(loaded.pca.components, built.pca.components)
  assert loaded.settings == built.settings


def test_stale_index_names_the_mismatch(digits, saved_index, tmp_path):
  config, path, _ = saved_index
  with pytest.raises(index_lib.IndexMismatchError,
                     match=r"k: file has 5, expected 4"):
    index_lib.build_or_load(digits, neighbour_config(k=4, same_class=False),
                            path=path)
  with pytest.raises(index_lib.IndexMismatchError,
                     match=r"same_class: file has False, expected True"):
    index_lib.build_or_load(digits, neighbour_config(k=5, same_class=True),
                            path=path)
  other = sources.load("digits", seed=1)          # another split of the data
  with pytest.raises(index_lib.IndexMismatchError,
                     match=r"data of the train split"):
    index_lib.build_or_load(other, config, path=path)
  copy = str(tmp_path / "copy.npz")
  shutil.copy(path, copy)
  rebuilt = index_lib.build_or_load(other, config, path=copy, rebuild=True,
                                    progress=False)
  assert rebuilt.data_hashes == index_lib.data_hashes(other)
  assert index_lib.load(copy, other, config).data_hashes == rebuilt.data_hashes


def test_index_kmeans_neighbourhoods_are_cluster_prototypes(digits, tmp_path):
  config = neighbour_config(kind="kmeans", num_clusters=10, num_prototypes=5)
  index = index_lib.build_or_load(digits, config, str(tmp_path),
                                  progress=False)
  assert index.prototypes.shape == (10, 5) and index.k == 5
  for name in index_lib.SPLITS:
    np.testing.assert_array_equal(index.neighbours[name],
                                  index.prototypes[index.clusters[name]])
  # Test points belong to their nearest centre.
  feats = pca.transform(index.pca, digits.test.images)
  d2 = np.sum((feats[:, None] - index.centres[None]) ** 2, -1)
  np.testing.assert_array_equal(index.clusters["test"], np.argmin(d2, 1))


def test_feature_hook_replaces_pca(digits, tmp_path):
  config = neighbour_config(k=5, same_class=False)
  hook = lambda images: images.reshape(len(images), -1)[:, :8].astype(
      np.float32)
  index = index_lib.build_or_load(digits, config, str(tmp_path),
                                  features=hook, features_name="first_row",
                                  progress=False)
  assert index.pca is None and index.settings["features"] == "first_row"
  train = hook(digits.train.images)
  want, _ = brute_force(hook(digits.test.images), train, 5)
  got = index.neighbours["test"]
  # Ties are common in 8 integer pixels: compare distances, not indices.
  d_got = np.sum((hook(digits.test.images)[:, None] - train[got]) ** 2, -1)
  d_want = np.sum((hook(digits.test.images)[:, None] - train[want]) ** 2, -1)
  np.testing.assert_array_equal(d_got, d_want)
  with pytest.raises(ValueError, match="features_name"):
    index_lib.build(digits, config, features=hook)
