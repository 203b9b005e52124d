"""2-D toy targets for the LGF and MAF experiments (paper 2, Fig. 1 and 4).

Each target is a distribution on the plane whose support has a topology a
Gaussian prior cannot be bent into by a continuous bijection (paper 2,
Prop. 1): two disjoint rectangles, concentric rings, interleaved spirals and a
checkerboard. `sample(name, n, seed)` draws `n` points as float32 `[n, 2]`
together with the index of the connected component each point came from
(int32 `[n]`, used as its label), deterministically for a given seed.

Example:
  >>> from nbflows.data import toy2d
  >>> x, labels = toy2d.sample("two_rectangles", 4, seed=0)
  >>> x.shape, x.dtype.name, labels.dtype.name
  ((4, 2), 'float32', 'int32')
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import numpy as np

Sampler = Callable[[np.random.Generator, int], Tuple[np.ndarray, np.ndarray]]


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


_SAMPLERS: Dict[str, Tuple[Sampler, int]] = {
    "two_rectangles": (_two_rectangles, 2),
    "rings": (_rings, 3),
    "spirals": (_spirals, 2),
    "checkerboard": (_checkerboard, 8),
}
NAMES = tuple(_SAMPLERS)


def num_components(name: str) -> int:
  """The number of connected components of a target (its label count).

  Raises:
    ValueError: if `name` is not one of `NAMES`.
  """
  return _lookup(name)[1]


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
  sampler, _ = _lookup(name)
  if n < 0:
    raise ValueError(f"n={n}; expected a number of points >= 0")
  x, labels = sampler(np.random.default_rng(seed), n)
  return x.astype(np.float32), labels.astype(np.int32)


def _lookup(name: str) -> Tuple[Sampler, int]:
  if name not in _SAMPLERS:
    raise ValueError(f"unknown 2-D target {name!r}; expected one of {NAMES}")
  return _SAMPLERS[name]
