"""The flow jobs of `train.benchmark`: train, logprob, sample, compile, matmul.

Every job returns one dict (`job`, `value`, `unit`, details) that
`train.benchmark` prints as a JSON line. Times are medians over steps after
warm-up; compile times come from `jit(...).lower(...).compile()` and are
reported apart from the steps. `cpu_s_per_step` is the process CPU time per
step (both threads): on a shared machine it drifts less with the load than
wall time, so it tells two formulations apart when wall times cannot.

With `--vs-peer`, `train --arch` also runs ``../shared/bench/
torch_realnvp.py`` in `--rounds` rounds alternating with its own (peer run,
then our block of steps, and again), so both see the same load.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from nbflows.distributions import gaussian
from train.benchmarks import peer_models as models

PEER_DIR = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
    os.pardir, "shared", "bench"))


def time_calls(call: Callable[[], Any], steps: int) -> Tuple[List[float],
                                                            List[float]]:
  """Wall and process-CPU seconds of `steps` calls of `call` (blocking)."""
  walls, cpus = [], []
  for _ in range(steps):
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(call())
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
  return walls, cpus


def timed_compile(jitted: Callable, *args) -> Tuple[Callable, float]:
  """(compiled function, seconds to lower and compile it for `args`)."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - start


def matmul_rate(n: int = 1024, steps: int = 10) -> float:
  """Measured float32 GFLOP/s of an [n, n] x [n, n] jitted matmul."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)),
                  jnp.float32)
  product = jax.jit(jnp.matmul)
  jax.block_until_ready(product(a, a))
  walls, _ = time_calls(lambda: product(a, a), steps)
  return 2.0 * n**3 / statistics.median(walls) / 1e9


def matmul_job(args: argparse.Namespace) -> Dict[str, Any]:
  """The matmul rate that the floors of the other figures divide by."""
  rate = matmul_rate(args.n, args.steps)
  return {"job": "matmul", "value": round(rate, 2), "unit": "GFLOP/s",
          "n": args.n, "dtype": "float32", "devices": _devices()}


def peak_rss_mb() -> float:
  """Peak resident set size of this process so far, in MiB (Linux: KiB units)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _devices() -> str:
  return f"{len(jax.devices())} x {jax.devices()[0].platform}"


def _peer_train(arch: str, steps: int, warmup: int) -> Dict[str, Any]:
  """One run of torch_realnvp.py: its JSON line plus its CPU seconds."""
  script = os.path.join(PEER_DIR, "torch_realnvp.py")
  if not os.path.exists(script):
    raise FileNotFoundError(f"peer script {script} not found")
  completed = subprocess.run(
      [sys.executable, script, "--arch", arch, "--steps", str(steps),
       "--warmup", str(warmup)], check=True, capture_output=True, text=True)
  return json.loads(completed.stdout.strip().splitlines()[-1])


def perturbed(params: Any, scale: float = 0.05) -> Any:
  """params plus N(0, scale^2) noise: a fresh flow is the identity (its
  output layers are zero), which would make any log-likelihood check pass."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  return jax.tree.unflatten(treedef, [
      leaf + scale * jax.random.normal(key, leaf.shape, leaf.dtype)
      for leaf, key in zip(leaves, keys)])


def reference_gap(fast: Callable, reference: Callable, params: Any,
                  x: jax.Array) -> float:
  """max |log p| difference of the jitted fast path and the reference path
  (run op by op), on perturbed params."""
  params = perturbed(params)
  fast_value = jax.jit(fast)(params, x)
  with jax.disable_jit():
    reference_value = reference(params, x)
  return float(jnp.max(jnp.abs(fast_value - reference_value)))


def _arch_check(args: argparse.Namespace, chain, params, x) -> float:
  """The fast path (`--conv-impl`, `--scan`) against op-by-op nn.Conv."""
  reference = models.arch_flow(args.arch, args.layers, args.scan, "xla")
  return reference_gap(lambda p, x: models.arch_log_prob(chain, p, x),
                       lambda p, x: models.arch_log_prob(reference, p, x),
                       params, x[:8])


def train_arch_job(args: argparse.Namespace) -> Dict[str, Any]:
  """Training throughput of the peer's conv or mlp RealNVP."""
  chain = models.arch_flow(args.arch, args.layers, args.scan, args.conv_impl)
  xs = models.arch_batches(args.arch, batch=args.batch)
  params = chain.init(jax.random.key(0), xs[0])
  optimizer, step = models.arch_train_step(chain)
  opt_state = optimizer.init(params)
  gap = _arch_check(args, chain, params, xs[0])
  compiled, compile_s = timed_compile(step, params, opt_state, xs[0])
  state = [params, opt_state, 0]

  def call():
    state[0], state[1], loss = compiled(state[0], state[1],
                                        xs[state[2] % len(xs)])
    state[2] += 1
    return loss

  time_calls(call, args.warmup)
  walls, cpus, peers = [], [], []
  for _ in range(args.rounds):
    if args.vs_peer:
      peers.append(_peer_train(args.arch, args.steps, args.warmup))
    round_walls, round_cpus = time_calls(call, args.steps)
    walls += round_walls
    cpus += round_cpus
  batch = xs[0].shape[0]
  images_per_s = batch / statistics.median(walls)
  result = {**_floor(3.0 * _arch_flops(args), "train_gflop_per_image"),
      "job": "train", "arch": args.arch, "value": round(images_per_s, 2),
      "unit": "images/s", "batch": batch, "layers": args.layers,
      "scan": args.scan, "conv_impl": args.conv_impl,
      "compile_s": round(compile_s, 3), "step_s_median": round(statistics.median(walls), 6),
      "cpu_s_per_step": round(statistics.median(cpus), 4),
      "steps": len(walls),
      "max_abs_logprob_diff_vs_reference": gap,
      "xla_flags": os.environ.get("XLA_FLAGS", ""), "devices": _devices()}
  if peers:
    peer_value = statistics.median(p["images_per_s"] for p in peers)
    result.update({"peer": "torch", "peer_value": round(peer_value, 2),
                   "peer_rounds": [round(p["images_per_s"], 2)
                                   for p in peers],
                   "peer_threads": peers[0]["threads"],
                   "peer_params": peers[0]["params"],
                   "speedup": round(images_per_s / peer_value, 3)})
  return result


def _config_target(args: argparse.Namespace):
  """(model, params, batch, config) of `--model` on `--data`."""
  # pylint: disable=g-import-not-at-top
  from train.benchmarks import train_step_driver
  return train_step_driver.config_target(args.model, args.data, args.quick,
                                         args.batch)


def train_model_job(args: argparse.Namespace) -> Dict[str, Any]:
  """Training throughput and peak memory of a library model (trainer step).

  With `--vs-baseline`, each of `--rounds` rounds first runs the same job
  at `baseline.BASELINE_COMMIT` (`train.benchmarks.baseline`), then this
  checkout's block of `--steps` steps.
  """
  # pylint: disable=g-import-not-at-top
  from train.benchmarks import baseline
  from train.benchmarks import train_step_driver as driver
  model, params, batch, config = _config_target(args)
  timer = driver.TrainStepTimer(model, config, batch)
  timer.time(args.warmup)
  walls, cpus, baselines = [], [], []
  with contextlib.ExitStack() as stack:
    if args.vs_baseline:
      tree = stack.enter_context(baseline.exported_commit())
      log_prob_path = os.path.join(tree, "baseline_log_prob.npy")
    for _ in range(args.rounds):
      if args.vs_baseline:
        baselines.append(baseline.run_driver(tree, args, log_prob_path))
      round_walls, round_cpus = timer.time(args.steps)
      walls += round_walls
      cpus += round_cpus
    if args.vs_baseline:
      gap = baseline.max_abs_diff(
          driver.perturbed_log_prob(model, params, batch), log_prob_path)
  size = batch["x"].shape[0]
  images_per_s = size / statistics.median(walls)
  train_flops = 3.0 * models.config_flops_per_image(model, timer.params,
                                                    batch)
  result = {**_floor(train_flops, "train_gflop_per_image"),
      "job": "train", "model": args.model, "data": args.data,
      "value": round(images_per_s, 2),
      "unit": "images/s", "batch": size, "compile_s": round(timer.compile_s, 3),
      "step_s_median": round(statistics.median(walls), 6),
      "cpu_s_per_step": round(statistics.median(cpus), 4),
      "steps": len(walls),
      "xla_temp_mb": round(timer.memory.temp_size_in_bytes / 2**20, 1),
      "peak_rss_mb": round(peak_rss_mb(), 1),
      "xla_flags": os.environ.get("XLA_FLAGS", ""), "devices": _devices()}
  if baselines:
    baseline_walls = [w for run in baselines for w in run["walls"]]
    baseline_value = size / statistics.median(baseline_walls)
    result.update({
        "baseline": baseline.BASELINE_COMMIT,
        "baseline_value": round(baseline_value, 2),
        "baseline_rounds": [round(size / run["step_s_median"], 2)
                            for run in baselines],
        "baseline_cpu_s_per_step": round(statistics.median(
            run["cpu_s_per_step"] for run in baselines), 4),
        "baseline_compile_s": round(baselines[0]["compile_s"], 3),
        "baseline_nbflows_file": baselines[0]["nbflows_file"],
        "speedup": round(images_per_s / baseline_value, 3),
        "param_tree_equal": (baselines[0]["param_tree"]
                             == driver.param_tree_digest(params)),
        "max_abs_logprob_diff_vs_baseline": gap})
  return result


def _floor(flops_per_image: float, name: str) -> Dict[str, float]:
  """The figure's floor: FLOPs per image over the measured matmul rate."""
  rate = matmul_rate()
  return {name: round(flops_per_image / 1e9, 5),
          "matmul_gflop_s": round(rate, 2),
          "floor_images_per_s": round(rate * 1e9 / flops_per_image, 2)}


def _arch_flops(args: argparse.Namespace) -> float:
  """Forward FLOPs per image of the arch's couplers."""
  count = (models.conv_flops_per_image if args.arch == "conv"
           else models.mlp_flops_per_image)
  return count(args.layers)


def _eval_target(args: argparse.Namespace):
  """(log_prob(params, x), sample(params, key), params, x, forward FLOPs
  per image) for the job."""
  if args.model:
    model, params, batch, _ = _config_target(args)
    flops = models.config_flops_per_image(model, params, batch)
    x, cond = batch["x"], model.condition(batch)
    n_or_cond = x.shape[0] if cond is None else cond

    def log_prob(p, x):
      return model.module.apply(p, x, cond[:x.shape[0]] if cond is not None
                                else None, method="log_prob")

    return (log_prob, lambda p, key: model.sample(p, key, n_or_cond),
            params, x, flops)
  chain = models.arch_flow(args.arch, args.layers, args.scan, args.conv_impl)
  x = models.arch_batches(args.arch, 1, args.batch)[0]
  params = chain.init(jax.random.key(0), x)

  def sample(p, key):
    z = gaussian.standard_normal_sample(key, x.shape, 1.0)
    return chain.apply(p, z, method="inverse")[0]

  return (lambda p, x: models.arch_log_prob(chain, p, x), sample, params, x,
          _arch_flops(args))


def _throughput(args, fn: Callable, fn_args: tuple, size: int, job: str,
                flops: float) -> Dict[str, Any]:
  """Times the jitted `fn(*fn_args)` that handles `size` images a call;
  `flops` per image (the forward pass's: sampling runs the inverse, which
  costs the same couplers)."""
  compiled, compile_s = timed_compile(jax.jit(fn), *fn_args)
  time_calls(lambda: compiled(*fn_args), args.warmup)
  walls, cpus = time_calls(lambda: compiled(*fn_args), args.steps)
  what = ({"model": args.model, "data": args.data} if args.model
          else {"arch": args.arch, "layers": args.layers})
  return {"job": job, **what, **_floor(flops, "gflop_per_image"),
          "value": round(size / statistics.median(walls), 2),
          "unit": "images/s", "batch": size, "compile_s": round(compile_s, 3),
          "call_s_median": round(statistics.median(walls), 6),
          "cpu_s_per_call": round(statistics.median(cpus), 4),
          "devices": _devices()}


def logprob_job(args: argparse.Namespace) -> Dict[str, Any]:
  """Evaluation throughput: jitted log p(x) of a batch."""
  log_prob, _, params, x, flops = _eval_target(args)
  result = _throughput(args, log_prob, (params, x), x.shape[0], "logprob",
                       flops)
  if args.model:
    gap = reference_gap(log_prob, log_prob, params, x[:8])
  else:
    chain = models.arch_flow(args.arch, args.layers, args.scan,
                             args.conv_impl)
    gap = _arch_check(args, chain, params, x)
  result["max_abs_logprob_diff_vs_reference"] = gap
  return result


def sample_job(args: argparse.Namespace) -> Dict[str, Any]:
  """Sampling throughput: jitted prior draw and inverse pass of a batch."""
  _, sample, params, x, flops = _eval_target(args)
  return _throughput(args, sample, (params, jax.random.key(1)), x.shape[0],
                     "sample", flops)


def compile_job(args: argparse.Namespace) -> Dict[str, Any]:
  """First-step compile time of the arch's train step as depth grows.

  A 2-coupling step is compiled first and not counted: the first compile
  of a process also pays one-time set-up (its time is reported apart).
  """

  def compile_seconds(layers: int) -> float:
    chain = models.arch_flow(args.arch, layers, args.scan, args.conv_impl)
    x = models.arch_batches(args.arch, 1, args.batch)[0]
    params = chain.init(jax.random.key(0), x)
    optimizer, step = models.arch_train_step(chain)
    return timed_compile(step, params, optimizer.init(params), x)[1]

  warm_up = compile_seconds(2)
  times = {layers: compile_seconds(layers) for layers in args.depths}
  first, last = times[args.depths[0]], times[args.depths[-1]]
  return {"job": "compile", "arch": args.arch, "scan": args.scan,
          "conv_impl": args.conv_impl,
          "value": round(last, 3), "unit": "s",
          "compile_s": {str(k): round(v, 3) for k, v in times.items()},
          "growth": round(last / first - 1.0, 3),
          "warm_up_compile_s": round(warm_up, 3), "devices": _devices()}
