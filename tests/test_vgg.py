"""Tests for models/vgg.py: counts, shapes, layer names, training, and the torchvision
converters.

Counts and shapes go through jax.eval_shape (no compile). Executed tests use 1/8 width at
32x32, the smallest input VGG accepts. The torchvision equivalence tests are skipped where
torch is not installed.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import vgg as vgg_config
from models import create_model
from models import torch_convert as tc
from models.vgg import CFGS, DEPTHS
from tests import model_testing
from tests import torch_reference as tr
from training import config as config_lib

TINY = (2, 32, 32, 3)  # the smallest input: five 2x2 pools down to 1x1
WIDTH = 0.125
COUNTS = {  # torchvision's (REFERENCE.md), 1000 classes
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
}


_count = model_testing.count_params
_abstract_init = model_testing.abstract_init
_key = model_testing.fast_key


# ------------------------------------------------------------------------------ counts


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_param_counts(name):
  # The adaptive pool makes the count independent of the input size.
  v = _abstract_init(create_model(name, num_classes=1000), (1, 32, 32, 3))
  assert _count(v["params"]) == COUNTS[name]
  convs = sum(1 for x in CFGS[DEPTHS[int(name[3:5])]] if x != "M")
  assert int(name[3:5]) == convs + 3  # weight layers: the convs and fc6-fc8
  if name.endswith("_bn"):
    assert _count(v["batch_stats"]) == _count(v["params"]) - COUNTS[name[:-3]]
  else:
    assert "batch_stats" not in v


def test_layer_names_and_shapes_follow_the_paper():
  p = _abstract_init(create_model("vgg16_bn", num_classes=1000), (1, 224, 224, 3))["params"]
  convs = [k for k in p if k.startswith("conv")]
  assert convs == [f"conv{s}_{i}" for s, n in zip(range(1, 6), (2, 2, 3, 3, 3))
                   for i in range(1, n + 1)]
  assert p["conv1_1"]["kernel"].shape == (3, 3, 3, 64)
  assert p["conv5_3"]["kernel"].shape == (3, 3, 512, 512)
  assert p["bn3_2"]["scale"].shape == (256,)
  assert "bias" in p["conv3_2"]  # torchvision keeps conv biases before BN
  assert p["fc6"]["kernel"].shape == (7 * 7 * 512, 4096)
  assert p["fc8"]["kernel"].shape == (4096, 1000)


@pytest.mark.parametrize("size", [32, 224])
def test_output_shapes_and_dtypes(size):
  model = create_model("vgg19_bn", num_classes=10, dtype=jnp.bfloat16)
  v = _abstract_init(model, (2, size, size, 3))
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v,
                       jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32))
  assert out.shape == (2, 10) and out.dtype == jnp.bfloat16
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(v["params"]))


def test_smaller_than_32_is_rejected():
  with pytest.raises(ValueError, match="at least 32x32"):
    _abstract_init(create_model("vgg11", num_classes=10), (1, 31, 31, 3))


@pytest.mark.parametrize("name", ["vgg13", "vgg16_bn"])
def test_stack_single_is_one_conv_of_the_same_field_per_stage(name):
  # Sec. 4.1: net B with each pair of 3x3 convs as one 5x5 (a stage of three: one 7x7).
  model = create_model(name, num_classes=1000, stack="single")
  v = _abstract_init(model, (1, 32, 32, 3))
  p = v["params"]
  cfg = CFGS[DEPTHS[int(name[3:5])]]
  stages, n = [], 0
  for x in cfg:
    if x == "M":
      stages.append(n)
      n = 0
    else:
      n, width = n + 1, x
  assert sorted(k for k in p if k.startswith("conv")) == [f"conv{s}_1" for s in range(1, 6)]
  widths = [w for i, w in enumerate(cfg) if w != "M" and cfg[i + 1] == "M"]
  expected, c_in = 0, 3
  for s, (n, c) in enumerate(zip(stages, widths), start=1):
    k = 2 * n + 1
    assert p[f"conv{s}_1"]["kernel"].shape == (k, k, c_in, c)
    expected += k * k * c_in * c + c + (2 * c if name.endswith("_bn") else 0)
    c_in = c
  fc = sum(_count(p[f]) for f in ("fc6", "fc7", "fc8"))
  assert _count(p) == expected + fc
  if name == "vgg13":
    assert _count(p) == 134_503_528  # 1,455,680 more than B's 133,047,848
    three = _abstract_init(create_model(name, num_classes=1000), (1, 32, 32, 3))["params"]
    # Stage 5 (512 -> 512): 18C^2 against 25C^2 weights.
    assert _count(three["conv5_1"]) + _count(three["conv5_2"]) == 2 * (9 * 512**2 + 512)
    assert _count(p["conv5_1"]) == 25 * 512**2 + 512
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v,
                       jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
  assert out.shape == (2, 1000)


def test_stack_single_keeps_the_receptive_fields():
  import analysis  # pylint: disable=g-import-not-at-top
  fields = {}
  for stack in ("3x3", "single"):
    r = analysis.analyze(create_model("vgg16", num_classes=10, width=WIDTH, stack=stack),
                         (1, 64, 64, 3))
    fields[stack] = [l.field.size for l in r.layers if l.op.startswith("max_pool")]
  assert fields["3x3"] == fields["single"] and fields["3x3"][-1] == (212, 212)


def test_stack_rejects_unknown_values():
  with pytest.raises(ValueError, match="stack.*'3x3', 'single'"):
    create_model("vgg11", num_classes=10, stack="5x5")


# ------------------------------------------------------------- dense evaluation (Sec. 3.2)


def _dense_model(name):
  # 1/8 width and 32 hidden units (256 * 1/8): the stage structure of the paper's net.
  return create_model(name, num_classes=10, width=WIDTH, hidden_units=256)


def _random_variables(model, seed=0):
  """Every parameter and BN statistic random and O(1) in effect (zero biases or unit BN
  would hide a misplaced term)."""
  rng = np.random.default_rng(seed)

  def draw(path, a):
    name = path[-1].key
    if name == "kernel":
      return rng.normal(size=a.shape) / math.sqrt(math.prod(a.shape[:-1]))
    if name in ("scale", "var"):
      return rng.uniform(0.5, 1.5, a.shape)
    return 0.1 * rng.normal(size=a.shape)  # bias, mean

  v = jax.tree_util.tree_map_with_path(draw, _abstract_init(model, TINY))
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), v)


def _images(shape, seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_dense_equals_call_at_224(name):
  # A 7x7 map before fc6: the 7x7 conv has one position, the adaptive pool is the identity.
  model = _dense_model(name)
  v, x = _random_variables(model), _images((2, 224, 224, 3))
  want = model.apply(v, x, train=False)
  got = model.apply(v, x, method="dense")
  assert got.shape == want.shape == (2, 10)
  scale = float(np.abs(want).max())
  assert scale > 0.1  # the check below is not vacuous
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)
  np.testing.assert_array_equal(model.apply(v, x, train=False, dense=True), got)


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_dense_score_map_matches_a_loop_over_windows(name):
  # 256x288 -> an 8x9 map after pool5 -> a 2x3 class score map. Reference: fc6-fc8 as the
  # dense layers, on each 7x7 window of pool5 flattened in (h, w, c) order, then the mean.
  # A kernel read in another order (c, h, w or w, h, c) or a misplaced window fails.
  model = _dense_model(name)
  v, x = _random_variables(model), _images((2, 256, 288, 3))
  got, state = model.apply(v, x, method="dense", capture_intermediates=True,
                           mutable=["intermediates"])
  last = "bn5_2" if name.endswith("_bn") else "conv5_2"  # vgg11's last conv
  f = np.maximum(np.asarray(state["intermediates"][last]["__call__"][0]), 0)  # 16x18
  b, h, w, c = f.shape
  pool5 = f.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
  assert pool5.shape[1:3] == (8, 9)
  p = jax.tree.map(np.asarray, v["params"])
  scores = []
  for i in range(2):
    for j in range(3):
      y = pool5[:, i:i + 7, j:j + 7].reshape(b, -1)
      for n in ("fc6", "fc7"):
        y = np.maximum(y @ p[n]["kernel"] + p[n]["bias"], 0)
      scores.append(y @ p["fc8"]["kernel"] + p["fc8"]["bias"])
  want = np.mean(scores, axis=0)
  assert got.shape == (2, 10)
  scale = float(np.abs(want).max())
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)
  # Not the normal path's answer (which pools the 8x9 map to 7x7 first).
  assert not np.allclose(model.apply(v, x, train=False), want, rtol=1e-3, atol=1e-3 * scale)


def test_dense_below_224_stretches_the_map_as_call_does():
  # Under 224 a side of the map is under 7: the adaptive pool stretches it to 7 first,
  # so a 32x32 (1x1 map) or 64x288 (2x9 map -> 1x3 score map) input still runs.
  model = _dense_model("vgg11_bn")
  v = _random_variables(model)
  x = _images((2, 32, 32, 3))
  np.testing.assert_allclose(model.apply(v, x, method="dense"),
                             model.apply(v, x, train=False), rtol=1e-5, atol=1e-5)
  assert model.apply(v, _images((2, 64, 288, 3)), method="dense").shape == (2, 10)


def test_dense_shares_the_parameters_and_is_eval_only():
  model = _dense_model("vgg11_bn")
  x = jnp.zeros(TINY)
  a = model.init(_key(0), x, train=False)
  b = model.init(_key(0), x, method="dense")  # the same names, shapes and initial values
  jax.tree.map(np.testing.assert_array_equal, a, b)
  with pytest.raises(ValueError, match="train=False"):
    model.apply(a, x, train=True, dense=True, mutable=["batch_stats"])
  # The paper's net and test scales: shapes only.
  full = create_model("vgg16", num_classes=1000, dtype=jnp.bfloat16)
  v = _abstract_init(full, (1, 224, 224, 3))
  for q in (256, 384, 512):
    out = jax.eval_shape(lambda v, x: full.apply(v, x, method="dense"), v,
                         jax.ShapeDtypeStruct((2, q, q, 3), jnp.float32))
    assert out.shape == (2, 1000) and out.dtype == jnp.bfloat16


@pytest.fixture(scope="module")
def trained():
  """VGG-11 with BN at 1/8 width on 32x32: its init, then 8 Adam steps on one fixed batch
  (no dropout, so the loss curve shows the steps alone)."""
  model = create_model("vgg11_bn", num_classes=10, width=WIDTH, dropout_rate=0.0)
  initial, losses, final = model_testing.train_on_fixed_batch(model, TINY[1:])
  return (initial.params, initial.batch_stats), losses, (final.params, final.batch_stats)


def test_init(trained):
  p = trained[0][0]
  k = p["conv3_1"]["kernel"]  # He normal, fan-out: std sqrt(2 / (3 * 3 * 32))
  assert float(np.std(k)) == pytest.approx(math.sqrt(2 / (9 * k.shape[-1])), rel=0.1)
  assert float(np.std(p["fc7"]["kernel"])) == pytest.approx(0.01, rel=0.1)
  assert all(float(np.abs(p[n]["bias"]).max()) == 0 for n in p)
  assert all(float(np.abs(p[n]["scale"] - 1).max()) == 0 for n in p if n.startswith("bn"))


def test_train_steps_lower_loss_on_fixed_batch(trained):
  initial, losses, final = trained
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.75 * losses[0], losses
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), initial, final)
  assert all(jax.tree.leaves(changed))  # every parameter and BN statistic


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("arg,model", [
    (None, "vgg11"), ("depth=13", "vgg13"), ("depth=16,bn", "vgg16_bn"),
    ("depth=19", "vgg19"), ("tiny", "vgg11"), ("tiny,bn", "vgg11_bn")])
def test_configs(arg, model):
  c = vgg_config.get_config(arg)
  config_lib.validate(c)
  assert c.model == model
  if arg and "tiny" in arg:
    assert c.dataset == "synthetic" and tuple(c.synthetic.shape) == TINY[1:]
  else:
    assert (c.dataset, c.image_size, c.batch_size, c.num_epochs) == ("imagenet2012", 224,
                                                                      256, 74)
    assert (c.learning_rate, c.momentum, c.weight_decay) == (0.01, 0.9, 5e-4)
  with pytest.raises(ValueError, match="depth"):
    vgg_config.get_config("depth=17")


# -------------------------------------------------------------------------- converter


def _torchvision_state_dict(variables, cfg, batch_norm) -> dict[str, np.ndarray]:
  """Our VGG variables in torchvision's names and layouts (the converter's inverse)."""
  params, stats = variables["params"], variables.get("batch_stats", {})
  sd, index, stage, i = {}, 0, 1, 0
  for v in cfg:
    if v == "M":
      index, stage, i = index + 1, stage + 1, 0
      continue
    i += 1
    conv = params[f"conv{stage}_{i}"]
    sd[f"features.{index}.weight"] = np.transpose(conv["kernel"], (3, 2, 0, 1))
    sd[f"features.{index}.bias"] = np.asarray(conv["bias"])
    if batch_norm:
      bn, st = params[f"bn{stage}_{i}"], stats[f"bn{stage}_{i}"]
      for ours, theirs in (("scale", "weight"), ("bias", "bias")):
        sd[f"features.{index + 1}.{theirs}"] = np.asarray(bn[ours])
      sd[f"features.{index + 1}.running_mean"] = np.asarray(st["mean"])
      sd[f"features.{index + 1}.running_var"] = np.asarray(st["var"])
      sd[f"features.{index + 1}.num_batches_tracked"] = np.asarray(0)
    index += 3 if batch_norm else 2
  k = np.asarray(params["fc6"]["kernel"])  # rows in (h, w, c) order
  c = k.shape[0] // 49
  sd["classifier.0.weight"] = k.reshape(7, 7, c, -1).transpose(3, 2, 0, 1).reshape(-1, 49 * c)
  sd["classifier.0.bias"] = np.asarray(params["fc6"]["bias"])
  for name, j in (("fc7", 3), ("fc8", 6)):
    sd[f"classifier.{j}.weight"] = np.asarray(params[name]["kernel"]).T
    sd[f"classifier.{j}.bias"] = np.asarray(params[name]["bias"])
  return sd


@pytest.mark.parametrize("name", ["vgg11", "vgg13_bn"])
def test_converter_round_trip_and_strictness(name):
  model = create_model(name, num_classes=10, width=WIDTH)
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda a: rng.normal(size=a.shape).astype(np.float32),
                           _abstract_init(model, TINY))
  sd = _torchvision_state_dict(variables, model.cfg, model.batch_norm)
  got = tc.convert(name, sd, model=model, input_shape=TINY)
  jax.tree.map(np.testing.assert_array_equal, got, variables)

  missing = dict(sd)
  del missing["features.3.weight"]
  with pytest.raises(tc.ConversionError, match="features.3.weight"):
    tc.convert(name, missing, model=model, input_shape=TINY)
  extra = dict(sd, **{"classifier.7.weight": np.zeros(3, np.float32)})
  with pytest.raises(tc.ConversionError, match="classifier.7.weight"):
    tc.convert(name, extra, model=model, input_shape=TINY)
  # A checkpoint of the other BN setting does not load.
  other = name[:-3] if name.endswith("_bn") else name + "_bn"
  with pytest.raises(tc.ConversionError):
    tc.convert(other, sd, model=create_model(other, num_classes=10, width=WIDTH),
               input_shape=TINY)


# About 10 s each on 2 cores (130-144M parameters to build, convert and compile), so the
# other four (vgg13, vgg13_bn, vgg16_bn, vgg19; same converter, checked in the round trip
# above) are left out; all eight pass with errors of 3e-6 or less.
@pytest.mark.parametrize("name,size", [
    ("vgg11", 32), ("vgg11_bn", 32), ("vgg16", 224), ("vgg19_bn", 32)])
def test_matches_torchvision(name, size):
  torch, torchvision = tr.import_torchvision()
  torch.manual_seed(0)
  ref_model = getattr(torchvision.models, name)(num_classes=1000)
  tr.randomize_batch_norm(torch, ref_model)
  ours = create_model(name, num_classes=1000)
  shape = (1, size, size, 3)
  variables = tc.convert(name, tr.state_dict_numpy(ref_model), model=ours, input_shape=shape)
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  ref = tr.torch_logits(torch, ref_model, x)
  got = jax.jit(lambda v, x: ours.apply(v, x, train=False))(variables, x)
  err = tr.max_relative_error(got, ref)
  print(f"{name} {size}x{size}: max relative error {err:.2e}")
  assert err < 1e-4
