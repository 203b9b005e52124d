"""Shape buckets: one compiled program for many numbers of rows.

`jax.jit` compiles a program for every new input shape, so a call with a
new number of rows (`model.sample(params, key, n)` for a new n, the last
and partial batch of an evaluation pass) compiles again: 6-10 s for a flow
on the CPU. Padding the rows up to a bucket, and dropping what the padded
rows give, keeps one program per bucket. With JAX's default
`jax_threefry_partitionable=True`, `jax.random` draws for the first n rows
of a [size, ...] array are those of an [n, ...] array, so sampling n rows
from a bucket gives the samples an unpadded call would (up to float
rounding where XLA picks another kernel for the larger batch).

Example:
  >>> bucket_size(10), bucket_size(11), bucket_size(16), bucket_size(17)
  (16, 16, 16, 32)
  >>> pad_rows(np.array([4, 5, 6]), 5).tolist()
  [4, 5, 6, 4, 4]
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

MIN_BUCKET = 8


def bucket_size(num: int) -> int:
  """The bucket of `num` rows: the next power of two, at least `MIN_BUCKET`.

  At most twice the rows, and log2(n) programs for every n up to n.
  """
  if num < 1:
    raise ValueError(f"num={num}; expected >= 1 rows")
  return max(MIN_BUCKET, 1 << (num - 1).bit_length())


def pad_rows(array, size: int):
  """Pads axis 0 to `size` rows by repeating row 0 (a valid input).

  Args:
    array: [n, ...] with 1 <= n <= size, a NumPy or JAX array (also a
      tracer).
    size: the number of rows wanted.

  Returns:
    [size, ...], `array` itself when n == size.
  """
  num = array.shape[0]
  if num == size:
    return array
  xp = np if isinstance(array, np.ndarray) else jnp
  return xp.concatenate([array, xp.repeat(array[:1], size - num, axis=0)])
