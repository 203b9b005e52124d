"""`train.benchmark knn` and `index`: the exact kNN and the neighbour index.

  python -m train.benchmark knn --n 60000 --d 128 --k 10 --vs-peer --rounds 3
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

`knn` times `nbflows.neighbours.knn.knn` on every row of a random [n, d]
float32 matrix (the same matrix as `../shared/bench/faiss_knn.py`) in
`--rounds` rounds; with `--vs-peer` each round first runs faiss IndexFlatL2
(that script, in a subprocess) and then nbflows, so both sides see the same
load, and the speedup is the ratio of the medians. The line also holds the
per-round seconds and process CPU seconds of each side, the load average at
the start, the threads each side used, and the fraction of rows whose
neighbour sets agree.
"""
from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

import numpy as np

from train.benchmarks.flows import peak_rss_mb
from train.benchmarks.flows import PEER_DIR

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


def _current_rss_mb() -> float:
  """Resident set size of this process now, in MiB."""
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _thread_cpu_seconds() -> Dict[str, float]:
  """CPU seconds of each thread of this process, by thread id."""
  seconds = {}
  for tid in os.listdir("/proc/self/task"):
    try:
      with open(f"/proc/self/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    except OSError:              # the thread ended meanwhile
      continue
    seconds[tid] = (int(fields[11]) + int(fields[12])) / os.sysconf(
        "SC_CLK_TCK")
  return seconds


def _busy_threads(before: Dict[str, float], after: Dict[str, float]) -> int:
  """Threads that did at least 5% of the process's CPU work in between."""
  work = [after[t] - before.get(t, 0.0) for t in after]
  return sum(w >= 0.05 * sum(work) for w in work) if sum(work) > 0 else 0


def _faiss_round(args: argparse.Namespace, out: str) -> Dict[str, Any]:
  """One run of ../shared/bench/faiss_knn.py: its JSON line and CPU seconds."""
  script = os.path.normpath(os.path.join(PEER_DIR, "faiss_knn.py"))
  if not os.path.exists(script):
    raise FileNotFoundError(f"peer script {script} not found")
  children = resource.getrusage(resource.RUSAGE_CHILDREN)
  completed = subprocess.run(
      [sys.executable, script, "--n", str(args.n), "--d", str(args.d),
       "--k", str(args.k), "--out", out],
      check=True, capture_output=True, text=True)
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  peer = json.loads(completed.stdout.strip().splitlines()[-1])
  peer["process_cpu_s"] = (after.ru_utime + after.ru_stime
                           - children.ru_utime - children.ru_stime)
  return peer


def _median(values: List[float]) -> float:
  return round(statistics.median(values), 3)


def knn_job(args: argparse.Namespace) -> Dict[str, Any]:
  """Times `knn.knn` in rounds, alternating with faiss-flat with --vs-peer."""
  import jax  # pylint: disable=g-import-not-at-top
  from nbflows.neighbours import knn  # pylint: disable=g-import-not-at-top
  peer_missing = args.vs_peer and importlib.util.find_spec("faiss") is None
  if peer_missing:
    print("faiss is not installed, so there is no peer time; `pip install "
          "faiss-cpu` to measure it (not an nbflows requirement)",
          file=sys.stderr)
  load_at_start = os.getloadavg()
  # The same matrix as faiss_knn.py: default_rng(0).standard_normal.
  x = np.random.default_rng(0).standard_normal((args.n, args.d)).astype(
      np.float32)
  rss_before = _current_rss_mb()
  walls, cpus, peers, threads = [], [], [], []
  with tempfile.TemporaryDirectory() as tmp:
    peer_out = os.path.join(tmp, "faiss_indices.npy")
    for _ in range(args.rounds):
      if args.vs_peer and not peer_missing:
        peers.append(_faiss_round(args, peer_out))
      thread_start = _thread_cpu_seconds()
      start, cpu_start = time.perf_counter(), time.process_time()
      indices, _ = knn.knn(x, args.k, exclude_self=True,
                           block_size=args.block_size,
                           chunk_size=args.chunk_size,
                           group_size=args.group_size,
                           host_threads=args.host_threads,
                           progress=args.progress)
      walls.append(time.perf_counter() - start)
      cpus.append(time.process_time() - cpu_start)
      threads.append(_busy_threads(thread_start, _thread_cpu_seconds()))
    peer_indices = np.load(peer_out) if peers else None
  result = {
      "job": "knn", "value": _median(walls), "unit": "s",
      "n": args.n, "d": args.d, "k": args.k, "block_size": args.block_size,
      "chunk_size": args.chunk_size, "group_size": args.group_size,
      "host_threads": args.host_threads or knn.default_host_threads(
          jax.devices()),
      "rounds": args.rounds, "rounds_s": [round(w, 3) for w in walls],
      "cpu_s": _median(cpus), "rounds_cpu_s": [round(c, 3) for c in cpus],
      "threads": statistics.median_low(threads), "cpu_count": os.cpu_count(),
      "devices": f"{len(jax.devices())} x {jax.devices()[0].platform}",
      "loadavg_at_start": [round(v, 2) for v in load_at_start],
      "rss_before_mb": round(rss_before, 1),
      "peak_rss_mb": round(peak_rss_mb(), 1),
      "nxn_matrix_mb": round(4 * args.n**2 / 2**20, 1),
  }
  if peer_missing:
    result.update(peer="faiss-flat", peer_value=None, speedup=None,
                  peer_error="faiss is not installed; `pip install faiss-cpu`")
  elif peers:
    peer_value = _median([p["seconds"] for p in peers])
    # Neighbour sets agree up to ties: fraction of rows with the same set.
    same = np.mean([set(a) == set(b) for a, b in zip(indices, peer_indices)])
    result.update(
        peer="faiss-flat", peer_value=peer_value,
        peer_rounds_s=[round(p["seconds"], 3) for p in peers],
        peer_process_cpu_s=_median([p["process_cpu_s"] for p in peers]),
        peer_threads=peers[0].get("threads"),
        speedup=round(peer_value / statistics.median(walls), 3),
        rows_agreeing_with_peer=round(float(same), 5))
  return result


def add_knn_job(jobs) -> None:
  """The `knn` subcommand."""
  parser = jobs.add_parser("knn", help="exact kNN of an [n, d] matrix")
  parser.add_argument("--n", type=int, default=60000)
  parser.add_argument("--d", type=int, default=128)
  parser.add_argument("--k", type=int, default=10)
  parser.add_argument("--block-size", type=int, default=256,
                      help="queries per block and device")
  parser.add_argument("--chunk-size", type=int, default=2048,
                      help="database points per matrix product")
  parser.add_argument("--group-size", type=int, default=16,
                      help="database points per group in stage 1")
  parser.add_argument("--host-threads", type=int, default=None,
                      help="query blocks searched at once (default: the "
                      "CPU cores)")
  parser.add_argument("--rounds", type=int, default=3,
                      help="rounds, each a faiss run (with --vs-peer) then "
                      "an nbflows run; the medians are reported")
  parser.add_argument("--progress", action="store_true",
                      help="show the progress bar on stderr")
  parser.add_argument("--vs-peer", action="store_true",
                      help="also time faiss-flat, alternating rounds")
  parser.set_defaults(run=knn_job)


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
      functools.partial(pca.from_covariance, mean, cov, args.pca_variance),
      peaks, "eigh")
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
