"""Gaussian noisy injective flow (NIF) layer (paper 4, Sec. 4, App. A.6-A.7).

A latent z in R^k is mapped across dimensions to data x in R^d, k < d:

  z ~ N(0, T^2 I_k),   x = A z + b + eps,   eps ~ N(0, s Sigma),

with Sigma = diag(sigma^2) learned, T the temperature and s the test-time
noise scale (s = 1 is the trained model; s = 0 puts x exactly on the
learned hyperplane {A z + b}). Writing A~ = Sigma^-1/2 A and
r~ = Sigma^-1/2 (x - b) (for T = s = 1; otherwise A is T A and Sigma is s Sigma):

- marginal (eq. 13): p(x) = N(x; b, A A^T + Sigma), evaluated in O(d k^2) by
  the matrix-determinant lemma and Woodbury with M = I_k + A~^T A~:
    log det(A A^T + Sigma) = log det Sigma + log det M,
    (x - b)^T (A A^T + Sigma)^-1 (x - b) = |r~|^2 - r~^T A~ M^-1 A~^T r~;
- stochastic inverse (eq. 7): q(z | x), proportional to p(x | z), is
  N(z; P^-1 A~^T r~, P^-1) with P = A~^T A~; its mode is the weighted
  least-squares pseudo-inverse of x on the hyperplane (Prop. 1, eq. 58);
- lower bound (eq. 9-10) with q as the posterior:
    log p(x) >= E_q[log p(z)] + log Z(x),  Z(x) = integral of p(x | z) dz,
  where log Z(x) is the "manifold term".

The maths is written for a block-diagonal A acting on `[B, blocks, rows]`
data and `[B, blocks, cols]` latents: a dense A is one block; the
nearest-neighbour up-sampling A of Sec. 4.1 (every latent pixel spreads its
channels over its f x f patch of the image through a shared matrix) is one
block per latent pixel, so A^T Sigma^-1 A is block diagonal and the cost is
O(d c^2) for c latent channels, not O(d k^2).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
_LOG_2PI = math.log(2.0 * math.pi)


# ----------------------------------------------------------- blockwise maths
def _whiten(x_blocks: Array, weight: Array, bias: Array,
            log_noise_std: Array) -> Tuple[Array, Array]:
  """Returns A~ = Sigma^-1/2 A [nb, r, c] and r~ = Sigma^-1/2 (x - b) [B, nb, r]."""
  inv_std = jnp.exp(-log_noise_std)
  weight = jnp.broadcast_to(weight, (*log_noise_std.shape, weight.shape[-1]))
  return weight * inv_std[..., None], (x_blocks - bias) * inv_std


def marginal_log_prob(x_blocks: Array, weight: Array, bias: Array,
                      log_noise_std: Array) -> Array:
  """log N(x; b, A A^T + Sigma) for block-diagonal A (paper 4, eq. 13).

  Matrix-determinant lemma for the log-determinant and Woodbury for the
  quadratic form, so only the k x k (per block: c x c) matrix
  M = I + A^T Sigma^-1 A is factorised.

  Args:
    x_blocks: [B, nb, r] data, `nb` blocks of `r` rows.
    weight: [nb, r, c] (or [1, r, c], shared) blocks of A.
    bias: [nb, r], b.
    log_noise_std: [nb, r], log of the diagonal of Sigma^1/2.

  Returns:
    [B] log-densities in nats.

  Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.zeros((1, 1, 3))
    >>> lp = marginal_log_prob(x, jnp.zeros((1, 3, 2)), jnp.zeros((1, 3)),
    ...                        jnp.zeros((1, 3)))
    >>> round(float(lp[0]), 4)    # N(0; 0, I_3)
    -2.7568
  """
  a, r = _whiten(x_blocks, weight, bias, log_noise_std)
  cols = a.shape[-1]
  m = jnp.eye(cols, dtype=a.dtype) + jnp.einsum("nrc,nrk->nck", a, a)
  chol = jnp.linalg.cholesky(m)                               # [nb, c, c]
  atr = jnp.einsum("nrc,bnr->bnc", a, r)                      # [B, nb, c]
  v = jax.scipy.linalg.solve_triangular(
      chol, jnp.moveaxis(atr, 0, -1), lower=True)            # [nb, c, B]
  quad = jnp.sum(r**2, axis=(1, 2)) - jnp.sum(v**2, axis=(0, 1))
  log_det = (2.0 * jnp.sum(log_noise_std) +
             2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))))
  num_dims = log_noise_std.size
  return -0.5 * (num_dims * _LOG_2PI + log_det + quad)


def stochastic_inverse(x_blocks: Array, weight: Array, bias: Array,
                       log_noise_std: Array) -> Tuple[Array, Array]:
  """q(z | x) = N(z; P^-1 A^T Sigma^-1 (x - b), P^-1), P = A^T Sigma^-1 A (eq. 7).

  Args:
    x_blocks: [B, nb, r] data.
    weight: [nb, r, c] (or [1, r, c]) blocks of A, of full column rank.
    bias: [nb, r].
    log_noise_std: [nb, r].

  Returns:
    `(mean, precision_cholesky)`: the mean [B, nb, c], which is also the
    mode, i.e. the weighted least-squares pseudo-inverse
    argmin_z |Sigma^-1/2 (x - A z - b)| (Prop. 1, eq. 58); and the lower
    Cholesky factor L [nb, c, c] of the precision P = L L^T (the covariance
    is L^-T L^-1).
  """
  a, r = _whiten(x_blocks, weight, bias, log_noise_std)
  precision = jnp.einsum("nrc,nrk->nck", a, a)
  chol = jnp.linalg.cholesky(precision)
  atr = jnp.einsum("nrc,bnr->ncb", a, r)                      # [nb, c, B]
  mean = jax.scipy.linalg.cho_solve((chol, True), atr)        # [nb, c, B]
  return jnp.moveaxis(mean, -1, 0), chol


def sample_stochastic_inverse(key: Array, x_blocks: Array, weight: Array,
                              bias: Array, log_noise_std: Array) -> Array:
  """Draws z ~ q(z | x) (eq. 7) by z = mean + L^-T eps, eps ~ N(0, I).

  Returns:
    [B, nb, c] latents.
  """
  mean, chol = stochastic_inverse(x_blocks, weight, bias, log_noise_std)
  eps = jax.random.normal(key, mean.shape, mean.dtype)
  offset = jax.scipy.linalg.solve_triangular(
      chol, jnp.moveaxis(eps, 0, -1), lower=True, trans="T")  # [nb, c, B]
  return mean + jnp.moveaxis(offset, -1, 0)


def lower_bound(x_blocks: Array, weight: Array, bias: Array,
                log_noise_std: Array) -> Array:
  """E_q[log N(z; 0, I)] + log Z(x), the NIF bound of eq. 9-10, in closed form.

  With q the stochastic inverse, N(mu, P^-1):
    E_q[log N(z; 0, I)] = -k/2 log 2 pi - (|mu|^2 + tr P^-1) / 2,
    log Z(x) = -(d - k)/2 log 2 pi - log det Sigma^1/2 - log det P / 2
               - (|r~|^2 - mu^T P mu) / 2,
  and log p(x) minus the bound is KL(q(z | x) || p(z | x)) >= 0.

  Returns:
    [B] lower bounds in nats.
  """
  a, r = _whiten(x_blocks, weight, bias, log_noise_std)
  mean, chol = stochastic_inverse(x_blocks, weight, bias, log_noise_std)
  num_latent = mean.shape[1] * mean.shape[2]
  num_dims = log_noise_std.size
  eye = jnp.broadcast_to(jnp.eye(chol.shape[-1], dtype=chol.dtype), chol.shape)
  inv_chol = jax.scipy.linalg.solve_triangular(chol, eye, lower=True)
  trace_cov = jnp.sum(inv_chol**2)
  expected_prior = -0.5 * (num_latent * _LOG_2PI +
                           jnp.sum(mean**2, axis=(1, 2)) + trace_cov)
  fitted = jnp.einsum("nrc,bnc->bnr", a, mean)
  residual = jnp.sum((r - fitted)**2, axis=(1, 2))            # |r~|^2 - mu^T P mu
  log_det_p = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)))
  log_manifold = -0.5 * ((num_dims - num_latent) * _LOG_2PI + log_det_p +
                         residual) - jnp.sum(log_noise_std)
  return expected_prior + log_manifold


# ------------------------------------------------------------ the Flax layer
def _check_positive(value: float, name: str, allow_zero: bool) -> None:
  """Raises ValueError for a concrete `value` below (or at) zero."""
  if isinstance(value, jax.core.Tracer):
    return
  ok = value >= 0 if allow_zero else value > 0
  if not ok:
    bound = ">= 0" if allow_zero else "> 0"
    raise ValueError(f"{name}={value}; expected {bound}")


class GaussianNIF(nn.Module):
  """The Gaussian NIF distribution N(b, A A^T + Sigma) over an event (Sec. 4).

  Two forms of A:
    - dense (`upsample_factor=None`): A is [d, latent_dim], any event shape
      (flattened), cost O(d k^2);
    - nearest-neighbour up-sampling (`upsample_factor=f`, images [H, W, C]):
      the latent is an [H/f, W/f, latent_dim] image and every latent pixel's
      channels are spread over its f x f patch of all C channels by one shared
      [f f C, latent_dim] matrix (a stride-f transposed convolution), so
      A^T Sigma^-1 A is block diagonal (Sec. 4.1) and k = H W latent_dim / f^2.
  b and the diagonal of Sigma are free per dimension. At initialisation
  b = 0, Sigma = I and A has unit-variance entries scaled by
  1 / sqrt(latent_dim).

  Attributes:
    event_shape: shape of one example, e.g. (64,) or (8, 8, 1).
    latent_dim: k for dense A; latent channels for up-sampling A.
    upsample_factor: None (dense A) or f >= 1 dividing H and W.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> nif = GaussianNIF(event_shape=(8, 8, 1), latent_dim=2,
    ...                   upsample_factor=2)
    >>> x = jnp.zeros((3, 8, 8, 1))
    >>> params = nif.init(jax.random.key(0), x)
    >>> nif.apply(params, x).shape
    (3,)
    >>> z = nif.apply(params, x, method="pseudo_inverse")
    >>> z.shape                        # k = 4 * 4 * 2 = 32 < d = 64
    (3, 4, 4, 2)
  """
  event_shape: Sequence[int]
  latent_dim: int
  upsample_factor: Optional[int] = None

  # ------------------------------------------------------------- geometry
  def _layout(self) -> Tuple[int, int, int]:
    """(blocks, rows, cols) of the block-diagonal A; validates settings."""
    shape = tuple(self.event_shape)
    if self.latent_dim < 1:
      raise ValueError(f"latent_dim={self.latent_dim}; expected >= 1")
    if self.upsample_factor is None:
      d = math.prod(shape)
      if self.latent_dim >= d:
        raise ValueError(f"latent_dim={self.latent_dim}; a NIF goes across "
                         f"dimensions, so expected < d={d} for event {shape}")
      return 1, d, self.latent_dim
    f = self.upsample_factor
    if len(shape) != 3:
      raise ValueError(f"upsample_factor={f} needs an [H, W, C] event; got "
                       f"{shape} (use upsample_factor=None for vectors)")
    h, w, c = shape
    if f < 1 or h % f or w % f:
      raise ValueError(f"upsample_factor={f}; expected a positive divisor of "
                       f"H={h} and W={w}")
    if self.latent_dim >= f * f * c:
      raise ValueError(f"latent_dim={self.latent_dim} latent channels per "
                       f"{f}x{f} patch of {c} channels; expected < {f * f * c} "
                       "so that k < d")
    return (h // f) * (w // f), f * f * c, self.latent_dim

  @property
  def latent_shape(self) -> Tuple[int, ...]:
    """Shape of one latent z: (k,) for dense A, (H/f, W/f, c) for up-sampling."""
    if self.upsample_factor is None:
      return (self.latent_dim,)
    h, w, _ = self.event_shape
    f = self.upsample_factor
    return (h // f, w // f, self.latent_dim)

  def _to_blocks(self, x: Array) -> Array:
    """[B, *event] -> [B, blocks, rows] (each f x f patch becomes one block)."""
    b = x.shape[0]
    if self.upsample_factor is None:
      return x.reshape(b, 1, -1)
    h, w, c = self.event_shape
    f = self.upsample_factor
    x = x.reshape(b, h // f, f, w // f, f, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // f) * (w // f), f * f * c)

  def _from_blocks(self, x_blocks: Array) -> Array:
    """[B, blocks, rows] -> [B, *event], the inverse of `_to_blocks`."""
    b = x_blocks.shape[0]
    if self.upsample_factor is None:
      return x_blocks.reshape(b, *self.event_shape)
    h, w, c = self.event_shape
    f = self.upsample_factor
    x = x_blocks.reshape(b, h // f, w // f, f, f, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)

  def _check(self, x: Array, name: str = "x") -> None:
    if tuple(x.shape[1:]) != tuple(self.event_shape):
      raise ValueError(f"{name} has shape {tuple(x.shape)}; expected [batch, "
                       f"{', '.join(str(d) for d in self.event_shape)}]")

  # ------------------------------------------------------------ parameters
  def setup(self):
    num_blocks, rows, cols = self._layout()
    shared = 1 if self.upsample_factor is not None else num_blocks
    self.weight = self.param(
        "weight", nn.initializers.normal(1.0 / math.sqrt(cols)),
        (shared, rows, cols))
    self.bias = self.param("bias", nn.initializers.zeros, (num_blocks, rows))
    self.log_noise_std = self.param("log_noise_std", nn.initializers.zeros,
                                    (num_blocks, rows))

  def _params(self) -> Tuple[Array, Array, Array]:
    """(A blocks [1 or nb, r, c], b [nb, r], log Sigma^1/2 [nb, r])."""
    return self.weight, self.bias, self.log_noise_std

  def weight_matrix(self) -> Array:
    """The dense [d, k] matrix A, for inspection and tests (O(d k) memory).

    Columns follow the latent's flattened order and rows the event's, so
    `x = (A @ z.reshape(-1)).reshape(event_shape) + b` for one example.
    """
    num_blocks, _, cols = self._layout()
    weight, _, _ = self._params()
    k = num_blocks * cols
    basis = jnp.eye(k, dtype=weight.dtype).reshape(k, num_blocks, cols)
    weight = jnp.broadcast_to(weight, (num_blocks, *weight.shape[1:]))
    columns = self._from_blocks(jnp.einsum("nrc,bnc->bnr", weight, basis))
    return columns.reshape(k, -1).T

  # ------------------------------------------------------------- densities
  def __call__(self, x: Array, temperature: float = 1.0,
               noise_scale: float = 1.0) -> Array:
    return self.log_prob(x, temperature, noise_scale)

  def log_prob(self, x: Array, temperature: float = 1.0,
               noise_scale: float = 1.0) -> Array:
    """log N(x; b, T^2 A A^T + s Sigma) in nats, shape [B] (eq. 13).

    Raises:
      ValueError: if `x` is not [B, *event_shape] or `noise_scale` <= 0 (the
        density is degenerate on the hyperplane then).
    """
    self._check(x)
    _check_positive(noise_scale, "noise_scale", allow_zero=False)
    weight, bias, log_noise_std = self._params()
    # T scales z, hence A; s scales the variance Sigma.
    return marginal_log_prob(self._to_blocks(x), temperature * weight, bias,
                             log_noise_std + 0.5 * jnp.log(noise_scale))

  def lower_bound(self, x: Array) -> Array:
    """The bound E_q[log p(z)] + log Z(x) of eq. 9-10, shape [B]."""
    self._check(x)
    return lower_bound(self._to_blocks(x), *self._params())

  def pseudo_inverse(self, x: Array) -> Array:
    """The mode of q(z | x): argmin_z |Sigma^-1/2 (x - A z - b)| (eq. 58).

    Returns:
      [B, *latent_shape] latents.
    """
    self._check(x)
    mean, _ = stochastic_inverse(self._to_blocks(x), *self._params())
    return mean.reshape(x.shape[0], *self.latent_shape)

  def stochastic_inverse_sample(self, key: Array, x: Array) -> Array:
    """Draws z ~ q(z | x) = N(P^-1 A^T Sigma^-1 (x - b), P^-1) (eq. 7).

    Returns:
      [B, *latent_shape] latents.
    """
    self._check(x)
    z = sample_stochastic_inverse(key, self._to_blocks(x), *self._params())
    return z.reshape(x.shape[0], *self.latent_shape)

  def generate(self, z: Array, key: Optional[Array] = None,
               noise_scale: float = 1.0) -> Array:
    """x = A z + b + sqrt(s) Sigma^1/2 eps; with s = 0 (or no key) x = A z + b.

    Args:
      z: [B, *latent_shape] latents.
      key: PRNG key for the noise; None gives the point on the hyperplane.
      noise_scale: s >= 0.

    Returns:
      [B, *event_shape] data.
    """
    _check_positive(noise_scale, "noise_scale", allow_zero=True)
    if tuple(z.shape[1:]) != self.latent_shape:
      raise ValueError(f"z has shape {tuple(z.shape)}; expected [batch, "
                       f"{', '.join(str(d) for d in self.latent_shape)}]")
    num_blocks, _, cols = self._layout()
    weight, bias, log_noise_std = self._params()
    z_blocks = z.reshape(z.shape[0], num_blocks, cols)
    x = jnp.einsum("nrc,bnc->bnr",
                   jnp.broadcast_to(weight, (num_blocks, *weight.shape[1:])),
                   z_blocks) + bias
    if key is not None:
      eps = jax.random.normal(key, x.shape, x.dtype)
      x = x + jnp.sqrt(noise_scale) * jnp.exp(log_noise_std) * eps
    return self._from_blocks(x)

  def sample(self, key: Array, num_samples: int, temperature: float = 1.0,
             noise_scale: float = 1.0) -> Array:
    """Draws x = A (T z) + b + sqrt(s) Sigma^1/2 eps, z, eps ~ N(0, I).

    s = 0 gives samples exactly on the hyperplane {A z + b} (Sec. 5.2).

    Returns:
      [num_samples, *event_shape] samples.

    Raises:
      ValueError: if `temperature` or `noise_scale` is negative.
    """
    _check_positive(temperature, "temperature", allow_zero=True)
    _check_positive(noise_scale, "noise_scale", allow_zero=True)
    z_key, noise_key = jax.random.split(key)
    dtype = self._params()[2].dtype
    z = temperature * jax.random.normal(
        z_key, (num_samples, *self.latent_shape), dtype)
    return self.generate(z, noise_key, noise_scale)
