"""Bits per dimension: -log p / (D ln 2) and back."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from nbflows import units


def test_bits_per_dim_of_a_known_density():
  # A uniform density on [0, 2)^D has log p = -D ln 2: one bit per dimension;
  # 1/8 per unit cube is three.
  assert units.bits_per_dim(-64 * math.log(2.0), 64) == 1.0
  np.testing.assert_allclose(
      units.bits_per_dim(np.array([-64.0, -192.0]) * math.log(2.0), 64),
      [1.0, 3.0], rtol=1e-12)


def test_bits_per_dim_keeps_the_array_type_and_traces():
  log_prob = jnp.array([-10.0, -20.0], jnp.float32)
  bits = jax.jit(units.bits_per_dim, static_argnums=1)(log_prob, 5)
  assert isinstance(bits, jax.Array) and bits.dtype == jnp.float32
  np.testing.assert_allclose(bits, [10 / (5 * math.log(2)),
                                    20 / (5 * math.log(2))], rtol=1e-6)
  assert isinstance(units.bits_per_dim(np.zeros(3), 5), np.ndarray)


def test_log_prob_from_bits_per_dim_inverts_bits_per_dim():
  log_prob = np.array([-3.5, -1234.0, 0.25])
  np.testing.assert_allclose(
      units.log_prob_from_bits_per_dim(units.bits_per_dim(log_prob, 784), 784),
      log_prob, rtol=1e-12)
  assert units.log_prob_from_bits_per_dim(2.0, 3) == -6 * math.log(2.0)
