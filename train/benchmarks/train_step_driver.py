"""Times a library model's trainer step and scores a perturbed batch.

The code that `train --model` runs on both sides of `--vs-baseline`
(`train.benchmarks.baseline`): in this process against this checkout's
library, and as ``python -m train.benchmarks.train_step_driver`` inside an
export of the baseline commit against that commit's library. It uses only
what exists at both commits (`configs/`, `registry.build_model`,
`model.init`, `module.apply(..., method="log_prob")`,
`train.loop.trainer.make_train_step` / `compile_train_step`,
`train.loop.state`, and `train.benchmarks.flows` / `peer_models`' helpers),
so the two sides differ only in the library they import.

  python -m train.benchmarks.train_step_driver --model ncl --data mnist5k \
      --steps 5 --log-prob-out /tmp/log_prob.npy

prints one JSON line: the step's times, `nbflows_file` (which library was
imported) and `param_tree` (a digest of the parameter paths and shapes).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
from typing import Any, Dict, List, Optional, Tuple

import jax
import numpy as np

import nbflows
from train.benchmarks import flows
from train.benchmarks import peer_models as models


def config_target(model_name: str, data: str, quick: bool, batch_size: int):
  """(model, params, batch, config) of `model_name` on `data`.

  batch_size 0 keeps the config's; the batch is `models.random_batch`'s
  (seeded, so both sides of `--vs-baseline` see the same images).
  """
  config = models.load_config(model_name, data, quick)
  if batch_size:
    config.batch_size = batch_size
  model = models.registry.build_model(config)
  batch = models.random_batch(config, config.batch_size)
  params = model.init(jax.random.key(0), batch)
  return model, params, batch, config


def perturbed_log_prob(model: Any, params: Any, batch: Dict) -> np.ndarray:
  """log p(x | cond) [B] of the batch on `flows.perturbed(params)`, jitted."""
  cond = model.condition(batch)
  log_prob = jax.jit(lambda p, x, c: model.module.apply(p, x, c,
                                                        method="log_prob"))
  return np.asarray(log_prob(flows.perturbed(params), batch["x"], cond))


def param_tree_digest(params: Any) -> str:
  """A short digest of the parameter paths and shapes (checkpoint layout)."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  layout = ";".join(f"{jax.tree_util.keystr(path)}:{tuple(leaf.shape)}"
                    for path, leaf in leaves)
  return hashlib.sha256(layout.encode()).hexdigest()[:16]


class TrainStepTimer:
  """The trainer's compiled step on one batch, timed in blocks of steps.

  Attributes:
    compile_s: seconds to lower and compile the step.
    memory: XLA's memory analysis of the compiled step.
  """

  def __init__(self, model: Any, config: Any, batch: Dict):
    # pylint: disable=g-import-not-at-top
    from train.loop import sharding
    from train.loop import state as state_lib
    from train.loop import trainer
    optimizer = state_lib.make_optimizer(config.optimizer,
                                         config.num_train_steps)
    self._state = state_lib.create_train_state(model, optimizer,
                                               jax.random.key(0), batch)
    mesh = sharding.make_mesh()
    self.batch = jax.device_put(batch, sharding.data_sharding(mesh))
    step = trainer.compile_train_step(
        trainer.make_train_step(model, optimizer), mesh)
    self._compiled, self.compile_s = flows.timed_compile(
        step, self._state, self.batch)
    self.memory = self._compiled.memory_analysis()

  @property
  def params(self) -> Any:
    return self._state.params

  def _call(self):
    self._state, metrics = self._compiled(self._state, self.batch)
    return metrics["loss"]

  def time(self, steps: int) -> Tuple[List[float], List[float]]:
    """(wall, process-CPU) seconds of `steps` steps."""
    return flows.time_calls(self._call, steps)


def main(argv: Optional[List[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--model", required=True)
  parser.add_argument("--data", default="digits")
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--batch", type=int, default=0)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--log-prob-out", default="",
                      help="where to save perturbed_log_prob (.npy)")
  args = parser.parse_args(argv)
  model, params, batch, config = config_target(args.model, args.data,
                                               args.quick, args.batch)
  if args.log_prob_out:
    np.save(args.log_prob_out, perturbed_log_prob(model, params, batch))
  timer = TrainStepTimer(model, config, batch)
  timer.time(args.warmup)
  walls, cpus = timer.time(args.steps)
  print(json.dumps({
      "nbflows_file": nbflows.__file__, "compile_s": timer.compile_s,
      "step_s_median": statistics.median(walls),
      "cpu_s_per_step": statistics.median(cpus), "walls": walls,
      "param_tree": param_tree_digest(params)}), flush=True)


if __name__ == "__main__":
  main()
