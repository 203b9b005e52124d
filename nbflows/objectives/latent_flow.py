"""The objectives of generative latent flows (paper 5, eqs. 3-5).

An auto-encoder E, G with a latent flow density p_f (paper 5, eq. 1) trains
on per-example sums of

  L_recon = 0.5 ||x - G(z)||^2   (over pixels: -log of a unit Gaussian
                                  decoder up to a constant)
  L_NLL   = -log p_f(z)

as one of

  GLF (eq. 5):              L_recon(x, G(E(x))) + L_NLL(sg[E(x)])
  regularised GLF (eq. 4):  beta L_recon(x, G(E(x))) + L_NLL(E(x))
  VAE + flow prior (eq. 3): beta L_recon(x, G(z)) + L_NLL(z) + log q(z | x),
                            z ~ q(z | x)

The stop-gradient sg[.] of eq. 5 keeps the flow's likelihood from shrinking
the codes (Sec. 3.3.1); eq. 4 has none, and its codes collapse.

Example:
  >>> import jax.numpy as jnp
  >>> rec, nll, log_q = jnp.array([2.0]), jnp.array([1.0]), jnp.array([0.0])
  >>> float(per_example_loss(rec, nll, log_q, "regularised", beta=3.0)[0])
  7.0
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
OBJECTIVES = ("stop_gradient", "regularised", "vae")


def check_objective(objective: str) -> None:
  """Raises ValueError unless `objective` is one of `OBJECTIVES`."""
  if objective not in OBJECTIVES:
    raise ValueError(f"objective={objective!r}; expected one of "
                     f"{OBJECTIVES}")


def reconstruction_loss(x: Array, mean: Array) -> Array:
  """L_recon = 0.5 sum_i (x_i - G(z)_i)^2 over each event, shape [B]."""
  return 0.5 * jnp.sum(jnp.square(x - mean).reshape(x.shape[0], -1), axis=-1)


def flow_input(z: Array, objective: str) -> Array:
  """The codes the flow scores: sg[z] for GLF (eq. 5), z otherwise."""
  return jax.lax.stop_gradient(z) if objective == "stop_gradient" else z


def per_example_loss(reconstruction: Array, nll: Array, log_q: Array,
                     objective: str, beta: float) -> Array:
  """Eq. 5, 4 or 3: w L_recon + L_NLL + log q, shape [B].

  Args:
    reconstruction: [B] L_recon.
    nll: [B] L_NLL = -log p_f(z) (from `flow_input` codes).
    log_q: [B] log q(z | x) (zeros for the auto-encoders).
    objective: one of `OBJECTIVES`.
    beta: the reconstruction weight w of eqs. 3 and 4 (eq. 5 has w = 1).
  """
  weight = 1.0 if objective == "stop_gradient" else beta
  return weight * reconstruction + nll + log_q
