"""Figures of trained models: 2-D densities (paper 2, Fig. 1 and 4), NIF samples.

`log_density_grid` evaluates a log-density on a regular grid, `plot_densities`
draws one panel per model (the density as an image, optionally target
samples in black) into a PNG, and `model_log_density` gives the function
to evaluate for a trained model: the exact `log_prob` of a flow, or the
importance-sampled estimate of a latent-variable model such as LGF (which
can show the "occasional white spots" of its stochastic estimate, paper 2,
Sec. 3.3.1). `plot_noise_scale_samples` draws a flow with a NIF prior at
several test-time noise scales s (paper 4, Sec. 5.2).

From the command line, for finished training runs: the densities of 2-D
models side by side,

  python -m nbflows.plotting --workdirs=DIR_A,DIR_B --titles=MAF,LGF-MAF \\
      --out=density.png

or, with --noise_scales, samples of one flow with a NIF prior (paper 4), a
row per test-time noise scale s (`nif_flow.NIFModel.samples_by_noise_scale`):

  python -m nbflows.plotting --workdirs=DIR --noise_scales=0,1 --out=nif.png

The README's figures are made this way from the runs of `train.compare`
(commands in configs/lgf_maf_two_rectangles.py and configs/nif_digits.py).

Example:
  >>> import jax.numpy as jnp
  >>> grid = log_density_grid(lambda p: 1.0 - 0.5 * jnp.sum(p**2, -1),
  ...                         bounds=(-1, 1, -1, 1), resolution=3)
  >>> grid.log_density.shape, float(grid.log_density[1, 1])
  ((3, 3), 1.0)
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence, Tuple

import jax
import numpy as np

from nbflows.models import protocols

Array = jax.Array
Bounds = Tuple[float, float, float, float]    # x_min, x_max, y_min, y_max


class DensityGrid(NamedTuple):
  """A log-density on a grid: `log_density[i, j]` is at (xs[j], ys[i])."""
  xs: np.ndarray
  ys: np.ndarray
  log_density: np.ndarray


def log_density_grid(log_density: Callable[[Array], Array], bounds: Bounds,
                     resolution: int = 200,
                     batch_size: int = 4096) -> DensityGrid:
  """Evaluates `log_density` ([N, 2] -> [N]) on a resolution^2 grid.

  Args:
    log_density: the function, called on batches of at most `batch_size`
      points.
    bounds: (x_min, x_max, y_min, y_max).
    resolution: points per side.
    batch_size: points per call.

  Returns:
    A `DensityGrid`.

  Raises:
    ValueError: for empty bounds or a resolution below 2.
  """
  x_min, x_max, y_min, y_max = bounds
  if not (x_min < x_max and y_min < y_max):
    raise ValueError(f"bounds={bounds}; expected x_min < x_max, y_min < y_max")
  if resolution < 2:
    raise ValueError(f"resolution={resolution}; expected >= 2")
  xs = np.linspace(x_min, x_max, resolution)
  ys = np.linspace(y_min, y_max, resolution)
  points = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
  values = [np.asarray(log_density(points[i:i + batch_size].astype(np.float32)))
            for i in range(0, len(points), batch_size)]
  return DensityGrid(xs, ys, np.concatenate(values).reshape(resolution,
                                                            resolution))


def model_log_density(model: protocols.Density, params,
                      num_samples: int = 100,
                      seed: int = 0) -> Callable[[Array], Array]:
  """[N, 2] -> log p [N] of a trained unconditional 2-D model.

  Models offering `protocols.ImportanceLikelihood` (LGF) use it with
  `num_samples` importance samples; the others their exact `log_prob`.
  """
  if protocols.offers(model, protocols.ImportanceLikelihood):
    key = jax.random.key(seed)
    return lambda points: model.importance_log_likelihood(
        params, points, key, num_samples)
  return lambda points: model.log_prob(params, points)


def data_bounds(points: np.ndarray, margin: float = 0.15) -> Bounds:
  """A square-ish box around `points` [N, 2], widened by `margin` each side."""
  low, high = points.min(0), points.max(0)
  pad = margin * (high - low)
  return (float(low[0] - pad[0]), float(high[0] + pad[0]),
          float(low[1] - pad[1]), float(high[1] + pad[1]))


def plot_densities(panels: Sequence[Tuple[str, DensityGrid]], path: str,
                   points: Optional[np.ndarray] = None, dpi: int = 100) -> None:
  """Saves one density image per panel side by side as a PNG (Fig. 1 style).

  The panels share one colour scale, from 0 to the largest 99.9th percentile
  of a panel's grid values; the rare points above it (an importance-sampled
  density's "white spots") are drawn at the top colour.

  Args:
    panels: (title, grid) pairs; the density exp(log_density) is shown.
    path: the PNG file to write.
    points: optional target samples [N, 2], drawn as small black dots.
    dpi: resolution of the PNG (each panel is 4.2 x 4 inches).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4),
                           squeeze=False)
  densities = [np.exp(np.nan_to_num(grid.log_density, nan=-np.inf))
               for _, grid in panels]
  top = max(float(np.quantile(density, 0.999)) for density in densities)
  for ax, (title, grid), density in zip(axes[0], panels, densities):
    image = ax.imshow(density, origin="lower", cmap="viridis", vmin=0.0,
                      vmax=top, extent=(grid.xs[0], grid.xs[-1], grid.ys[0],
                                        grid.ys[-1]), aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if points is not None:
      ax.scatter(points[:, 0], points[:, 1], s=0.3, c="black", alpha=0.3)
    ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  plt.close(fig)


def plot_noise_scale_samples(workdir: str, path: str,
                             noise_scales: Sequence[float],
                             num_per_row: int = 12, seed: int = 0) -> None:
  """Saves samples of a trained NIF-prior flow, a row per noise scale s.

  Args:
    workdir: a finished training run of an image model with a NIF prior.
    path: the PNG file to write.
    noise_scales: s of each row (0: the learned manifold; 1: the model).
    num_per_row: samples per row; column j shares its latent across rows.
    seed: seed of the samples' key.

  Raises:
    ValueError: if the run's model has no noise scale.
  """
  from nbflows import checkpoint_loading  # pylint: disable=g-import-not-at-top
  from nbflows import image_grid  # pylint: disable=g-import-not-at-top
  model, params, _ = checkpoint_loading.load_checkpoint(workdir)
  if not protocols.offers(model, protocols.NoiseScaleSampler):
    raise ValueError(f"{workdir} holds a {model.name!r} model; --noise_scales "
                     "needs a flow with a NIF prior (model 'nif_flow')")
  rows = model.samples_by_noise_scale(params, jax.random.key(seed),
                                      num_per_row, noise_scales)
  title = ", ".join(f"row {i + 1}: s = {s:g}"
                    for i, s in enumerate(noise_scales))
  image_grid.save(rows, path, model.num_levels, title=title)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top

  flags.DEFINE_list("workdirs", None, "Training runs of 2-D models (or one "
                    "run of a NIF-prior flow with --noise_scales).")
  flags.DEFINE_list("titles", None, "One title per run (default: model name).")
  flags.DEFINE_string("out", None, "The PNG file to write.")
  flags.DEFINE_integer("resolution", 150, "Grid points per side.")
  flags.DEFINE_integer("num_samples", 100,
                       "Importance samples per point for latent-variable models.")
  flags.DEFINE_integer("num_points", 2000, "Target samples drawn in black.")
  flags.DEFINE_integer("dpi", 100, "Resolution of the density PNG.")
  flags.DEFINE_list("noise_scales", None, "Draw NIF samples instead: one row "
                    "per test-time noise scale s, e.g. 0,1.")
  flags.DEFINE_integer("samples_per_row", 12, "NIF samples per row.")
  flags.mark_flags_as_required(["workdirs", "out"])

  def main(argv):
    del argv
    from nbflows import checkpoint_loading  # pylint: disable=g-import-not-at-top
    from nbflows.data import toy2d  # pylint: disable=g-import-not-at-top
    flag_values = flags.FLAGS
    if flag_values.noise_scales:
      if len(flag_values.workdirs) != 1:
        raise ValueError(f"--noise_scales draws one run; got "
                         f"{len(flag_values.workdirs)} workdirs")
      plot_noise_scale_samples(
          flag_values.workdirs[0], flag_values.out,
          [float(s) for s in flag_values.noise_scales],
          flag_values.samples_per_row)
      print(f"wrote {flag_values.out}")
      return
    titles = flag_values.titles or [None] * len(flag_values.workdirs)
    if len(titles) != len(flag_values.workdirs):
      raise ValueError(f"--titles has {len(titles)} entries; expected one per "
                       f"workdir ({len(flag_values.workdirs)})")
    panels, points = [], None
    for workdir, title in zip(flag_values.workdirs, titles):
      model, params, config = checkpoint_loading.load_checkpoint(workdir)
      if model.event_shape != (2,):
        raise ValueError(f"{workdir} holds a model of event shape "
                         f"{model.event_shape}; expected a 2-D model")
      if points is None:
        points, _ = toy2d.sample(config.dataset, flag_values.num_points,
                                 seed=config.seed + 1)
      grid = log_density_grid(
          model_log_density(model, params, flag_values.num_samples),
          data_bounds(points), flag_values.resolution)
      panels.append((title or config.model, grid))
    plot_densities(panels, flag_values.out, points, flag_values.dpi)
    print(f"wrote {flag_values.out}")

  app.run(main)
