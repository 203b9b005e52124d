"""Tests of the image grids (samples beside their neighbourhoods)."""
import numpy as np
import pytest

from nbflows import image_grid


def test_neighbourhood_rows_put_members_blank_then_samples():
  neighbourhoods = np.arange(2 * 3).reshape(2, 3, 1, 1, 1).astype(np.float32)
  samples = 10 + np.arange(2 * 2).reshape(2, 2, 1, 1, 1).astype(np.float32)
  rows = image_grid.neighbourhood_rows(neighbourhoods, samples)
  np.testing.assert_array_equal(rows[1, :, 0, 0, 0],
                                [3, 4, 5, np.nan, 12, 13])


def test_tile_places_each_image_and_leaves_blanks_white():
  rows = np.array([[[[[2.0]]], [[[np.nan]]]]])   # 1 x 2 cells of 1x1 pixels
  grid = image_grid.tile(rows, num_levels=4)
  np.testing.assert_array_equal(grid[..., 0], [[1, 1, 1, 1, 1],
                                               [1, 0.5, 1, 1, 1],
                                               [1, 1, 1, 1, 1]])


def test_as_rows_is_near_square_and_keeps_order():
  images = np.arange(5).reshape(5, 1, 1, 1).astype(np.float32)
  rows = image_grid.as_rows(images)
  assert rows.shape[:2] == (2, 3)
  np.testing.assert_array_equal(rows.reshape(-1)[:5], np.arange(5))
  assert np.isnan(rows.reshape(-1)[5])


def test_save_writes_a_png(tmp_path):
  path = tmp_path / "grid.png"
  image_grid.save(image_grid.as_rows(np.zeros((3, 4, 4, 1))), str(path), 17)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("neighbourhoods, samples", [
    (np.zeros((2, 3, 4, 4, 1)), np.zeros((3, 2, 4, 4, 1))),   # n differs
    (np.zeros((2, 3, 4, 4, 1)), np.zeros((2, 2, 5, 4, 1))),   # H differs
    (np.zeros((2, 4, 4, 1)), np.zeros((2, 2, 4, 4, 1))),      # no k axis
])
def test_mismatched_shapes_name_both(neighbourhoods, samples):
  with pytest.raises(ValueError, match=r"neighbourhoods has shape .* samples"):
    image_grid.neighbourhood_rows(neighbourhoods, samples)
