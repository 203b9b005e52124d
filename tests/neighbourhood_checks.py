"""Checks shared by tests/test_ncl.py and tests/test_nct.py.

NCL (App. B.1) and NCT (eq. 8) concatenate the k neighbours in order of
distance, so their density depends on that order and takes no other k.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def check_order_matters_and_k_is_fixed(model, params, x, neighbours) -> None:
  """Swapping the two nearest neighbours moves every log-density; k = 1 and
  k = 2K are refused by the facade and by the module, naming both k."""
  batch, k = neighbours.shape[:2]
  assert model.num_neighbours == k
  lp = model.log_prob(params, x, neighbours)
  order = np.array([1, 0, *range(2, k)])             # the two nearest swapped
  assert np.abs(model.log_prob(params, x, neighbours[:, order]) - lp
                ).min() > 1e-2
  dims = ", ".join(str(d) for d in model.event_shape)
  for wrong_k in (1, 2 * k):
    wrong = jnp.concatenate([neighbours, neighbours], axis=1)[:, :wrong_k]
    message = rf"k = {wrong_k} neighbours.*\[{batch}, {k}, {dims}\]"
    with pytest.raises(ValueError, match=message + rf".*built for k = {k}"):
      model.log_prob(params, x, wrong)
    with pytest.raises(ValueError, match=message):
      model.sample(params, jax.random.key(0), wrong)
    with pytest.raises(ValueError, match=rf"k = {wrong_k} neighbours.*"
                                         rf"built for k = {k}"):
      model.module.apply(params, x, wrong, method="log_prob")
