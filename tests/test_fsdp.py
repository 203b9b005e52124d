"""FSDP-style parameter sharding: the same step as with replicated parameters.

Runs in a subprocess with 8 forced CPU devices (the device count is fixed
when JAX starts).
"""
from __future__ import annotations

import textwrap

import test_sharding
from train.loop import sharding

EIGHT_DEVICE_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from configs import default
    from nbflows.models import registry
    from train.loop import sharding
    from train.loop import state as state_lib
    from train.loop import trainer

    assert jax.device_count() == 8, jax.devices()
    config = default.get_config("quick")
    config.model, config.dataset = "rnvp_mlp", "two_rectangles"
    config.flow.mlp_hidden = (64, 64)
    config.optimizer.warmup_steps = 0
    model = registry.build_model(config)
    optimizer = state_lib.make_optimizer(config.optimizer, 100)
    batch = {"x": np.random.default_rng(0).uniform(size=(16, 2)).astype(
        np.float32)}
    mesh = sharding.make_mesh()
    global_batch = sharding.shard_batch(batch, mesh)

    @jax.jit
    def initial_state(key):
      # Perturbed away from the identity initialisation (zero last layers).
      state = state_lib.create_train_state(model, optimizer, key, batch)
      leaves, tree = jax.tree.flatten(state.params)
      keys = jax.random.split(jax.random.key(1), len(leaves))
      return state.replace(params=jax.tree.unflatten(tree, [
          p + 0.05 * jax.random.normal(k, p.shape)
          for p, k in zip(leaves, keys)]))

    state = jax.device_get(initial_state(jax.random.key(0)))
    train_step = trainer.make_train_step(model, optimizer)
    results = {}
    for fsdp in (False, True):
      shardings = sharding.state_sharding(state, mesh, fsdp, min_size=1024)
      step = trainer.compile_train_step(train_step, mesh, shardings)
      copy = jax.device_put(jax.tree.map(jnp.copy, state), shardings)
      new_state, metrics = step(copy, global_batch)   # donates `copy`
      params = jax.tree.leaves(new_state.params)
      moments = jax.tree.leaves(new_state.opt_state)
      sharded = [p for p in params if not p.sharding.is_fully_replicated]
      sharded_moments = [m for m in moments
                         if not m.sharding.is_fully_replicated]
      if fsdp:
        # The [..., 64, 64] kernels are split 8 ways, and Adam's two moments
        # of each of them alike.
        assert sharded and all(p.addressable_shards[0].data.size * 8 == p.size
                               for p in sharded + sharded_moments)
        assert any(p.shape[-2:] == (64, 64) for p in sharded)
        assert len(sharded_moments) == 2 * len(sharded)
      else:
        assert not sharded and not sharded_moments
      results[fsdp] = jax.device_get((new_state, metrics))

    (replicated, m0), (fsdp, m1) = results[False], results[True]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                         atol=1e-6),
                 (replicated.params, replicated.opt_state),
                 (fsdp.params, fsdp.opt_state))
    np.testing.assert_allclose(m0["loss"], m1["loss"], rtol=1e-6)
    moved = [float(np.max(np.abs(a - b))) for a, b in zip(
        jax.tree.leaves(fsdp.params), jax.tree.leaves(state.params))]
    assert min(moved) > 1e-5, moved   # every parameter took a step
    print("OK")
""")


def test_fsdp_step_on_8_devices_equals_the_replicated_step():
  test_sharding.run_on_8_devices(EIGHT_DEVICE_SCRIPT)


def test_fsdp_spec_picks_the_largest_divisible_dimension():
  assert sharding.fsdp_spec((6, 40, 64), 8, 1) == sharding.PartitionSpec(
      None, None, "data")             # 64 and 40 both split; 64 is larger
  assert sharding.fsdp_spec((6, 40, 63), 8, 1) == sharding.PartitionSpec(
      None, "data", None)             # 63 does not split over 8
  assert sharding.fsdp_spec((6, 7), 8, 1) == sharding.PartitionSpec()
  assert sharding.fsdp_spec((64, 64), 8, 4097) == sharding.PartitionSpec()
