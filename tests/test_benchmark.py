"""train.benchmark: every subcommand prints one valid JSON line (tiny sizes),
and the im2col convolution of `ConvCoupler` equals XLA's on the same
parameters (the benchmark's fast path). No timing assertions."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nbflows.bijectors import couplers
from train.benchmarks import flows as benchmark_flows
from train.benchmarks import jobs as benchmark
from train.benchmarks import knn as benchmark_index
from train.benchmarks import peer_models as benchmark_models


def run(capsys, *argv):
  benchmark.main(list(argv))
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 1, lines
  result = json.loads(lines[0])
  assert result["job"] == argv[0]
  assert np.isfinite(result["value"]) and result["value"] > 0
  return result


TINY = ("--layers", "2", "--batch", "4", "--steps", "1", "--warmup", "0")


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_train_arch(capsys, arch):
  result = run(capsys, "train", "--arch", arch, *TINY,
               *(("--conv-impl", "im2col") if arch == "conv" else ()))
  assert result["unit"] == "images/s" and result["batch"] == 4
  assert result["value"] == pytest.approx(4 / result["step_s_median"],
                                          rel=0.01)
  assert result["compile_s"] > 0 and "speedup" not in result
  assert result["max_abs_logprob_diff_vs_reference"] < 1e-3


def test_train_model(capsys):
  result = run(capsys, "train", "--model", "rnvp", "--data", "digits",
               "--quick", "--batch", "4", "--steps", "1", "--warmup", "0")
  assert result["model"] == "rnvp" and result["batch"] == 4
  assert result["floor_images_per_s"] > 0
  assert result["peak_rss_mb"] > 0 and result["xla_temp_mb"] >= 0


@pytest.mark.parametrize("job", ["logprob", "sample"])
def test_eval_jobs(capsys, job):
  result = run(capsys, job, "--arch", "mlp", *TINY)
  assert result["value"] == pytest.approx(4 / result["call_s_median"],
                                          rel=0.01)
  model = run(capsys, job, "--model", "nct", "--data", "digits", "--quick",
              "--batch", "4", "--steps", "1", "--warmup", "0")
  assert model["model"] == "nct"


def test_logprob_checks_the_reference(capsys):
  result = run(capsys, "logprob", "--arch", "conv", "--conv-impl", "im2col",
               *TINY)
  assert result["max_abs_logprob_diff_vs_reference"] < 1e-3


def test_compile(capsys):
  result = run(capsys, "compile", "--arch", "mlp", "--depths", "2", "4",
               "--batch", "4")
  times = result["compile_s"]
  assert set(times) == {"2", "4"} and result["value"] == times["4"]
  assert result["growth"] == pytest.approx(times["4"] / times["2"] - 1,
                                           abs=2e-3)


def test_matmul_and_knn(capsys):
  assert run(capsys, "matmul", "--n", "64", "--steps", "2")["unit"] == (
      "GFLOP/s")
  knn = run(capsys, "knn", "--n", "300", "--d", "8", "--k", "3",
            "--block-size", "64", "--chunk-size", "128")
  assert knn["unit"] == "s" and knn["n"] == 300


def test_resume(capsys):
  result = run(capsys, "resume", "--steps", "3", "50", "--replay", "4")
  assert set(result["start_at_step"]) == {"3", "50"}
  assert result["replay_at_step"]["50"] == pytest.approx(
      50 * result["replay_seconds_per_batch"], abs=0.1)


def test_index_job_reports_phases_kept_dim_and_recall(capsys):
  result = run(capsys, "index", "--dataset-shape", "600,48", "--rank", "6",
               "--rows-per-block", "128", "--recall-queries", "50")
  assert set(result["seconds"]) == {"generate", "covariance", "eigh",
                                    "projection", "knn"}
  # Rank 6 plus rounding noise: at most 6 components explain 99%.
  assert 1 <= result["kept_dim"] <= 6 and result["kept_fraction"] >= 0.99
  assert result["sorted_by_distance"] and result["peak_rss_mb"] > 0
  assert result["approx_recall"] == 1.0          # approx_max_k exact on CPU
  with pytest.raises(SystemExit):
    benchmark.main(["index", "--dataset-shape", "600"])


def test_synthetic_images_are_uint8_of_the_given_rank():
  images = benchmark_index.synthetic_images(500, 40, rank=5, block_size=64)
  assert images.dtype == np.uint8 and images.shape == (500, 40)
  centred = images - images.mean(0)
  singular = np.linalg.svd(centred, compute_uv=False) ** 2
  # Rank 5 up to rounding noise (variance 1/12 per pixel).
  assert singular[5:].sum() / singular.sum() < 1e-3
  assert singular[4] / singular.sum() > 1e-2


def test_conv_flops_count():
  # 28*28 pixels * 9 taps * (1*32 + 4*32*32 + 32*2) multiply-adds, x 2.
  assert benchmark_models.conv_flops_per_image(1) == 2 * 784 * 9 * 4192


def test_im2col_conv_matches_xla_conv():
  x = jax.random.normal(jax.random.key(0), (2, 6, 7, 3))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, 3, 5))
  ref = jax.lax.conv_general_dilated(
      x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(couplers.im2col_conv(x, kernel), ref,
                             atol=1e-5)
  with pytest.raises(ValueError, match="odd"):
    couplers.im2col_conv(x, jnp.ones((2, 2, 3, 5)))


def test_conv_coupler_im2col_equals_xla_with_gradients():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 2))
  fast = couplers.ConvCoupler(hidden=8, num_blocks=1, conv_impl="im2col")
  reference = couplers.ConvCoupler(hidden=8, num_blocks=1)
  params = reference.init(jax.random.key(1), x)
  # Same parameter tree, and initialised identically from the same key.
  fast_params = fast.init(jax.random.key(1), x)
  assert jax.tree.all(jax.tree.map(np.array_equal, params, fast_params))
  params = benchmark_flows.perturbed(params)  # non-zero output layer

  def loss(module, p):
    return jnp.sum(jnp.sin(module.apply(p, x)))

  np.testing.assert_allclose(fast.apply(params, x), reference.apply(params, x),
                             atol=1e-5)
  grads = jax.grad(lambda p: loss(fast, p))(params)
  ref_grads = jax.grad(lambda p: loss(reference, p))(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4),
               grads, ref_grads)


def test_arch_log_prob_im2col_equals_xla():
  x = benchmark_models.arch_batches("conv", 1, batch=2)[0]
  fast = benchmark_models.arch_flow("conv", 2, conv_impl="im2col")
  params = benchmark_flows.perturbed(fast.init(jax.random.key(0), x))
  reference = benchmark_models.arch_flow("conv", 2)
  np.testing.assert_allclose(
      benchmark_models.arch_log_prob(fast, params, x),
      benchmark_models.arch_log_prob(reference, params, x), rtol=1e-5)


def test_bad_conv_impl_raises():
  coupler = couplers.ConvCoupler(hidden=4, conv_impl="fft")
  with pytest.raises(ValueError, match="conv_impl='fft'"):
    coupler.init(jax.random.key(0), jnp.ones((1, 4, 4, 1)))


def test_train_step_makes_no_host_transfers():
  chain = benchmark_models.arch_flow("mlp", 2)
  xs = benchmark_models.arch_batches("mlp", 2, batch=4)
  params = chain.init(jax.random.key(0), xs[0])
  optimizer, step = benchmark_models.arch_train_step(chain)
  opt_state = optimizer.init(params)
  params, opt_state, first = step(params, opt_state, xs[0])  # compiles
  with jax.transfer_guard("disallow"):
    for x in xs:
      params, opt_state, loss = step(params, opt_state, x)
  # Adam moved the parameters: a second batch gives a different loss.
  assert float(loss) != float(first)
