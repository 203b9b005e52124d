"""Data parallelism: one train step on 8 (forced CPU) devices equals one on 1.

The device count of a process is fixed when JAX starts, so the check runs in
a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=8.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EIGHT_DEVICE_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from configs import default
    from nbflows.models import registry
    from train.evaluation import evaluate
    from train.loop import sharding
    from train.loop import state as state_lib
    from train.loop import trainer

    assert jax.device_count() == 8, jax.devices()
    config = default.get_config("quick")
    config.model, config.dataset = "rnvp_mlp", "two_rectangles"
    config.optimizer.warmup_steps = 0   # a full learning rate at step 0
    model = registry.build_model(config)
    optimizer = state_lib.make_optimizer(config.optimizer, 100)
    rng = np.random.default_rng(0)
    batch = {"x": rng.uniform(size=(16, 2)).astype(np.float32)}
    eval_batch = {"x": rng.uniform(size=(13, 2)).astype(np.float32)}

    @jax.jit
    def initial_state(key):
      # Perturbed away from the identity initialisation (zero last layers),
      # so that every parameter has a gradient.
      state = state_lib.create_train_state(model, optimizer, key, batch)
      leaves, tree = jax.tree.flatten(state.params)
      keys = jax.random.split(jax.random.key(1), len(leaves))
      leaves = [p + 0.05 * jax.random.normal(k, p.shape)
                for p, k in zip(leaves, keys)]
      return state.replace(params=jax.tree.unflatten(tree, leaves))

    state = initial_state(jax.random.key(0))
    train_step = trainer.make_train_step(model, optimizer)
    results = {}
    for devices in (8, 1):
      mesh = sharding.make_mesh(jax.devices()[:devices])
      global_batch = sharding.shard_batch(batch, mesh)
      step = trainer.compile_train_step(train_step, mesh)
      copy = jax.device_put(jax.tree.map(jnp.copy, state),
                            sharding.replicated(mesh))
      new_state, metrics = step(copy, global_batch)
      results[devices] = jax.device_get((new_state.params, metrics))
      # 13 examples padded to 16: the padding must not enter the mean.
      results[devices, "eval"] = evaluate.evaluate_split(
          model, jax.device_put(state.params, sharding.replicated(mesh)),
          [eval_batch], mesh, 13, 0)
      if devices == 8:
        x = global_batch["x"]
        assert x.sharding.spec == jax.sharding.PartitionSpec("data"), x.sharding
        shards = sorted((s.device.id, s.index[0].start, s.data.shape)
                        for s in x.addressable_shards)
        assert shards == [(d, 2 * d, (2, 2)) for d in range(8)], shards
        assert all(p.sharding.is_fully_replicated
                   for p in jax.tree.leaves(new_state.params))
        try:
          sharding.check_batch_size(12, mesh)
          raise AssertionError("12 examples over 8 devices did not raise")
        except ValueError as error:
          assert ("config.batch_size=12 is not divisible by the 8 devices"
                  in str(error)), error

    (params8, metrics8), (params1, metrics1) = results[8], results[1]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                         atol=1e-6),
                 params8, params1)
    np.testing.assert_allclose(metrics8["loss"], metrics1["loss"], rtol=1e-6)
    np.testing.assert_allclose(metrics8["grad_norm"], metrics1["grad_norm"],
                               rtol=1e-5)
    initial = jax.tree.leaves(jax.device_get(state.params))
    moved = [float(np.max(np.abs(a - b)))
             for a, b in zip(jax.tree.leaves(params1), initial)]
    assert min(moved) > 1e-5, moved   # every parameter took a step
    full = float(np.mean(model.bits_per_dim(state.params, eval_batch["x"])))
    for devices in (8, 1):
      assert abs(results[devices, "eval"]["bpd"] - full) < 1e-5, (results, full)
    print("OK")
""")


def run_on_8_devices(script: str) -> None:
  """Runs `script` in a fresh process with 8 forced CPU devices; it prints OK."""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=REPO)
  run = subprocess.run([sys.executable, "-c", script], env=env,
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0 and run.stdout.strip().endswith("OK"), (
      run.stdout[-3000:] + run.stderr[-3000:])


def test_sharded_step_on_8_devices_equals_the_single_device_step():
  run_on_8_devices(EIGHT_DEVICE_SCRIPT)


TWO_PROCESS_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    process_id, port, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                               num_processes=2, process_id=process_id)
    import numpy as np
    from configs import default
    from nbflows.data import sources
    from tiny_flow import tiny_model
    from train.loop import checkpoint
    from train.loop import sharding
    from train.loop import state as state_lib
    from train.loop import trainer

    assert jax.process_count() == 2 and jax.device_count() == 2
    config = default.get_config("quick")
    config.dataset, config.num_train_steps, config.batch_size = (
        "two_rectangles", 6, 8)
    config.eval_every_steps = config.checkpoint_every_steps = 3
    config.log_every_steps = 3
    config.optimizer.warmup_steps = 0
    splits = sources.load("two_rectangles", num_toy_examples=400)
    model = tiny_model()
    results = trainer.train(config, workdir, model, splits)
    ckpt = checkpoint.Checkpointer(workdir, read_only=True)
    optimizer = state_lib.make_optimizer(config.optimizer, 6)
    abstract = jax.eval_shape(lambda key: state_lib.create_train_state(
        model, optimizer, key, {"x": jax.numpy.zeros((8, 2))}),
        jax.random.key(0))
    replicated = sharding.replicated(sharding.make_mesh())
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
        x.shape, x.dtype, sharding=replicated), abstract)
    restored = ckpt.restore(ckpt.latest_step(), abstract)[0].params
    params = jax.tree.map(lambda p: np.asarray(p).tolist(), restored)
    print("RESULT " + json.dumps({"results": results, "params": params}))
""")


def test_two_processes_train_together_and_agree():
  """jax.distributed over localhost: 2 processes, 1 CPU device each."""
  import json
  import socket
  import tempfile
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = str(s.getsockname()[1])
  workdir = tempfile.mkdtemp()
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]))
  workers = [subprocess.Popen(
      [sys.executable, "-c", TWO_PROCESS_SCRIPT, str(i), port, workdir],
      env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(2)]
  outputs = [worker.communicate(timeout=300) for worker in workers]
  reports = []
  for worker, (stdout, stderr) in zip(workers, outputs):
    assert worker.returncode == 0, stdout[-2000:] + stderr[-3000:]
    line = [l for l in stdout.splitlines() if l.startswith("RESULT ")][-1]
    reports.append(json.loads(line[len("RESULT "):]))
  assert reports[0] == reports[1]          # same parameters, same test bpd
  assert reports[0]["results"]["steps_trained"] == 6
  shift = reports[0]["params"]["params"]["shift"]
  assert any(abs(v) > 1e-3 for v in shift)  # it trained
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    lines = [json.loads(line) for line in f]
  # Only process 0 writes: each record once.
  assert [(l["step"], l["split"]) for l in lines] == [
      (3, "train"), (3, "validation"), (6, "train"), (6, "validation"),
      (6, "test")]
