"""Tests for models/alexnet.py: counts, shapes, towers, LRN, dropout, init, training, and
the torchvision converter.

Counts and shapes go through jax.eval_shape (no compile). Executed tests use 1/8 width at
63x63, the smallest input AlexNet accepts. The torchvision equivalence tests are skipped
where torch is not installed.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import alexnet as alexnet_config
from models import create_model
from models import torch_convert as tc
from models.alexnet import AlexNet
from models.layers import local_response_norm
from tests import model_testing
from tests import torch_reference as tr
from training import config as config_lib

TINY = (2, 63, 63, 3)  # the smallest input: 1x1x256 before fc6
WIDTH = 0.125


_count = model_testing.count_params
_abstract_init = model_testing.abstract_init
_key = model_testing.fast_key


# ------------------------------------------------------------------------------ counts


@pytest.mark.parametrize("name,params,stats", [
    ("alexnet", 60_965_224, 0),
    ("alexnet_torchvision", 61_100_840, 0),
    ("alexnet_bn", 60_966_600, 2 * 1376),
])
def test_param_counts(name, params, stats):
  v = _abstract_init(create_model(name, num_classes=1000), (1, 224, 224, 3))
  assert _count(v["params"]) == params
  assert _count(v.get("batch_stats", {})) == stats


def test_224_and_227_readings_give_6x6x256_before_fc6():
  # Padding 2 on 224 (ours) and no padding on 227 (the other reading) give the same net.
  for shape, pad in (((1, 224, 224, 3), 2), ((1, 227, 227, 3), 0)):
    v = _abstract_init(create_model("alexnet", num_classes=1000, conv1_padding=pad), shape)
    assert v["params"]["fc6"]["kernel"].shape == (6 * 6 * 256, 4096)
    assert _count(v["params"]) == 60_965_224


def test_output_shapes_and_dtypes():
  for name in ("alexnet", "alexnet_torchvision", "alexnet_bn"):
    model = create_model(name, num_classes=10, dtype=jnp.bfloat16)
    v = _abstract_init(model, (2, 224, 224, 3))
    out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v,
                         jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32))
    assert out.shape == (2, 10) and out.dtype == jnp.bfloat16
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(v["params"]))


def test_smallest_input_is_63():
  model = create_model("alexnet", num_classes=10)
  assert _abstract_init(model, TINY)["params"]["fc6"]["kernel"].shape == (256, 4096)
  with pytest.raises(ValueError, match="at least 63x63"):
    _abstract_init(model, (1, 62, 62, 3))
  # torchvision's adaptive pool repeats the 1x1 map to 6x6: fc6 keeps its 9216 inputs.
  v = _abstract_init(create_model("alexnet_torchvision", num_classes=10), TINY)
  assert v["params"]["fc6"]["kernel"].shape == (9216, 4096)


def test_two_towers():
  """conv2, conv4 and conv5 see only their own tower's half of the maps; conv3 sees all."""
  p = _abstract_init(create_model("alexnet", num_classes=1000), (1, 224, 224, 3))["params"]
  assert p["conv1"]["kernel"].shape == (11, 11, 3, 96)
  assert p["conv2"]["kernel"].shape == (5, 5, 48, 256)
  assert p["conv3"]["kernel"].shape == (3, 3, 256, 384)
  assert p["conv4"]["kernel"].shape == (3, 3, 192, 384)
  assert p["conv5"]["kernel"].shape == (3, 3, 192, 256)
  tv = _abstract_init(create_model("alexnet_torchvision", num_classes=1000),
                      (1, 224, 224, 3))["params"]
  assert tv["conv2"]["kernel"].shape == (5, 5, 64, 192)
  with pytest.raises(ValueError, match="towers"):
    _abstract_init(create_model("alexnet", num_classes=10, width=0.01), TINY)


def test_two_towers_do_not_mix():
  """Shifting tower 1's conv1 maps changes tower 1 of conv2 only, and all of conv3.

  Per-tower LRN keeps the towers apart (the paper's LRN window crosses the boundary)."""
  model = create_model("alexnet", num_classes=10, width=WIDTH, lrn_per_tower=True)
  variables, x = _random_variables(model, TINY)
  conv1_bias = variables["params"]["conv1"]["bias"]  # 12 maps: 6 per tower
  shifted = jax.tree.map(lambda a: a, variables)
  shifted["params"]["conv1"]["bias"] = conv1_bias.at[:6].add(5.0)
  run = jax.jit(lambda v: model.apply(v, x, train=False, capture_intermediates=True)[1])
  before, after = (run(v)["intermediates"] for v in (variables, shifted))
  delta = lambda name: jnp.abs(after[name]["__call__"][0] - before[name]["__call__"][0])
  assert delta("conv2").shape[-1] == 32
  assert float(delta("conv2")[..., :16].min()) > 0  # tower 1: every output moved
  assert float(delta("conv2")[..., 16:].max()) == 0  # tower 2: untouched
  assert float(delta("conv3").min()) > 0  # conv3 reads both towers


# --------------------------------------------------------------------------------- LRN


def _lrn_reference(a: np.ndarray, n=5, k=2.0, alpha=1e-4, beta=0.75) -> np.ndarray:
  """The paper's Sec. 3.3 formula, one channel at a time."""
  big_n = a.shape[-1]
  b = np.empty_like(a)
  for i in range(big_n):
    lo, hi = max(0, i - n // 2), min(big_n - 1, i + n // 2)
    s = np.sum(a[..., lo:hi + 1] ** 2, axis=-1)
    b[..., i] = a[..., i] / (k + alpha * s) ** beta
  return b


def test_lrn_matches_paper_formula_including_edges():
  # Large activations so that the alpha term matters: (k + alpha*sum) is far from k.
  a = np.random.default_rng(0).normal(0, 60, (2, 3, 3, 7)).astype(np.float32)
  got = np.asarray(local_response_norm(jnp.asarray(a), size=5, k=2.0, alpha=1e-4, beta=0.75))
  np.testing.assert_allclose(got, _lrn_reference(a), rtol=1e-5)
  assert not np.allclose(got, a / 2.0**0.75, rtol=1e-2)  # the sum term is not negligible
  # The model's LRN is this one, over all maps or, per tower, over each half.
  x = jnp.asarray(np.random.default_rng(1).normal(0, 60, (1, 2, 2, 12)).astype(np.float32))
  whole = AlexNet().apply({}, x, method=AlexNet._local_response_norm)
  np.testing.assert_allclose(whole, _lrn_reference(np.asarray(x)), rtol=1e-5)
  per_tower = AlexNet(lrn_per_tower=True).apply({}, x, method=AlexNet._local_response_norm)
  halves = [_lrn_reference(np.asarray(x)[..., s]) for s in (slice(0, 6), slice(6, 12))]
  np.testing.assert_allclose(per_tower, np.concatenate(halves, -1), rtol=1e-5)


# --------------------------------------------------------------------- dropout and init


def _random_variables(model, shape, seed=0):
  """The model's variable tree filled with N(0, 0.2) numbers: skips the slow init."""
  rng = np.random.default_rng(seed)
  abstract = _abstract_init(model, shape)
  variables = jax.tree.map(lambda a: jnp.asarray(rng.normal(0, 0.2, a.shape), a.dtype),
                           abstract)
  return variables, jnp.asarray(rng.normal(size=shape), jnp.float32)


def test_dropout_placement():
  """With rate 1 a dropped layer input is all zeros, which shows where dropout sits."""
  rngs = {"dropout": _key(5)}
  # The paper drops the outputs of fc6 and fc7 (the inputs of fc7 and fc8): the logits
  # are fc8's bias alone.
  paper = create_model("alexnet", num_classes=10, width=WIDTH, dropout_rate=1.0)
  v, x = _random_variables(paper, TINY)
  out = jax.jit(lambda v, x: paper.apply(v, x, train=True, rngs=rngs))(v, x)
  np.testing.assert_array_equal(out, jnp.broadcast_to(v["params"]["fc8"]["bias"], (2, 10)))
  # torchvision drops the inputs of fc6 and fc7: the logits no longer depend on the image,
  # but fc8 still sees fc7's ReLU(bias) outputs.
  tv = create_model("alexnet_torchvision", num_classes=10, width=WIDTH, dropout_rate=1.0)
  v, x = _random_variables(tv, TINY)
  v["params"]["fc7"]["bias"] = jnp.abs(v["params"]["fc7"]["bias"])
  out = jax.jit(lambda v, x: tv.apply(v, x, train=True, rngs=rngs))(v, x)
  np.testing.assert_array_equal(out[0], out[1])
  assert float(jnp.abs(out[0] - v["params"]["fc8"]["bias"]).max()) > 0
  with pytest.raises(ValueError, match="dropout_at"):
    _abstract_init(create_model("alexnet", num_classes=10, dropout_at=("fc9",)), TINY)


@pytest.fixture(scope="module")
def trained():
  """The paper's AlexNet at 1/8 width: its init, then 8 Adam steps on one fixed batch
  (no dropout, so the loss curve shows the steps alone)."""
  model = create_model("alexnet", num_classes=10, width=WIDTH, dropout_rate=0.0)
  initial, losses, final = model_testing.train_on_fixed_batch(model, TINY[1:])
  return initial.params, losses, final.params


def test_paper_init(trained):
  p = trained[0]
  for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
    bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
    np.testing.assert_array_equal(p[name]["bias"], bias, err_msg=name)
    assert float(np.std(p[name]["kernel"])) == pytest.approx(0.01, rel=0.15), name
    assert abs(float(np.mean(p[name]["kernel"]))) < 2e-3, name


def test_train_steps_lower_loss_on_fixed_batch(trained):
  initial, losses, final = trained
  assert all(np.isfinite(losses))
  # The paper's N(0, 0.01) init starts slowly: this is mostly fc8 fitting the labels.
  assert losses[-1] < losses[0] - 0.08, losses
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), initial, final)
  assert all(jax.tree.leaves(changed))


def test_input_scale_multiplies_the_input_and_adds_no_parameters():
  plain = create_model("alexnet", num_classes=10, width=WIDTH, dropout_rate=0.0)
  scaled = create_model("alexnet", num_classes=10, width=WIDTH, dropout_rate=0.0,
                        input_scale=90.0)
  v = _abstract_init(scaled, (1, 63, 63, 1))
  assert _count(v["params"]) == _count(_abstract_init(plain, (1, 63, 63, 1))["params"])
  # conv1 sees 90 x the input: same output shape as the plain net given 90 x x.
  x = jax.ShapeDtypeStruct((2, 63, 63, 1), jnp.float32)
  out = jax.eval_shape(lambda v, x: scaled.apply(v, x, train=False), v, x)
  assert out.shape == (2, 10)
  variables = plain.init(_key(0), jnp.zeros((1, 63, 63, 1)), train=False)
  x = jax.random.normal(_key(1), (2, 63, 63, 1))
  np.testing.assert_allclose(scaled.apply(variables, x, train=False),
                             plain.apply(variables, 90.0 * x, train=False), rtol=1e-5,
                             atol=1e-5)
  with pytest.raises(ValueError, match="input_scale > 0"):
    _abstract_init(create_model("alexnet", num_classes=10, width=WIDTH, input_scale=0.0),
                   TINY)


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("arg,model", [
    (None, "alexnet"), ("torchvision", "alexnet_torchvision"), ("bn", "alexnet_bn"),
    ("tiny", "alexnet"), ("tiny,bn", "alexnet_bn"), ("fashion_mnist", "alexnet")])
def test_configs(arg, model):
  c = alexnet_config.get_config(arg)
  config_lib.validate(c)
  assert c.model == model
  if arg and "tiny" in arg:
    assert c.dataset == "synthetic" and tuple(c.synthetic.shape) == TINY[1:]
  elif arg == "fashion_mnist":
    assert c.dataset.endswith("fashion_mnist/fashion_mnist.npz") and c.image_size == 63
    assert (c.model_kwargs.width, c.model_kwargs.input_scale) == (0.125, 90.0)
    assert not c.augment.flip and tuple(c.augment.scale_jitter) == (0, 0)
  else:
    assert (c.dataset, c.image_size, c.batch_size, c.num_epochs) == ("imagenet2012", 224,
                                                                      128, 90)
    assert (c.learning_rate, c.momentum, c.weight_decay) == (0.01, 0.9, 5e-4)
    assert tuple(c.decay_epochs) == (30, 60, 80)


def test_fashion_mnist_tiny_config_has_grey_63x63_images():
  c = alexnet_config.get_config("fashion_mnist,tiny")
  config_lib.validate(c)
  assert tuple(c.synthetic.shape) == (63, 63, 1) and c.schedule == "cosine"


# -------------------------------------------------------------------------- converter


def _torchvision_state_dict(params) -> dict[str, np.ndarray]:
  """Our ``alexnet_torchvision`` params in torchvision's names and layouts."""
  sd = {}
  for i, j in enumerate((0, 3, 6, 8, 10)):
    sd[f"features.{j}.weight"] = np.transpose(params[f"conv{i + 1}"]["kernel"], (3, 2, 0, 1))
    sd[f"features.{j}.bias"] = np.asarray(params[f"conv{i + 1}"]["bias"])
  k = np.asarray(params["fc6"]["kernel"])  # rows in (h, w, c) order
  c = params["conv5"]["kernel"].shape[-1]
  sd["classifier.1.weight"] = k.reshape(6, 6, c, -1).transpose(3, 2, 0, 1).reshape(-1, 36 * c)
  sd["classifier.1.bias"] = np.asarray(params["fc6"]["bias"])
  for name, j in (("fc7", 4), ("fc8", 6)):
    sd[f"classifier.{j}.weight"] = np.asarray(params[name]["kernel"]).T
    sd[f"classifier.{j}.bias"] = np.asarray(params[name]["bias"])
  return sd


def test_converter_round_trip_and_strictness():
  model = create_model("alexnet_torchvision", num_classes=10, width=WIDTH)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda a: rng.normal(size=a.shape).astype(np.float32),
                        _abstract_init(model, TINY)["params"])
  sd = _torchvision_state_dict(params)
  got = tc.convert("alexnet_torchvision", sd, model=model, input_shape=TINY)
  jax.tree.map(np.testing.assert_array_equal, got["params"], params)

  missing = dict(sd)
  del missing["features.8.bias"]
  with pytest.raises(tc.ConversionError, match="features.8.bias"):
    tc.convert("alexnet_torchvision", missing, model=model, input_shape=TINY)
  extra = dict(sd, **{"features.11.weight": np.zeros(3, np.float32)})
  with pytest.raises(tc.ConversionError, match="features.11.weight"):
    tc.convert("alexnet_torchvision", extra, model=model, input_shape=TINY)
  with pytest.raises(tc.ConversionError, match="shape mismatch"):
    tc.convert("alexnet_torchvision", sd, model=create_model(
        "alexnet_torchvision", num_classes=10, width=0.25), input_shape=TINY)


@pytest.mark.parametrize("size", [63, 224])
def test_matches_torchvision(size):
  torch, torchvision = tr.import_torchvision()
  torch.manual_seed(0)
  ref_model = torchvision.models.alexnet(num_classes=1000)
  ours = create_model("alexnet_torchvision", num_classes=1000)
  shape = (2, size, size, 3)
  variables = tc.convert("alexnet_torchvision", tr.state_dict_numpy(ref_model), model=ours,
                         input_shape=shape)
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  ref = tr.torch_logits(torch, ref_model, x)
  got = jax.jit(lambda v, x: ours.apply(v, x, train=False))(variables, x)
  err = tr.max_relative_error(got, ref)
  print(f"alexnet_torchvision {size}x{size}: max relative error {err:.2e}")
  assert err < 1e-4
