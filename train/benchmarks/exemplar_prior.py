r"""`train.benchmark exemplar_prior`: the Exemplar VAE's step time against N.

  python -m train.benchmark exemplar_prior --n 1000,5000,20000,50000

Times the trainer's step on `configs/evae_mnist5k.py`'s Exemplar VAE (paper
3: 784-pixel images, MLP 300-300, 40-D latents, batch 100, leave-one-out,
M/N = 0.5) built by `exemplar_vae.build_evae` over N synthetic MNIST-sized
exemplars (`train.benchmarks.knn.synthetic_images`, 256 grey levels), for
the two priors it trains with:

  exact  log r(z | pi) = log 1/M sum_{j in pi} N(z; mu(x_j), sigma^2 I)
         (eq. 13 with eq. 14's kernels; `vae.exemplar.knn = 0`): each step
         encodes the M = N / 2 exemplars of the subsample pi, forward and
         backward, so its cost grows linearly with N;
  knn    the bound of eq. 15 over the k nearest exemplars in pi (Alg. 1,
         `vae.exemplar.knn = k`, `--k`): the host searches the cached
         means (`ExemplarCache`, B x M x d distances) and the step encodes
         B k exemplars, so its cost is flat in N but for that search.

A step is what `train.loop.trainer` runs per batch: the host preparation
(`ExemplarVAEModel.train_batch_preparer`, the identity for the exact prior),
`sharding.shard_batch`, and `trainer.make_train_step` jitted by
`trainer.compile_train_step`, on a fresh batch of random training indices
each step. Every (N, prior) is compiled and warmed up first; then each of
`--rounds` rounds times a block of `--steps` steps of every N and prior in
turn (exact, kNN, for each N), so they all see the same load.

Prints one JSON line per (N, prior): "value" the median ms per step,
"host_ms_median" the host half within it, "compile_s", the subsample size
M, the device and load; `exemplar_prior_job` returns the summary line
(printed by `train.benchmark`): exact over kNN ms at the largest N, and
each prior's growth from the smallest N to the largest.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable, Dict, List, Sequence

import jax
import numpy as np

from train.benchmarks import device as benchmark_device
from train.benchmarks import knn as benchmark_index

PRIORS = ("exact", "knn")
DATASET = "mnist5k"     # its shape (28 x 28 x 1, 256 levels) and config


def synthetic_splits(num_exemplars: int, seed: int = 0):
  """`sources.Splits` of `num_exemplars` synthetic MNIST-sized images."""
  from nbflows.data import sources  # pylint: disable=g-import-not-at-top
  info = sources.dataset_info(DATASET)
  images = benchmark_index.synthetic_images(
      num_exemplars, int(np.prod(info.event_shape)), seed=seed).reshape(
          num_exemplars, *info.event_shape)
  split = sources.Split(images, np.zeros(num_exemplars, np.int32))
  return sources.Splits(split, split, split, info)


class StepTimer:
  """The trainer's step (host preparation, then the jitted step) for a prior.

  Args:
    splits: from `synthetic_splits`.
    k: the kNN prior's k; 0 is the exact prior.
    batch_size: 0 keeps the config's.
    quick: the config's quick (tiny) networks.
    seed: seeds the parameters and the batches.

  Attributes:
    prior_components: the step's "prior_components" metric after the last
      step (k: the kNN path was taken), or None (the exact prior's step has
      no such metric).
  """

  def __init__(self, splits: Any, k: int, batch_size: int = 0,
               quick: bool = False, seed: int = 0):
    # pylint: disable=g-import-not-at-top
    from configs import evae_mnist5k
    from nbflows.models import exemplar_vae
    from train.benchmarks import flows
    from train.loop import sharding
    from train.loop import state as state_lib
    from train.loop import trainer
    config = evae_mnist5k.get_config("quick" if quick else None)
    config.vae.exemplar.knn = k
    if batch_size:
      config.batch_size = batch_size
    self.model = exemplar_vae.build_evae(config, splits)
    self._images = splits.train.images
    self._rng = np.random.default_rng(seed)
    self._mesh = sharding.make_mesh()
    self._shard = sharding.shard_batch
    self.batch_size = config.batch_size
    optimizer = state_lib.make_optimizer(config.optimizer,
                                         config.num_train_steps)
    first = self._batch()
    self._state = jax.jit(lambda key, batch: state_lib.create_train_state(
        self.model, optimizer, key, batch))(jax.random.key(seed), first)
    self._prepare = self.model.train_batch_preparer(self._state.params)
    step = trainer.compile_train_step(
        trainer.make_train_step(self.model, optimizer), self._mesh)
    self._step, self.compile_s = flows.timed_compile(
        step, self._state, self._shard(self._prepared(first), self._mesh))
    self.host_s: List[float] = []
    self.prior_components = None

  def _batch(self) -> Dict[str, np.ndarray]:
    """A host batch of random training points, as the pipeline gives it."""
    index = self._rng.choice(len(self._images), self.batch_size,
                             replace=False).astype(np.int32)
    return {"x": self._images[index].astype(np.float32) + 0.5,
            "index": index}

  def _prepared(self, batch: Dict[str, np.ndarray]) -> Dict[str, Any]:
    key = jax.random.fold_in(jax.random.fold_in(self._state.rng,
                                                self._state.step), 1)
    return self._prepare(self._state.params, batch, key)

  def step(self) -> jax.Array:
    """One training step on a fresh batch; returns its loss (not waited on).
    """
    batch = self._batch()
    start = time.perf_counter()
    prepared = self._prepared(batch)
    self.host_s.append(time.perf_counter() - start)
    self._state, metrics = self._step(self._state,
                                      self._shard(prepared, self._mesh))
    self.prior_components = metrics.get("prior_components")
    return metrics["loss"]


def _time_block(call: Callable[[], jax.Array], steps: int) -> List[float]:
  """Wall seconds of each of `steps` calls, each waited on."""
  walls = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(call())
    walls.append(time.perf_counter() - start)
  return walls


def measure(sizes: Sequence[int], k: int, steps: int, rounds: int,
            warmup: int = 2, batch_size: int = 0, quick: bool = False
            ) -> List[Dict[str, Any]]:
  """One JSON record per N in `sizes` and prior (module docstring).

  Every (N, prior) is compiled and warmed up (`warmup` untimed steps: the
  second compiles the eager fold_in of the key for the state the jitted
  step returns) before any is timed; then each round times a block of
  `steps` steps of each in turn, so every N and prior sees the same load.
  """
  timers = {}
  for n in sizes:
    splits = synthetic_splits(n)
    for prior in PRIORS:
      timer = StepTimer(splits, k if prior == "knn" else 0, batch_size,
                        quick)
      _time_block(timer.step, warmup)
      timer.host_s.clear()
      timers[n, prior] = timer
  walls = {key: [] for key in timers}
  for _ in range(rounds):
    for key, timer in timers.items():
      walls[key] += _time_block(timer.step, steps)
  records = []
  for (n, prior), timer in timers.items():
    records.append({
        "job": "exemplar_prior", "prior": prior, "n": n,
        "k": k if prior == "knn" else 0,
        "prior_components": (None if timer.prior_components is None
                             else int(timer.prior_components)),
        "subsample": timer.model.num_subsample,
        "value": round(1e3 * statistics.median(walls[n, prior]), 2),
        "unit": "ms/step",
        "host_ms_median": round(1e3 * statistics.median(timer.host_s), 2),
        "step_ms": [round(1e3 * w, 2) for w in walls[n, prior]],
        "compile_s": round(timer.compile_s, 2), "batch": timer.batch_size,
        "device": benchmark_device.describe()})
  return records


def exemplar_prior_job(args: argparse.Namespace) -> Dict[str, Any]:
  """Prints a line per (N, prior); returns the summary line."""
  sizes = args.n
  table = {}
  for record in measure(sizes, args.k, args.steps, args.rounds,
                        batch_size=args.batch, quick=args.quick):
    print(json.dumps(record), flush=True)
    table[record["prior"], record["n"]] = record["value"]
  first, last = sizes[0], sizes[-1]
  return {"job": "exemplar_prior",
          "value": round(table["exact", last] / table["knn", last], 2),
          "unit": f"exact / kNN ms per step at n={last}", "n": list(sizes),
          "k": args.k,
          **{f"{prior}_ms": [table[prior, n] for n in sizes]
             for prior in PRIORS},
          **{f"{prior}_growth": round(table[prior, last]
                                      / table[prior, first], 2)
             for prior in PRIORS}}


def _sizes(text: str) -> Sequence[int]:
  try:
    sizes = [int(v) for v in text.split(",")]
  except ValueError:
    sizes = []
  if not sizes or any(n < 2 for n in sizes) or sizes != sorted(set(sizes)):
    raise argparse.ArgumentTypeError(
        f"--n {text!r}; expected increasing exemplar counts >= 2 separated "
        "by commas, such as 1000,5000,20000,50000")
  return sizes


def add_exemplar_prior_job(jobs) -> None:
  """The `exemplar_prior` subcommand."""
  parser = jobs.add_parser(
      "exemplar_prior", help="Exemplar VAE step time against N, exact and "
      "kNN priors", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--n", type=_sizes, default=[1000, 5000, 20000, 50000],
                      help="exemplar counts N, increasing")
  parser.add_argument("--k", type=int, default=10,
                      help="neighbours of the kNN prior (eq. 15)")
  parser.add_argument("--steps", type=int, default=5,
                      help="timed steps per prior and round")
  parser.add_argument("--rounds", type=int, default=2,
                      help="rounds, each a block of every N and prior in turn")
  parser.add_argument("--batch", type=int, default=0,
                      help="batch size; 0: the config's (100)")
  parser.add_argument("--quick", action="store_true",
                      help="the config's quick (tiny) networks")
  parser.set_defaults(run=exemplar_prior_job)
