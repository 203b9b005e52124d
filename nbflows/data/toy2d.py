"""2-D toy targets for the LGF and MAF experiments (paper 2, Fig. 1 and 4).

Each target is a distribution on the plane whose support has a topology a
Gaussian prior cannot be bent into by a continuous bijection (paper 2,
Prop. 1): two disjoint rectangles, concentric rings, interleaved spirals and a
checkerboard. `sample(name, n, seed)` draws `n` points as float32 `[n, 2]`
together with the index of the connected component each point came from
(int32 `[n]`, used as its label), deterministically for a given seed.

One target is conditional, for flows given a context vector
(`condition_kind="context"`): "rotated_moons", two moons turned by an angle
theta, whose context is c = (cos theta, sin theta). `context_dim(name)` is
C (0 for the others) and `sample_with_context` also returns the contexts,
float32 `[n, C]`; `sample` gives the points of the marginal.

Example:
  >>> from nbflows.data import toy2d
  >>> x, labels = toy2d.sample("two_rectangles", 4, seed=0)
  >>> x.shape, x.dtype.name, labels.dtype.name
  ((4, 2), 'float32', 'int32')
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import numpy as np

# (rng, n) -> (x [n, 2], labels [n]), and contexts [n, C] for a conditional
# target.
Sampler = Callable[[np.random.Generator, int], Tuple[np.ndarray, ...]]


def _two_rectangles(rng: np.random.Generator, n: int):
  """Uniform on [-2, -0.5] x [-1.5, 1.5] union [0.5, 2] x [-1.5, 1.5] (Fig. 1)."""
  labels = rng.integers(0, 2, size=n)
  x = rng.uniform(-1.0, 1.0, size=(n, 2)) * np.array([0.75, 1.5])
  x[:, 0] += np.where(labels == 0, -1.25, 1.25)
  return x, labels


def _rings(rng: np.random.Generator, n: int):
  """Three concentric rings of radii 1, 2 and 3 with Gaussian width 0.1.

  Ring r is chosen with probability proportional to its radius, so the
  density along every ring's arc is the same.
  """
  radii = np.array([1.0, 2.0, 3.0])
  labels = rng.choice(3, size=n, p=radii / radii.sum())
  angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
  radius = radii[labels] + 0.1 * rng.standard_normal(n)
  x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
  return x, labels


def _spirals(rng: np.random.Generator, n: int):
  """Two interleaved Archimedean spiral arms, r = theta / pi, theta in [0.5, 3pi]."""
  labels = rng.integers(0, 2, size=n)
  theta = np.sqrt(rng.uniform(0.25, 9.0 * np.pi**2, size=n))  # uniform in arc length
  angle = theta + np.pi * labels
  radius = theta / np.pi
  x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
  return x + 0.05 * rng.standard_normal((n, 2)), labels


def _checkerboard(rng: np.random.Generator, n: int):
  """Uniform on the 8 dark unit squares of a 4 x 4 board on [-2, 2]^2."""
  labels = rng.integers(0, 8, size=n)
  row = labels // 2                                    # 0..3
  col = 2 * (labels % 2) + (row % 2)                   # dark squares only
  x = rng.uniform(0.0, 1.0, size=(n, 2)) + np.stack([col, row], axis=1) - 2.0
  return x, labels


def _rotated_moons(rng: np.random.Generator, n: int):
  """Two interleaved half-moons turned by theta ~ U[0, 2 pi); c = (cos, sin).

  The moons of scikit-learn's `make_moons` (upper (cos t, sin t), lower
  (1 - cos t, 1/2 - sin t), t ~ U[0, pi]) centred at the origin, with
  Gaussian noise of std 0.1, then rotated by theta. Given c, x is two
  moons; over all c the marginal is rotationally symmetric, so a model that
  sees c can place its mass far more tightly than one that does not.
  """
  labels = rng.integers(0, 2, size=n)
  t = rng.uniform(0.0, np.pi, size=n)
  upper = np.stack([np.cos(t), np.sin(t)], axis=1)
  lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
  x = np.where(labels[:, None] == 0, upper, lower) - np.array([0.5, 0.25])
  x = x + 0.1 * rng.standard_normal((n, 2))
  theta = rng.uniform(0.0, 2.0 * np.pi, size=n)
  cos, sin = np.cos(theta), np.sin(theta)
  rotated = np.stack([cos * x[:, 0] - sin * x[:, 1],
                      sin * x[:, 0] + cos * x[:, 1]], axis=1)
  return rotated, labels, np.stack([cos, sin], axis=1)


# name -> (sampler, number of components, context width C).
_SAMPLERS: Dict[str, Tuple[Sampler, int, int]] = {
    "two_rectangles": (_two_rectangles, 2, 0),
    "rings": (_rings, 3, 0),
    "spirals": (_spirals, 2, 0),
    "checkerboard": (_checkerboard, 8, 0),
    "rotated_moons": (_rotated_moons, 2, 2),
}
NAMES = tuple(_SAMPLERS)


def num_components(name: str) -> int:
  """The number of connected components of a target (its label count).

  Raises:
    ValueError: if `name` is not one of `NAMES`.
  """
  return _lookup(name)[1]


def context_dim(name: str) -> int:
  """The width C of a target's context vector; 0 for an unconditional one.

  Example:
    >>> context_dim("rotated_moons"), context_dim("rings")
    (2, 0)
  """
  return _lookup(name)[2]


def sample(name: str, n: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  """Draws `n` points from a 2-D target.

  Args:
    name: one of `NAMES`.
    n: number of points.
    seed: seed of the NumPy generator; the same seed gives the same points.

  Returns:
    `(x, labels)`: float32 `[n, 2]` points and int32 `[n]` component indices.

  Raises:
    ValueError: if `name` is unknown or `n` is negative.
  """
  x, labels, _ = sample_with_context(name, n, seed)
  return x, labels


def sample_with_context(name: str, n: int, seed: int = 0
                        ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`sample`'s points and labels, and each point's context.

  Returns:
    `(x, labels, context)`: as `sample`, and float32 `[n, C]` contexts, C =
    `context_dim(name)` (`[n, 0]` for a target without a context); the same
    points as `sample` with the same seed.

  Raises:
    ValueError: if `name` is unknown or `n` is negative.
  """
  sampler, _, width = _lookup(name)
  if n < 0:
    raise ValueError(f"n={n}; expected a number of points >= 0")
  drawn = sampler(np.random.default_rng(seed), n)
  context = drawn[2] if width else np.zeros((n, 0))
  return (drawn[0].astype(np.float32), drawn[1].astype(np.int32),
          context.astype(np.float32))


def _lookup(name: str) -> Tuple[Sampler, int, int]:
  if name not in _SAMPLERS:
    raise ValueError(f"unknown 2-D target {name!r}; expected one of {NAMES}")
  return _SAMPLERS[name]
