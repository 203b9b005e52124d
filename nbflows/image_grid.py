"""Image grids: samples, and samples beside the neighbourhoods they came from.

Paper 1 shows every conditional sample next to its neighbourhood (Fig. 1,
3); `neighbourhood_rows` lays out one row per neighbourhood, its k members
first, then the samples drawn from it. `tile` turns any [rows, cols] array
of images into one image and `save` writes it as a PNG.

Example:
  >>> import numpy as np
  >>> rows = neighbourhood_rows(np.zeros((2, 3, 8, 8, 1)),
  ...                           np.ones((2, 4, 8, 8, 1)))
  >>> rows.shape       # 2 rows: 3 neighbours, a blank, 4 samples
  (2, 8, 8, 8, 1)
  >>> tile(rows, num_levels=1).shape   # 1-pixel borders between images
  (19, 73, 1)
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np


def as_rows(images: np.ndarray) -> np.ndarray:
  """Images [n, H, W, C] as a near-square [rows, cols, H, W, C], blank-padded.

  Blank cells are NaN (drawn white by `tile`).
  """
  if images.ndim != 4:
    raise ValueError(f"images has shape {images.shape}; expected "
                     "[n, height, width, channels]")
  n = len(images)
  cols = max(1, math.ceil(math.sqrt(n)))
  rows = max(1, math.ceil(n / cols))
  padded = np.full((rows * cols, *images.shape[1:]), np.nan, np.float32)
  padded[:n] = images
  return padded.reshape(rows, cols, *images.shape[1:])


def neighbourhood_rows(neighbourhoods: np.ndarray,
                       samples: np.ndarray) -> np.ndarray:
  """One row per neighbourhood: its k members, a blank, then its samples.

  Args:
    neighbourhoods: [n, k, H, W, C] conditioning sets.
    samples: [n, s, H, W, C], samples drawn from each set.

  Returns:
    [n, k + 1 + s, H, W, C], NaN in the blank column.

  Raises:
    ValueError: if the shapes do not line up.
  """
  if (neighbourhoods.ndim != 5 or samples.ndim != 5
      or neighbourhoods.shape[0] != samples.shape[0]
      or neighbourhoods.shape[2:] != samples.shape[2:]):
    raise ValueError(
        f"neighbourhoods has shape {neighbourhoods.shape} and samples "
        f"{samples.shape}; expected [n, k, H, W, C] and [n, s, H, W, C] with "
        "the same n, H, W, C")
  blank = np.full((samples.shape[0], 1, *samples.shape[2:]), np.nan,
                  np.float32)
  return np.concatenate([neighbourhoods.astype(np.float32), blank,
                         samples.astype(np.float32)], axis=1)


def tile(rows: np.ndarray, num_levels: int) -> np.ndarray:
  """A [rows, cols, H, W, C] array of images as one image in [0, 1].

  Args:
    rows: images in data units [0, num_levels); NaN cells are left white.
    num_levels: the number of levels L of the data (pixels shown as x / L).

  Returns:
    [rows (H + 1) + 1, cols (W + 1) + 1, C] with white 1-pixel borders.
  """
  if rows.ndim != 5:
    raise ValueError(f"rows has shape {rows.shape}; expected "
                     "[rows, cols, height, width, channels]")
  r, c, h, w, channels = rows.shape
  scaled = np.clip(rows / num_levels, 0.0, 1.0)
  grid = np.ones((r * (h + 1) + 1, c * (w + 1) + 1, channels), np.float32)
  for i in range(r):
    for j in range(c):
      if not np.isnan(scaled[i, j]).any():
        grid[1 + i * (h + 1):(i + 1) * (h + 1),
             1 + j * (w + 1):(j + 1) * (w + 1)] = scaled[i, j]
  return grid


def save(rows: np.ndarray, path: str, num_levels: int,
         title: Optional[str] = None) -> None:
  """Writes `tile(rows, num_levels)` to the PNG file `path`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  image = tile(rows, num_levels)
  height, width = rows.shape[0], rows.shape[1]
  fig, ax = plt.subplots(figsize=(max(2.0, 0.6 * width),
                                  max(1.0, 0.6 * height)))
  ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
            vmin=0, vmax=1, interpolation="nearest")
  if title:
    ax.set_title(title, fontsize=8)
  ax.set_axis_off()
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)
