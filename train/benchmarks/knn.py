"""`train.benchmark index`: the neighbour index at the paper's sizes.

  python -m train.benchmark index --dataset-shape 50000,3072     # CIFAR-10
  python -m train.benchmark index --dataset-shape 202599,12288   # CelebA 64x64

Builds what `nbflows.neighbours.index` builds for a training split, PCA(99%)
and the exact k nearest neighbours of every training point among the others
(all classes together, the costliest case), on synthetic uint8 images, and
prints one JSON line: seconds per phase (generate, covariance, eigh,
projection, knn), the kept dimension, the peak resident memory of the
process, and the recall of `search="approx"` (`jax.lax.approx_max_k`) against
the exact search on a subset of queries (1.0 off TPU, where approx_max_k is
exact).

The synthetic images (`synthetic_images`) are

  x_n = clip(rint(128 + (z_n * s) @ W), 0, 255) as uint8,  z_n ~ N(0, I_r),

with W [r, D] standard normal / sqrt(D) (nearly orthonormal rows) and a 1/i
spectrum s_i^2 = c / i, i = 1..r (roughly what the 1/f^2 power spectrum of
natural images gives), c setting the pixel standard deviation to 32. The
rounding adds full-rank noise of variance 1/12 per pixel (0.008% of the
variance), so PCA(99%) keeps somewhat fewer than r = `--rank` components.
They are generated a block of rows at a time into the uint8 array.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Any, Dict, Tuple

import numpy as np

from train.benchmarks.flows import peak_rss_mb

PIXEL_STD = 32.0


def synthetic_images(n: int, d: int, rank: int = 256, seed: int = 0,
                     block_size: int = 4096) -> np.ndarray:
  """uint8 [n, d] rank-`rank` images plus rounding noise (module docstring)."""
  if not 0 < rank <= d:
    raise ValueError(f"rank={rank}; expected 0 < rank <= d={d}")
  rng = np.random.default_rng(seed)
  spectrum = 1.0 / np.arange(1, rank + 1)
  # Pixel variance sum_i s_i^2 / D = PIXEL_STD^2.
  scales = np.sqrt(spectrum * PIXEL_STD**2 * d / spectrum.sum())
  directions = (rng.standard_normal((rank, d), np.float32)
                / np.float32(np.sqrt(d)))                    # [r, D]
  directions *= scales[:, None].astype(np.float32)
  images = np.empty((n, d), np.uint8)
  for start in range(0, n, block_size):
    z = rng.standard_normal((min(block_size, n - start), rank), np.float32)
    block = z @ directions
    block += 128.0
    np.rint(block, out=block)
    np.clip(block, 0, 255, out=block)
    images[start:start + len(block)] = block
  return images


def recall(found: np.ndarray, exact: np.ndarray) -> float:
  """Mean fraction of each row's exact neighbours that `found` holds."""
  k = exact.shape[1]
  return float(np.mean([len(set(a) & set(b)) / k
                        for a, b in zip(found, exact)]))


def _timed(call, peaks: Dict[str, float], phase: str):
  """(call(), its wall seconds); records the peak RSS so far in `peaks`."""
  start = time.perf_counter()
  result = call()
  peaks[phase] = round(peak_rss_mb(), 1)
  return result, round(time.perf_counter() - start, 2)


def _shape(text: str) -> Tuple[int, int]:
  try:
    n, d = (int(v) for v in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"--dataset-shape {text!r}; expected N,D such as 50000,3072") from None
  return n, d


def index_job(args: argparse.Namespace) -> Dict[str, Any]:
  """Times the index build's phases on synthetic [N, D] uint8 images."""
  import jax  # pylint: disable=g-import-not-at-top
  from nbflows.neighbours import knn  # pylint: disable=g-import-not-at-top
  from nbflows.neighbours import pca  # pylint: disable=g-import-not-at-top
  n, d = args.dataset_shape
  load_at_start = os.getloadavg()
  rss_at_start = peak_rss_mb()
  seconds, peaks = {}, {}
  images, seconds["generate"] = _timed(lambda: synthetic_images(
      n, d, args.rank, block_size=args.rows_per_block), peaks, "generate")
  (mean, cov), seconds["covariance"] = _timed(
      lambda: pca.covariance(images, args.rows_per_block), peaks, "covariance")
  fitted, seconds["eigh"] = _timed(
      lambda: pca.from_covariance(mean, cov, args.pca_variance), peaks, "eigh")
  del cov
  features, seconds["projection"] = _timed(
      lambda: pca.transform(fitted, images, args.rows_per_block), peaks,
      "projection")
  (indices, distances), seconds["knn"] = _timed(lambda: knn.knn(
      features, args.k, exclude_self=True, search=args.search,
      progress=args.progress), peaks, "knn")
  # Recall of approx_max_k on the first queries, against the exact search.
  queries = features[:args.recall_queries]
  exact, _ = knn.knn(features, args.k, queries=queries, progress=False)
  approx, _ = knn.knn(features, args.k, queries=queries, progress=False,
                      search="approx")
  build = sum(v for key, v in seconds.items() if key != "generate")
  return {
      "job": "index", "value": round(build, 2), "unit": "s",
      "n": n, "d": d, "rank": args.rank, "k": args.k, "search": args.search,
      "seconds": seconds, "kept_dim": int(fitted.components.shape[1]),
      "kept_fraction": round(pca.kept_fraction(fitted), 6),
      "sorted_by_distance": bool(np.all(np.diff(distances, axis=1) >= 0)),
      "approx_recall": recall(approx, exact),
      "approx_recall_queries": len(queries),
      "devices": f"{len(jax.devices())} x {jax.devices()[0].platform}",
      "loadavg_at_start": [round(v, 2) for v in load_at_start],
      "peak_rss_mb": round(peak_rss_mb(), 1),
      "rss_at_start_mb": round(rss_at_start, 1),
      "peak_rss_mb_after": peaks,
      "data_uint8_mb": round(images.nbytes / 2**20, 1),
      "covariance_float64_mb": round(8 * d * d / 2**20, 1),
      "nxd_float32_mb": round(4 * n * d / 2**20, 1),
      "nxn_float32_mb": round(4 * n * n / 2**20, 1),
      "neighbours_sample": indices[0].tolist(),
  }


def add_index_job(jobs) -> None:
  """The `index` subcommand."""
  parser = jobs.add_parser(
      "index", help="PCA(99%%) + exact kNN of synthetic [N, D] uint8 images")
  parser.add_argument("--dataset-shape", type=_shape, default=(50000, 3072),
                      help="N,D: images and pixels per image")
  parser.add_argument("--rank", type=int, default=256,
                      help="rank of the synthetic images before rounding")
  parser.add_argument("--k", type=int, default=5)
  parser.add_argument("--pca-variance", type=float, default=0.99)
  parser.add_argument("--search", choices=("exact", "approx"),
                      default="exact")
  parser.add_argument("--rows-per-block", type=int, default=4096,
                      help="rows per block of generation, covariance and "
                      "projection")
  parser.add_argument("--recall-queries", type=int, default=1024,
                      help="queries on which approx is checked against exact")
  parser.add_argument("--progress", action="store_true")
  parser.set_defaults(run=index_job)
