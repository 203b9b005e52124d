"""NCL (paper 1, eq. 7 and 9, App. B.1), NCL-pool and contrastive training
(eq. 10).

The model-level properties; the layer-level bijector contract (round trip,
log-det against autodiff, jit against eager) of `NeighbourhoodAffine` and
`NCLTransform`, in both forms, runs in tests/test_bijectors.py.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import neighbourhood_checks
from configs import ncl_digits
from nbflows.bijectors import ncl as ncl_bijectors
from nbflows.distributions import gaussian
from nbflows.models import ncl
from nbflows.models import registry
from nbflows.objectives import contrastive

# Compiles of tiny programs are this module's time (conftest.py).
pytestmark = pytest.mark.usefixtures("fast_compiles")

B, K = 3, 4
EVENT = (8, 8, 1)


def tiny_config(statistics="concat", **contrastive_fields):
  config = ncl_digits.get_config("quick")
  with config.unlocked():
    config.flow.num_scales = 1            # four checkerboard couplings
    config.flow.hidden_channels = 4
    config.neighbours.k = K
    config.ncl.statistics = statistics
    for name, value in contrastive_fields.items():
      config.contrastive[name] = value
  return config


def perturb(params, key, scale=0.1):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(treedef, [
      leaf + scale * jax.random.normal(k, leaf.shape)
      for leaf, k in zip(leaves, keys)])


def data_units(key, shape):
  return jax.random.uniform(key, shape, minval=0.0, maxval=16.99)


@functools.cache
def setup(statistics="concat"):
  """(model, perturbed params, x [B], neighbours [B, K])."""
  model = registry.build_model(tiny_config(statistics))
  kx, kn = jax.random.split(jax.random.key(0))
  x = data_units(kx, (B, *EVENT))
  neighbours = data_units(kn, (B, K, *EVENT))
  params = jax.jit(model.init)(jax.random.key(1),
                               {"x": x, "neighbours": neighbours})
  return model, perturb(params, jax.random.key(2)), x, neighbours


@functools.cache
def jitted_apply(model):
  return jax.jit(model.module.apply, static_argnames="method")


def test_log_prob_is_the_gaussian_of_eq7_on_latents_of_the_shared_flow():
  model, params, x, neighbours = setup()
  apply = jitted_apply(model)
  z, logdet = apply(params, x, method=ncl.latents_and_logdet)
  # The neighbours go through the same q (shared parameters).
  latents, _ = apply(
      params, neighbours.reshape(B * K, *EVENT), method=ncl.latents_and_logdet)
  mean, log_scale = apply(
      params, latents.reshape(B, K, *EVENT), method=ncl.statistics_of_latents)
  expected = gaussian.diagonal_normal_log_prob(z, mean, log_scale) + logdet
  np.testing.assert_allclose(model.log_prob(params, x, neighbours), expected,
                             rtol=1e-5, atol=1e-3)
  # The perturbed head really moves and scales the Gaussian.
  assert float(jnp.abs(mean).min()) > 0 and float(jnp.abs(log_scale).min()) > 0


def test_forward_is_eq9_and_inverse_undoes_it():
  model, params, x, neighbours = setup()
  y, logdet = model.forward(params, x, neighbours)
  lp = gaussian.standard_normal_log_prob(y) + logdet      # Alg. 1
  np.testing.assert_allclose(lp, model.log_prob(params, x, neighbours),
                             rtol=1e-6)
  x_back, logdet_inverse = model.inverse(params, y, neighbours)
  np.testing.assert_allclose(x_back, x, atol=1e-4)
  np.testing.assert_allclose(logdet_inverse, -logdet, rtol=1e-5, atol=1e-3)


def test_pool_variant_ignores_neighbour_order_and_takes_any_k():
  model, params, x, neighbours = setup("pool")
  assert model.num_neighbours is None
  lp = model.log_prob(params, x, neighbours)
  shuffled = neighbours[:, np.array([2, 0, 3, 1])]
  np.testing.assert_allclose(model.log_prob(params, x, shuffled), lp,
                             rtol=1e-6, atol=1e-4)
  single = model.log_prob(params, x, neighbours[:, :1])
  assert single.shape == (B,) and np.all(np.isfinite(single))
  # Repeating every neighbour twice keeps the mean and max pooling, so the
  # density is unchanged: the head is a function of the set, not of k.
  doubled = jnp.concatenate([neighbours, neighbours], axis=1)
  np.testing.assert_allclose(model.log_prob(params, x, doubled), lp,
                             rtol=1e-6, atol=1e-4)
  # ... and another neighbourhood changes it.
  assert not np.allclose(model.log_prob(params, x, neighbours[::-1]), lp)


def test_concat_depends_on_neighbour_order_and_takes_only_its_k():
  neighbourhood_checks.check_order_matters_and_k_is_fixed(*setup())


def test_app_b1_head_concatenates_neighbour_features_in_order():
  """Neighbour j's shared features feed input channels [j F, (j + 1) F) of
  both branches' first layer: permuting the neighbours and those channel
  blocks of the kernels alike leaves g_mu and g_sigma unchanged."""
  hidden, k = 4, 3
  head = ncl_bijectors.LatentStatistics(hidden=hidden, num_neighbours=k)
  latents = jax.random.normal(jax.random.key(0), (2, k, 4, 4, 1))
  params = perturb(head.init(jax.random.key(1), latents), jax.random.key(2))
  apply = jax.jit(head.apply)
  for name in ("mean0", "log_scale0"):
    assert params["params"][name]["kernel"].shape == (3, 3, k * hidden,
                                                      hidden)
  mean, log_scale = apply(params, latents)
  order = np.array([2, 0, 1])
  blocks = np.concatenate([np.arange(j * hidden, (j + 1) * hidden)
                           for j in order])
  permuted = jax.tree.map(lambda p: p, params)
  for name in ("mean0", "log_scale0"):
    kernel = params["params"][name]["kernel"]
    permuted["params"][name]["kernel"] = kernel[:, :, blocks]
  mean_p, log_scale_p = apply(permuted, latents[:, order])
  np.testing.assert_allclose(mean_p, mean, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(log_scale_p, log_scale, rtol=1e-5, atol=1e-5)
  # The order is not irrelevant: with the kernels left alone it changes.
  assert not np.allclose(apply(params, latents[:, order])[0], mean,
                         atol=1e-3)
  assert float(jnp.abs(log_scale).max()) < head.max_log_scale    # bounded


def test_unknown_statistics_or_a_train_subset_with_concat_is_an_error():
  with pytest.raises(ValueError, match=r"config.ncl.statistics='mean'; "
                                       r"expected one of \('concat', 'pool'\)"):
    registry.build_model(tiny_config("mean"))
  config = tiny_config()
  config.neighbours.train_subset_k = 2
  with pytest.raises(ValueError, match="train_subset_k=2 with "
                                       "config.ncl.statistics='concat'"):
    registry.build_model(config)
  config.ncl.statistics = "pool"           # NCL-pool takes a random subset
  assert registry.build_model(config).num_neighbours is None
  with pytest.raises(ValueError, match="form='concat' with num_neighbours="
                                       "None"):
    ncl_bijectors.LatentStatistics(hidden=4).init(jax.random.key(0),
                                                  jnp.zeros((1, 2, 4, 4, 1)))


def test_targets_log_prob_matches_log_prob_per_target():
  model, params, x, neighbours = setup()
  targets = jnp.stack([x, x[::-1]])
  both = jitted_apply(model)(params, targets, neighbours,
                             method="targets_log_prob")
  for p in range(2):
    np.testing.assert_allclose(both[p], model.log_prob(params, targets[p],
                                                       neighbours),
                               rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("bad, expected", [
    (None, "needs cond"),
    ("no k axis", r"cond has shape \(3, 8, 8, 1\)"),
    ("small images", r"cond has shape \(3, 4, 4, 4, 1\)"),
    ("wrong batch", r"cond has shape \(2, 4, 8, 8, 1\)"),
])
def test_wrong_or_missing_neighbourhood_names_the_expected_shape(bad, expected):
  model, params, x, neighbours = setup()
  cond = {None: None, "no k axis": neighbours[:, 0],
          "small images": neighbours[:, :, :4, :4],
          "wrong batch": neighbours[:2]}[bad]
  for call in (lambda: model.log_prob(params, x, cond),
               lambda: model.forward(params, x, cond),
               lambda: model.inverse(params, x, cond)):
    with pytest.raises(ValueError, match=expected) as error:
      call()
    assert "[3, 4, 8, 8, 1] (k = 4 neighbours, nearest first)" in str(
        error.value)


def test_module_raises_without_the_facade_too():
  model, params, x, neighbours = setup()
  with pytest.raises(ValueError,
                     match=r"cond is missing.*\[batch, k, 8, 8, 1\]"):
    model.module.apply(params, x, None, method="log_prob")
  with pytest.raises(ValueError, match=r"expected neighbourhoods of shape"):
    model.module.apply(params, x, neighbours[:, 0], method="log_prob")


# ------------------------------------------------------------ eq. 10
def test_contrastive_loss_by_hand():
  pos = jnp.array([1.0, 2.0, 0.5])
  neg = jnp.array([1.2, 3.0, 0.4])
  loss, metrics = contrastive.contrastive_loss(pos, neg, margin_bpd=0.5,
                                               weight=2.0)
  hinges = [max(0.0, 0.5 + 1.0 - 1.2), max(0.0, 0.5 + 2.0 - 3.0),
            max(0.0, 0.5 + 0.5 - 0.4)]                  # 0.3, 0, 0.6
  np.testing.assert_allclose(
      loss, np.mean([1.0, 2.0, 0.5]) + 2 * np.mean(hinges), rtol=1e-6)
  np.testing.assert_allclose(metrics["hinge"], np.mean(hinges), rtol=1e-6)
  np.testing.assert_allclose(metrics["margin_met"], 1 / 3, rtol=1e-6)


def test_hinge_is_zero_and_flat_once_the_margin_is_met():
  pos = jnp.array([1.0, 2.0])
  neg = pos + 0.5 + jnp.array([0.0, 0.3])          # bpd(x') >= bpd(x) + m
  loss, metrics = contrastive.contrastive_loss(pos, neg, margin_bpd=0.5)
  assert float(metrics["hinge"]) == 0.0 and float(metrics["margin_met"]) == 1
  np.testing.assert_allclose(loss, jnp.mean(pos))
  grad_neg = jax.grad(lambda n: contrastive.contrastive_loss(pos, n)[0])(neg)
  np.testing.assert_array_equal(grad_neg, 0.0)
  # Short of the margin, the hinge pushes bpd(x' | N) up (log p(x' | N) down).
  grad_neg = jax.grad(lambda n: contrastive.contrastive_loss(pos, n)[0])(pos)
  assert np.all(np.asarray(grad_neg) < 0)


def test_negatives_come_from_other_examples_of_the_batch():
  x = jnp.arange(5)
  for seed in range(10):
    rolled = contrastive.roll_negatives(jax.random.key(seed), x)
    assert sorted(rolled.tolist()) == list(range(5))
    assert np.all(np.asarray(rolled) != np.asarray(x))
  with pytest.raises(ValueError, match="at least 2"):
    contrastive.roll_negatives(jax.random.key(0), x[:1])


def test_model_contrastive_loss_equals_hand_computation():
  model, params, x, neighbours = setup()
  contrastive_model = registry.build_model(
      tiny_config(enabled=True, margin_bpd=0.5, weight=3.0))
  key = jax.random.key(5)
  batch = {"x": x, "neighbours": neighbours}
  loss, metrics = contrastive_model.loss(params, batch, key)
  bits = 1.0 / (math.prod(EVENT) * math.log(2.0))
  positive = -model.log_prob(params, x, neighbours) * bits
  negative = -model.log_prob(params, contrastive.roll_negatives(key, x),
                             neighbours) * bits
  hinges = np.maximum(0.0, 0.5 + positive - negative)
  np.testing.assert_allclose(loss, positive.mean() + 3.0 * hinges.mean(),
                             rtol=1e-5)
  np.testing.assert_allclose(metrics["bpd"], positive.mean(), rtol=1e-5)
  # Disabled, the loss is the conditional bits/dim alone.
  plain, _ = model.loss(params, batch, key)
  np.testing.assert_allclose(plain, positive.mean(), rtol=1e-5)


def test_contrastive_settings_are_validated():
  with pytest.raises(ValueError, match="margin_bpd=-1"):
    registry.build_model(tiny_config(enabled=True, margin_bpd=-1.0))
