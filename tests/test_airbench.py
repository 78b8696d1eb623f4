"""airbench's network (models/airbench.py): counts, init, BatchNorm and output scale."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import models
from models import airbench


def _params(model, shape):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape)),
                                           train=False))["params"]


@pytest.mark.parametrize("shape,count", [((32, 32, 3), 1_971_640),  # the paper's 1.97M
                                         ((28, 28, 1), 1_962_152)])
def test_parameter_count(shape, count):
  params = _params(models.create_model("airbench94", num_classes=10), shape)
  assert sum(x.size for x in jax.tree.leaves(params)) == count


def test_layers_are_the_papers():
  params = _params(models.create_model("airbench94", num_classes=10), (32, 32, 3))
  # The whitening layer: 2x2, 2 * 3 * 4 = 24 filters with bias.
  assert params["whiten"]["kernel"].shape == (2, 2, 3, 24)
  assert params["whiten"]["bias"].shape == (24,)
  for i, (cin, cout) in enumerate(((24, 64), (64, 256), (256, 256)), start=1):
    g = params[f"group{i}"]
    assert g["conv1"]["kernel"].shape == (3, 3, cin, cout)
    assert g["conv2"]["kernel"].shape == (3, 3, cout, cout)
    assert "bias" not in g["conv1"] and "bias" not in g["conv2"]
    # BatchNorm learns its bias only.
    assert set(g["norm1"]) == set(g["norm2"]) == {"bias"}
  assert set(params["head"]) == {"kernel"}  # no bias


def test_dirac_init_passes_the_first_channels_through():
  w = airbench.dirac_init(jax.random.key(1), (3, 3, 16, 40))
  w = np.asarray(w)
  expected = np.zeros((3, 3, 16, 16))
  expected[1, 1] = np.eye(16)
  np.testing.assert_array_equal(w[..., :16], expected)
  rest = w[..., 16:]
  bound = 1 / np.sqrt(3 * 3 * 16)  # PyTorch's default: U(+-1/sqrt(fan_in))
  assert np.abs(rest).max() <= bound
  assert np.abs(rest).max() > 0.9 * bound  # uniform over the whole range


def test_batchnorm_running_statistics_move_by_0_4_of_the_batch():
  model = models.create_model("airbench94", num_classes=10, widths=(4, 4, 4))
  x = jax.random.normal(jax.random.key(2), (8, 28, 28, 1)) + 3.0
  variables = model.init(jax.random.key(0), x, train=False)
  _, new = model.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                       capture_intermediates=True)
  # norm1 of the first group sees its conv's output max-pooled 2x2.
  conv = new["intermediates"]["group1"]["conv1"]["__call__"][0]
  pooled = np.asarray(conv)[:, :26, :26].reshape(8, 13, 2, 13, 2, 4).max(axis=(2, 4))
  got = np.asarray(new["batch_stats"]["group1"]["norm1"]["mean"])
  np.testing.assert_allclose(got, 0.4 * pooled.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fast", [True, False])
def test_batchnorm_variance_of_a_channel_with_a_large_mean(fast):
  # Channel 0 at 10 +- 1e-3: its variance is 1e-8 of its squared mean, under float32's
  # resolution, so the one-pass E[x^2] - E[x]^2 loses it and the exact E[(x - E[x])^2]
  # (PyTorch's) keeps it. The group's dirac-initialised conv passes channel 0 through.
  z = jax.random.normal(jax.random.key(4), (8, 8, 8, 4))
  x = z.at[..., 0].set(10.0 + 1e-3 * z[..., 0])
  group = airbench.ConvGroup(4, bn_fast_variance=fast)
  variables = group.init(jax.random.key(0), x, train=False)
  _, new = group.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                       capture_intermediates=True)
  normed = np.asarray(new["intermediates"]["norm1"]["__call__"][0])
  stds = normed.std(axis=(0, 1, 2))
  np.testing.assert_allclose(stds[1:], 1.0, rtol=1e-3)  # ordinary channels: both agree
  if fast:
    assert abs(stds[0] - 1.0) > 0.1, stds[0]
  else:
    assert abs(stds[0] - 1.0) < 1e-3, stds[0]


def test_logits_are_scaled_by_the_scaling_factor():
  x = jax.random.normal(jax.random.key(3), (2, 28, 28, 1))
  a = models.create_model("airbench94", num_classes=10, widths=(4, 8, 8))
  b = models.create_model("airbench94", num_classes=10, widths=(4, 8, 8), scaling_factor=1.0)
  variables = a.init(jax.random.key(0), x, train=False)
  np.testing.assert_allclose(9 * a.apply(variables, x, train=False),
                             b.apply(variables, x, train=False), rtol=1e-5, atol=1e-6)


def test_bad_widths_are_one_line():
  with pytest.raises(models.ModelOptionError, match="widths"):
    models.create_model("airbench94", num_classes=10, widths=(64, 0, 256))


def _correlated_images(n=40, size=9, channels=3):
  """Smooth random images: neighbouring pixels and channels strongly correlated."""
  x = np.random.default_rng(0).normal(size=(n, size, size, channels))
  x = x.cumsum(axis=1).cumsum(axis=2) / size
  return (x + 0.5 * x[..., :1]).astype(np.float32)


def test_whitening_filters_whiten_the_patches():
  x = _correlated_images()
  filters = airbench.whitening_filters(x, 2)
  assert filters.shape == (2, 2, 3, 24)
  y = jax.lax.conv_general_dilated(x, filters, (1, 1), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y = np.asarray(y, np.float64).reshape(-1, 24)
  # The first 12 outputs are the patches' principal components scaled to unit variance
  # (less eps's share), uncorrelated; the other 12 are the same negated.
  patches = np.stack([x[:, i:8 + i, j:8 + j] for i in (0, 1) for j in (0, 1)], 3)
  eigenvalues = np.linalg.eigvalsh(np.cov(patches.reshape(-1, 12).T, bias=True))
  covariance = y[:, :12].T @ y[:, :12] / len(y)
  np.testing.assert_allclose(np.diag(covariance), eigenvalues / (eigenvalues + 5e-4),
                             rtol=1e-3)
  off = covariance - np.diag(np.diag(covariance))
  assert np.abs(off).max() < 1e-4
  assert eigenvalues.max() / eigenvalues.min() > 100  # the raw patches are far from white
  np.testing.assert_array_equal(filters[..., 12:], -filters[..., :12])


def test_cifar10_normalization_keeps_grey_repeated_as_rgb_apart():
  """normalization='cifar10' is airbench's CIFAR_MEAN / CIFAR_STD. Grey images repeated
  as R, G and B and normalised by their own statistics have three equal channels: 16 of
  the 24 whitening filters (8 directions, each with its negation) see only the channels'
  differences and answer with rounding noise. CIFAR-10's constants differ per channel,
  so the channels are affine maps of the grey image, not copies: the offsets between
  them are one more direction of data, and 14 filters are left blind."""
  from training import config as config_lib  # pylint: disable=g-import-not-at-top
  from training import data as data_lib  # pylint: disable=g-import-not-at-top
  import input_pipeline  # pylint: disable=g-import-not-at-top
  grey = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)
  rgb = np.repeat(grey, 3, axis=-1)
  info = data_lib.DataInfo("grey", (8, 8, 3), 10, 64, 64, False, (0.5,) * 3, (0.29,) * 3)

  def blind_filters(normalization):
    mean, std = data_lib.normalization_stats(
        ml_collections.ConfigDict(dict(normalization=normalization)), info)
    x = np.asarray(input_pipeline.normalize(rgb, mean, std))
    filters = airbench.whitening_filters(x, 2)
    y = np.asarray(jax.lax.conv_general_dilated(
        x, filters, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    rms = np.sqrt((y.reshape(-1, 24) ** 2).mean(axis=0))
    return int((rms < 1e-3 * rms.max()).sum()), mean, std

  assert blind_filters("dataset")[0] == 16
  blind, mean, std = blind_filters("cifar10")
  assert (mean, std) == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
  assert blind == 14
  with pytest.raises(config_lib.ConfigError, match="normalization='cifar10' needs 3-channel "
                     r"images; grey has 1 \(--config.grey_to_rgb=true"):
    data_lib.normalization_stats(ml_collections.ConfigDict(dict(normalization="cifar10")),
                                 data_lib.DataInfo("grey", (8, 8, 1), 10, 64, 64, False,
                                                   (0.5,), (0.29,)))


def test_data_init_sets_the_whitening_filters_only():
  model = models.create_model("airbench94", num_classes=10, widths=(4, 4, 4))
  x = _correlated_images(size=28, channels=1)
  params = model.init(jax.random.key(0), x[:1], train=False)["params"]
  init = models.data_init("airbench94")
  new = init(params, x)
  np.testing.assert_array_equal(new["whiten"]["kernel"], airbench.whitening_filters(x, 2))
  for path in (("whiten", "bias"), ("group1", "conv1", "kernel"), ("head", "kernel")):
    a, b = params, new
    for k in path:
      a, b = a[k], b[k]
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="3 channels"):
    init(params, _correlated_images(size=28, channels=3))
  assert models.data_init("resnet20") is None
