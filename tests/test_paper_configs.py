"""Paper-sized configs (configs/paper1.py, full size): each builds and has
paper 1's k and flow size; its whole train step is traced with
`jax.eval_shape` at a batch of two (the parameter count of its README row,
a state of the same shapes and a scalar loss, without a compile), and a
copy cut to one residual block of four channels, with the same dataset, k,
scales and couplings, is initialised and runs one real step on CPU. The
TFDS data is replaced by random images of the dataset's shape: this checks
the models, not the data (tests/test_tfds_on_disk.py reads data).
A Fashion-MNIST config is its MNIST config but for the dataset (asserted
below), with the same image shape, so its train step is MNIST's: it is checked
for its settings and its README row from `jax.eval_shape`, without a compile.
XLA's optimisations are off while the reduced copies compile (the
`fast_compiles` fixture of conftest.py): the step's values agree to float32
rounding, its compile is about twice as fast.
"""
import importlib
import pathlib

import jax
import numpy as np
import pytest

from configs import paper1
from nbflows.data import sources
from nbflows.models import base as model_base
from nbflows.models import registry
from train.loop import state as state_lib
from train.loop import trainer

DATASET_OF = {"mnist": "mnist", "fashion_mnist": "fashion_mnist",
              "svhn": "svhn_cropped", "cifar10": "cifar10",
              "celeba": "celeb_a"}
MODELS = ("ncl", "nct", "ccrnvp")
CONFIGS = [f"{model}_{name}" for model in MODELS for name in DATASET_OF
           if (model, name) != ("ccrnvp", "celeba")]
TRAINED = [name for name in CONFIGS if not name.endswith("_fashion_mnist")]
SAME_STEP_AS_TRAINED = [name for name in CONFIGS if name not in TRAINED]

BATCH = 2
README = pathlib.Path(__file__).parent.parent.joinpath("README.md").read_text()


pytestmark = pytest.mark.usefixtures("fast_compiles")   # conftest.py


def random_batch(config, rng):
  info = sources.dataset_info(config.dataset)
  shape = (BATCH,) + info.event_shape
  batch = {"x": rng.uniform(0, info.num_levels, shape).astype(np.float32),
           "label": np.arange(BATCH, dtype=np.int32),
           "index": np.arange(BATCH, dtype=np.int32)}
  if config.model in ("ncl", "nct"):
    batch["neighbours"] = rng.uniform(
        0, info.num_levels,
        (BATCH, config.neighbours.k) + info.event_shape).astype(np.float32)
  return batch


def get_config(name):
  return importlib.import_module(f"configs.{name}").get_config()


@pytest.mark.parametrize("model", MODELS)
def test_fashion_mnist_configs_are_mnist_configs_but_for_the_dataset(model):
  fashion = get_config(f"{model}_fashion_mnist").to_dict()
  mnist = get_config(f"{model}_mnist").to_dict()
  assert (fashion.pop("dataset"), mnist.pop("dataset")) == (
      "fashion_mnist", "mnist")
  assert fashion == mnist
  assert f"`{model}_fashion_mnist` |" in README


def build(name):
  """(config, model, optimizer, batch) of config `name`, its settings checked.

  The config has paper 1's k and flow size for its dataset and validates.
  """
  config = get_config(name)
  k, scales, blocks, hidden, _, _ = paper1.SETTINGS[config.dataset]
  assert config.dataset == DATASET_OF[name.split("_", 1)[1]]
  assert (config.neighbours.k, config.flow.num_scales,
          config.flow.num_res_blocks, config.flow.hidden_channels) == (
              k, scales, blocks, hidden)
  trainer.validate_config(config)
  model = registry.build_model(config)
  optimizer = state_lib.make_optimizer(config.optimizer,
                                       config.num_train_steps)
  batch = random_batch(config, np.random.default_rng(0))
  return config, model, optimizer, batch


def assert_readme_row(name, params):
  assert f"`{name}` | {model_base.count_params(params):,} |" in README


def reduced(config):
  """A copy of `config` with one residual block of 4 channels per coupler.

  The same dataset, k, scales and couplings: the same program but for the
  couplers' widths and depth, which compiles several times faster.
  """
  config = config.copy_and_resolve_references()
  config.flow.num_res_blocks = 1
  config.flow.hidden_channels = 4
  return config


def train_state_shapes(model, optimizer, batch):
  return jax.eval_shape(
      lambda key: state_lib.create_train_state(model, optimizer, key, batch),
      jax.random.key(0))


@pytest.mark.parametrize("name", TRAINED)
def test_paper_sized_step_traces_and_its_reduced_copy_trains_one_step(name):
  config, model, optimizer, batch = build(name)
  # The paper-sized step, traced without a compile: the new state has the
  # old one's shapes and dtypes, the loss and gradient norm are scalars.
  state = train_state_shapes(model, optimizer, batch)
  assert_readme_row(name, state.params)
  new_state, metrics = jax.eval_shape(
      trainer.make_train_step(model, optimizer), state, batch)
  shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)
  assert shapes(new_state) == shapes(state)
  assert metrics["loss"].shape == metrics["grad_norm"].shape == ()
  # The reduced copy runs a real step.
  config = reduced(config)
  trainer.validate_config(config)
  model = registry.build_model(config)
  small = state_lib.create_train_state(model, optimizer, jax.random.key(0),
                                       batch)
  assert model_base.count_params(small.params) < (
      model_base.count_params(state.params))
  step = jax.jit(trainer.make_train_step(model, optimizer))
  small, metrics = step(small, batch)
  assert int(small.step) == 1 and float(metrics["skipped"]) == 0.0
  assert np.isfinite(float(metrics["loss"]))
  # The warm-up schedule's first learning rate is 0, so look at the gradient.
  assert 0 < float(metrics["grad_norm"]) < np.inf


@pytest.mark.parametrize("name", SAME_STEP_AS_TRAINED)
def test_fashion_mnist_config_has_its_settings_and_readme_row(name):
  # Its train step is the MNIST config's, trained above (the configs are
  # equal but for the dataset, and both datasets are 28 x 28 x 1).
  assert sources.dataset_info(DATASET_OF["fashion_mnist"]).event_shape == (
      sources.dataset_info(DATASET_OF["mnist"]).event_shape)
  _, model, optimizer, batch = build(name)
  state = train_state_shapes(model, optimizer, batch)
  assert_readme_row(name, state.params)
