"""Ways of running the exact kNN agree: host threads, and faiss against JAX."""
import sys

import numpy as np
import pytest

from nbflows.neighbours import knn

RNG = np.random.default_rng(1)


def assert_same_neighbours(got, want, tol=1e-4):
  """Same distances (float32 rounding), nearest first, same untied sets."""
  (got_i, got_d), (want_i, want_d) = got, want
  np.testing.assert_allclose(got_d, want_d, rtol=tol, atol=tol)
  assert np.all(np.diff(got_d, axis=1) >= 0)
  # Rows whose k-th distance is clear of the (k+1)-th have one answer.
  untied = np.all(np.abs(np.diff(want_d, axis=1)) > 1e-3, axis=1)
  assert untied.mean() > 0.9
  np.testing.assert_array_equal(got_i[untied], want_i[untied])


@pytest.mark.parametrize("exclude_self", [False, True])
def test_host_threads_give_the_same_bits(exclude_self):
  # 301 queries in blocks of 32 (a padded last block), searched 1 and 3 at
  # a time, over chunks of 64 with a padded last chunk.
  x = RNG.standard_normal((301, 9)).astype(np.float32)
  common = dict(exclude_self=exclude_self, block_size=32, chunk_size=64,
                group_size=8, progress=False)
  one = knn.knn(x, 6, host_threads=1, **common)
  three = knn.knn(x, 6, host_threads=3, **common)
  np.testing.assert_array_equal(one[0], three[0])
  np.testing.assert_array_equal(one[1], three[1])
  d2 = np.sum((x[:, None].astype(np.float64) - x[None]) ** 2, -1)
  if exclude_self:
    np.fill_diagonal(d2, np.inf)
  np.testing.assert_allclose(three[1], np.sort(d2, axis=1)[:, :6], rtol=1e-4,
                             atol=1e-4)


@pytest.mark.parametrize("same_class", [False, True])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_faiss_backend_agrees_with_jax(same_class, exclude_self):
  pytest.importorskip("faiss", reason="faiss is not an nbflows requirement "
                      "(CI has none); `pip install faiss-cpu` to run this")
  x = RNG.standard_normal((700, 12)).astype(np.float32)
  labels = RNG.integers(0, 3, 700).astype(np.int32) if same_class else None
  common = dict(database_labels=labels, exclude_self=exclude_self,
                progress=False)
  jax_result = knn.knn(x, 7, block_size=64, chunk_size=128, **common)
  faiss_result = knn.knn(x, 7, backend="faiss", **common)
  assert_same_neighbours(faiss_result, jax_result)
  if exclude_self:
    assert not np.any(faiss_result[0] == np.arange(700)[:, None])
  queries = RNG.standard_normal((90, 12)).astype(np.float32)
  query_labels = RNG.integers(0, 3, 90).astype(np.int32) if same_class else (
      None)
  common.update(queries=queries, query_labels=query_labels)
  assert_same_neighbours(knn.knn(x, 7, backend="faiss", **common),
                         knn.knn(x, 7, **common))


def test_faiss_backend_excludes_self_among_duplicates():
  pytest.importorskip("faiss", reason="faiss is not an nbflows requirement "
                      "(CI has none); `pip install faiss-cpu` to run this")
  # Four copies of each point: with k = 3, each point's neighbours are its
  # three copies at distance 0, however faiss orders the ties.
  x = np.repeat(RNG.standard_normal((40, 5)).astype(np.float32), 4, axis=0)
  found, distances = knn.knn(x, 3, backend="faiss", progress=False)
  np.testing.assert_array_equal(distances, 0.0)
  assert not np.any(found == np.arange(160)[:, None])
  assert np.all(found // 4 == (np.arange(160) // 4)[:, None])


def test_faiss_backend_errors(monkeypatch):
  x = RNG.standard_normal((50, 4)).astype(np.float32)
  with pytest.raises(ValueError, match=r"backend='annoy'"):
    knn.knn(x, 3, backend="annoy", progress=False)
  with pytest.raises(ValueError, match=r"search='approx' with backend"):
    knn.knn(x, 3, backend="faiss", search="approx", progress=False)
  monkeypatch.setitem(sys.modules, "faiss", None)     # import faiss fails
  with pytest.raises(ImportError, match=r"pip install faiss-cpu"):
    knn.knn(x, 3, backend="faiss", progress=False)


def test_index_with_faiss_backend_equals_the_jax_index(tmp_path):
  pytest.importorskip("faiss", reason="faiss is not an nbflows requirement "
                      "(CI has none); `pip install faiss-cpu` to run this")
  from configs import default  # pylint: disable=g-import-not-at-top
  from nbflows.data import sources  # pylint: disable=g-import-not-at-top
  from nbflows.neighbours import index  # pylint: disable=g-import-not-at-top
  digits = sources.load("digits")
  built = {}
  for backend in knn.BACKENDS:
    config = default.get_config().neighbours
    config.knn_backend = backend
    built[backend] = index.build_or_load(
        digits, config, str(tmp_path / f"{backend}.npz"), progress=False)
  assert built["faiss"].settings == built["jax"].settings
  for name in index.SPLITS:
    assert_same_neighbours(
        (built["faiss"].neighbours[name], built["faiss"].distances[name]),
        (built["jax"].neighbours[name], built["jax"].distances[name]),
        tol=1e-3)
