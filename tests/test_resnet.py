"""Tests for the ImageNet ResNets of models/resnet.py (v1, v1.5, v2, SE) and their
PyTorch converters, and the CIFAR ResNets' plain option (``shortcut='plain'``); the other
CIFAR ResNet tests are in tests/test_models.py.

Counts, layer shapes and stride placement go through jax.eval_shape (tracing only).
What executes uses 8 stem filters (1/8 width) on 32x32 inputs and two or three stages
(a ResNet of any number of stages is the same code); the only compiled programs without
torch are one init and forward pass (v1 with SE and zero-init residuals) and one short
fit (v2, basic blocks). The torch tests use 64x64 inputs (2x2 maps in stage 4), batch 2.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import resnet20_cifar as resnet20_config
from configs import resnet50 as resnet50_config
from configs import se_resnet50 as se_resnet50_config
from models import create_model
from models import torch_convert as tc
from models.layers import max_pool
from models.resnet import BasicBlock, ResNet, se_channels
from tests import model_testing
from tests import torch_reference as tr
from training import config as config_lib
from training import optim

# 1000 classes; v1.5 = torchvision, se_* = timm seresnet*, v2-50 = timm resnetv2_50. The
# v2 and SE counts of depths 34, 101 and 152 in the module docstring come from the same
# code (and equal timm's seresnet*); tracing those nets here would double this file's time.
COUNTS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "resnet50_v1": 25_557_032, "resnet50_v2": 25_549_352, "resnet18_v2": 11_687_720,
    "se_resnet50": 28_088_024, "se_resnet18": 11_779_624,
}
TINY = dict(width=8, stage_sizes=(2, 1, 1, 1))  # 5 bottleneck blocks, one of them identity
# What executes: two stages (an identity block, two projections) keep compiles short.
TINY_RUN = dict(width=8, stage_sizes=(2, 1))
TINY_SHAPE = (2, 32, 32, 3)
TORCH_SHAPE = (2, 64, 64, 3)

_count = model_testing.count_params


@functools.lru_cache(maxsize=None)
def _abstract(name: str, shape=(1, 32, 32, 3), **kw):
  """The abstract variables of a registered model (cached: several tests read them)."""
  return model_testing.abstract_init(create_model(name, num_classes=1000, **kw), shape)


def _intermediate_shapes(model, shape):
  """Output shape of every submodule call, by path (``stage2_block1/conv1``)."""
  v = model_testing.abstract_init(model, shape)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  _, state = jax.eval_shape(lambda v, x: model.apply(
      v, x, train=False, capture_intermediates=True, mutable=["intermediates"]), v, x)
  return {"/".join(str(k.key) for k in path[:-2]): leaf.shape
          for path, leaf in jax.tree_util.tree_leaves_with_path(state["intermediates"])}


def _blocks(tree) -> list[str]:
  return sorted(k for k in tree if k.startswith("stage"))


# ------------------------------------------------------------------------------ counts


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_param_counts(name):
  assert _count(_abstract(name)["params"]) == COUNTS[name]


def test_v2_count_difference_follows_from_its_layers():
  v1, v2 = _abstract("resnet50")["params"], _abstract("resnet50_v2")["params"]
  bn = lambda p: 2 * p["scale"].shape[0]
  # v2 drops each branch's last BN and the projections' BN, adds a BN before the first
  # conv of every block but the first, and one final BN.
  removed = sum(bn(v1[b]["bn3"]) + (bn(v1[b]["proj_bn"]) if "proj_bn" in v1[b] else 0)
                for b in _blocks(v1))
  added = sum(bn(v2[b]["bn1"]) for b in _blocks(v2) if b != "stage1_block1")
  assert _count(v2) == _count(v1) - removed + added + bn(v2["final_bn"])
  # Two statistics per BN channel, as many as the BN parameters.
  bn_params = sum(x.size for path, x in jax.tree_util.tree_leaves_with_path(v2)
                  if "bn" in str(path[-2].key))
  assert _count(_abstract("resnet50_v2")["batch_stats"]) == bn_params


def test_stage_layout_follows_table_1():
  for name, sizes in (("resnet18", (2, 2, 2, 2)), ("resnet34", (3, 4, 6, 3)),
                      ("resnet101", (3, 4, 23, 3)), ("resnet152", (3, 8, 36, 3))):
    blocks = _blocks(_abstract(name)["params"])
    assert [sum(b.startswith(f"stage{s}_") for b in blocks) for s in (1, 2, 3, 4)] == list(sizes)
  p = _abstract("resnet50")["params"]
  assert p["conv1"]["kernel"].shape == (7, 7, 3, 64)
  assert p["stage1_block1"]["conv1"]["kernel"].shape == (1, 1, 64, 64)
  assert p["stage4_block3"]["conv2"]["kernel"].shape == (3, 3, 512, 512)
  assert p["stage4_block3"]["conv3"]["kernel"].shape == (1, 1, 512, 2048)
  assert p["fc"]["kernel"].shape == (2048, 1000)
  # Option B: projections exactly where the shape changes (the first block of a stage).
  assert [b for b in _blocks(p) if "proj_conv" in p[b]] == [
      "stage1_block1", "stage2_block1", "stage3_block1", "stage4_block1"]
  basic = _abstract("resnet18")["params"]
  assert [b for b in _blocks(basic) if "proj_conv" in basic[b]] == [
      "stage2_block1", "stage3_block1", "stage4_block1"]
  assert set(basic["stage1_block1"]) == {"conv1", "bn1", "conv2", "bn2"}


# -------------------------------------------------------------------------- versions


def test_v1_strides_the_first_1x1_and_v1_5_the_3x3():
  # The registered models at 1/8 width, two blocks per stage (tracing cost).
  kw = dict(num_classes=10, width=8, stage_sizes=(2, 2, 2, 2))
  v15 = _intermediate_shapes(create_model("resnet50", **kw), TORCH_SHAPE)
  v1 = _intermediate_shapes(create_model("resnet50_v1", **kw), TORCH_SHAPE)
  # 64x64 input: stage 1 runs on 16x16 maps, stage 2 on 8x8.
  assert v15["stage2_block1/conv1"][1:3] == (16, 16)
  assert v1["stage2_block1/conv1"][1:3] == (8, 8)
  for s, size in ((2, 8), (3, 4), (4, 2)):
    for conv in ("conv2", "conv3", "proj_conv"):
      key = f"stage{s}_block1/{conv}"
      assert v15[key][1:3] == v1[key][1:3] == (size, size)
  assert v1["stage2_block2/conv1"] == v15["stage2_block2/conv1"]  # only first blocks stride
  same = jax.tree.map(lambda a, b: a.shape == b.shape, _abstract("resnet50"),
                      _abstract("resnet50_v1"))
  assert all(jax.tree.leaves(same))
  # Basic blocks stride their first 3x3 conv in every version.
  assert (_intermediate_shapes(create_model("resnet18_v1", **kw), TORCH_SHAPE)
          == _intermediate_shapes(create_model("resnet18", **kw), TORCH_SHAPE))


def test_v2_pre_activation_layout():
  p = _abstract("resnet50_v2")["params"]
  first, later, down = p["stage1_block1"], p["stage1_block2"], p["stage2_block1"]
  # bn{i} precedes conv{i}; the first block shares the stem's BN-ReLU.
  assert set(first) == {"conv1", "conv2", "conv3", "bn2", "bn3", "proj_conv"}
  assert set(later) == set(down) - {"proj_conv"} == {"bn1", "conv1", "bn2", "conv2", "bn3",
                                                     "conv3"}
  assert later["bn1"]["scale"].shape == (256,) and later["bn3"]["scale"].shape == (64,)
  assert down["bn1"]["scale"].shape == (256,)
  assert "proj_bn" not in down and p["final_bn"]["scale"].shape == (2048,)
  assert "bn1" in p  # the stem keeps conv-BN-ReLU-pool


def test_squeeze_excite_width_and_placement():
  p = _abstract("se_resnet50")["params"]
  assert p["stage1_block1"]["se"]["fc1"]["kernel"].shape == (1, 1, 256, 16)
  assert p["stage4_block3"]["se"]["fc2"]["kernel"].shape == (1, 1, 128, 2048)
  assert set(p["stage1_block1"]["se"]["fc1"]) == {"kernel", "bias"}
  # timm rounds C/16 to a multiple of 8: 64 channels get 8 hidden units, not 4.
  assert _abstract("se_resnet18")["params"]["stage1_block1"]["se"]["fc1"]["kernel"].shape[-1] == 8
  paper = _abstract("se_resnet18", se_divisor=1)["params"]
  assert paper["stage1_block1"]["se"]["fc1"]["kernel"].shape[-1] == 4
  assert _count(paper) == 11_778_592
  assert [se_channels(c, 16) for c in (64, 256, 2048)] == [8, 16, 128]
  # The SE block sits on the branch: it scales conv3/bn3's output, before the addition.
  shapes = _intermediate_shapes(create_model("se_resnet50", num_classes=10, **TINY),
                                TORCH_SHAPE)
  assert shapes["stage1_block2/se"] == shapes["stage1_block2/bn3"] == (2, 16, 16, 32)


@pytest.mark.parametrize("name", ["se_resnet50", "resnet50_v2", "resnet18_v2"])
def test_output_shapes_and_bfloat16(name):
  model = create_model(name, num_classes=7, dtype=jnp.bfloat16, **TINY)
  v = model_testing.abstract_init(model, TORCH_SHAPE)
  assert {x.dtype for x in jax.tree_util.tree_leaves(v)} == {jnp.dtype(jnp.float32)}
  x = jax.ShapeDtypeStruct(TORCH_SHAPE, jnp.float32)
  y = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v, x)
  assert y.shape == (2, 7) and y.dtype == jnp.bfloat16
  y, new = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]),
                          v, x)
  assert y.shape == (2, 7)
  assert jax.tree.structure(new["batch_stats"]) == jax.tree.structure(v["batch_stats"])


def test_invalid_options_are_named():
  with pytest.raises(ValueError, match="version"):
    model_testing.abstract_init(create_model("resnet50", num_classes=10, version="v3"),
                                (1, 32, 32, 3))
  with pytest.raises(ValueError, match="block"):
    model_testing.abstract_init(create_model("resnet50", num_classes=10, block="wide"),
                                (1, 32, 32, 3))


# ------------------------------------------------------------- zero init and training


def _by_path(intermediates) -> dict:
  return {"/".join(str(k.key) for k in path[:-2]): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(intermediates)}


def test_zero_init_residual_v1_blocks_start_as_relu_of_shortcut():
  # v1 with SE: the real init and every module's output, one program.
  model = ResNet(num_classes=10, version="v1", se_reduction=16, zero_init_residual=True,
                 **TINY_RUN)

  def init_and_run(key, x):
    v = model.init(key, x, train=False)
    return v, model.apply(v, x, train=False, capture_intermediates=True,
                          mutable=["intermediates"])[1]["intermediates"]

  x = jax.random.normal(model_testing.fast_key(1), TINY_SHAPE)
  key = model_testing.fast_key(0)
  v, intermediates = model_testing.compile_at_level_0(init_and_run, key, x)(key, x)
  p, out = v["params"], _by_path(intermediates)
  for b in _blocks(p):
    assert float(jnp.abs(p[b]["bn3"]["scale"]).max()) == 0.0
    assert float(jnp.abs(p[b]["bn2"]["scale"] - 1).max()) == 0.0
    assert float(jnp.abs(p[b]["conv3"]["kernel"]).min()) > 0.0
  assert _blocks(p) == ["stage1_block1", "stage1_block2", "stage2_block1"]
  for b in ("stage1_block1", "stage2_block1"):  # projection blocks
    np.testing.assert_array_equal(out[b], np.maximum(out[f"{b}/proj_bn"], 0.0))
  # An identity block passes its (post-ReLU) input through unchanged...
  np.testing.assert_array_equal(out["stage1_block2"], out["stage1_block1"])
  # ...though its branch computes something until the zero BN scale.
  assert float(np.abs(out["stage1_block2/bn2"]).max()) > 0.0


@pytest.fixture(scope="module")
def trained_v2():
  """v2 with zero_init_residual, basic blocks, one per stage, three stages, 8 filters in
  stage 1: its real init,
  then 8 Adam steps on one fixed batch (tests/model_testing.train_on_fixed_batch)."""
  model = ResNet(num_classes=10, version="v2", block="basic", width=8, stage_sizes=(1, 1, 1),
                 zero_init_residual=True)
  initial, losses, final = model_testing.train_on_fixed_batch(model, TINY_SHAPE[1:], batch=8)
  return model, initial, losses, final


def test_zero_init_residual_v2_blocks_start_as_their_shortcut(trained_v2):
  model, initial, _, _ = trained_v2
  p = initial.params
  for b in _blocks(p):  # the last conv starts at zero (no BN follows it in v2)
    assert float(np.abs(p[b]["conv2"]["kernel"]).max()) == 0.0
    assert float(np.abs(p[b]["conv1"]["kernel"]).min()) > 0.0
    assert float(np.abs(p[b]["bn2"]["scale"] - 1).max()) == 0.0
  v = {"params": p, "batch_stats": initial.batch_stats}
  x = jax.random.normal(model_testing.fast_key(2), TINY_SHAPE)
  _, state = model.apply(v, x, train=False, capture_intermediates=True,
                         mutable=["intermediates"])  # eager: no compile
  out = _by_path(state["intermediates"])
  for b in ("stage2_block1", "stage3_block1"):
    np.testing.assert_array_equal(out[b], out[f"{b}/proj_conv"])
  # stage1_block1 keeps the shape: the block is the identity on the stem's output.
  stem = max_pool(jax.nn.relu(out["bn1"]), 3, 2, pad=1)
  assert out["stage1_block1"].shape == (2, 8, 8, 8)
  np.testing.assert_array_equal(out["stage1_block1"], stem)
  assert float(np.abs(out["stage1_block1/conv1"]).max()) > 0.0


def test_train_steps_lower_the_loss(trained_v2):
  _, initial, losses, final = trained_v2
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.75 * losses[0], losses
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b),
                         (initial.params, initial.batch_stats), (final.params, final.batch_stats))
  assert all(jax.tree.leaves(changed))  # every parameter and BN statistic


# ------------------------------------------------------------------ converter, no torch


def _oihw(kernel) -> np.ndarray:
  return np.transpose(np.asarray(kernel), (3, 2, 0, 1))


def _torch_state_dict(variables) -> dict[str, np.ndarray]:
  """Our ResNet variables under torchvision/timm names and layouts (the inverse)."""
  params, stats = variables["params"], variables["batch_stats"]
  sd = {}

  def bn(theirs, p, s):
    sd.update({f"{theirs}.weight": np.asarray(p["scale"]), f"{theirs}.bias": np.asarray(p["bias"]),
               f"{theirs}.running_mean": np.asarray(s["mean"]),
               f"{theirs}.running_var": np.asarray(s["var"]),
               f"{theirs}.num_batches_tracked": np.asarray(0)})

  sd["conv1.weight"] = _oihw(params["conv1"]["kernel"])
  bn("bn1", params["bn1"], stats["bn1"])
  for name in _blocks(params):
    stage, block = name[5], int(name.split("block")[1]) - 1
    prefix, p = f"layer{stage}.{block}", params[name]
    for layer in p:
      if layer.startswith("conv"):
        sd[f"{prefix}.{layer}.weight"] = _oihw(p[layer]["kernel"])
      elif layer.startswith("bn"):
        bn(f"{prefix}.{layer}", p[layer], stats[name][layer])
    if "proj_conv" in p:
      sd[f"{prefix}.downsample.0.weight"] = _oihw(p["proj_conv"]["kernel"])
      bn(f"{prefix}.downsample.1", p["proj_bn"], stats[name]["proj_bn"])
    if "se" in p:
      for fc in ("fc1", "fc2"):
        sd[f"{prefix}.se.{fc}.weight"] = _oihw(p["se"][fc]["kernel"])
        sd[f"{prefix}.se.{fc}.bias"] = np.asarray(p["se"][fc]["bias"])
  sd["fc.weight"] = np.asarray(params["fc"]["kernel"]).T
  sd["fc.bias"] = np.asarray(params["fc"]["bias"])
  return sd


@pytest.mark.parametrize("name,block", [("resnet50", "bottleneck"), ("resnet18", "basic"),
                                        ("se_resnet50", "bottleneck")])
def test_converter_round_trip_and_strictness(name, block):
  model = create_model(name, num_classes=10, block=block, **TINY)
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda a: rng.normal(size=a.shape).astype(np.float32),
                           model_testing.abstract_init(model, TINY_SHAPE))
  sd = _torch_state_dict(variables)
  got = tc.convert(name, sd, model=model, input_shape=TINY_SHAPE)
  jax.tree.map(np.testing.assert_array_equal, got, variables)

  missing = dict(sd)
  del missing["layer2.0.downsample.1.running_var"]
  with pytest.raises(tc.ConversionError, match="layer2.0.downsample.1.running_var"):
    tc.convert(name, missing, model=model, input_shape=TINY_SHAPE)
  with pytest.raises(tc.ConversionError, match="head.fc.weight"):
    tc.convert(name, dict(sd, **{"head.fc.weight": np.zeros((10, 8))}), model=model)
  with pytest.raises(tc.ConversionError, match="do not match"):  # a block too many
    deeper = dict(sd, **{k.replace("layer4.0.", "layer4.1."): v for k, v in sd.items()
                         if k.startswith("layer4.0.") and "downsample" not in k})
    tc.convert(name, deeper, model=model, input_shape=TINY_SHAPE)
  # v1 and v2 models are refused (v1 would load the same shapes and compute otherwise).
  for version in ("v1", "v2"):
    with pytest.raises(tc.ConversionError, match="v1.5"):
      tc.convert(name, sd, model=create_model(name, num_classes=10, version=version))
  # SE checkpoints only into SE models, and the other way round.
  other = "resnet50" if name.startswith("se_") else "se_resnet50"
  with pytest.raises(tc.ConversionError, match="SE"):
    tc.convert(other, sd, model=create_model(other, num_classes=10, block=block, **TINY))


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("arg,model", [
    (None, "resnet50"), ("depth=18", "resnet18"), ("depth=152,version=v2", "resnet152_v2"),
    ("version=v1,zero_init", "resnet50_v1"), ("tiny", "resnet50")])
def test_resnet50_config(arg, model):
  c = resnet50_config.get_config(arg)
  config_lib.validate(c)
  assert c.model == model
  assert c.model_kwargs.to_dict().get("zero_init_residual", False) == ("zero_init" in (arg or ""))
  if arg == "tiny":
    assert c.dataset == "synthetic" and tuple(c.synthetic.shape) == (32, 32, 3)
    assert c.model_kwargs.width == 8 and c.num_epochs == 2
    assert optim.peak_learning_rate(c) == pytest.approx(0.1 * 32 / 256)
  else:
    assert (c.dataset, c.image_size, c.batch_size, c.num_epochs) == ("imagenet2012", 224,
                                                                      256, 90)
    assert (c.learning_rate, c.momentum, c.weight_decay) == (0.1, 0.9, 1e-4)
    assert tuple(c.decay_epochs) == (30, 60, 80) and c.decay_factor == 0.1
  # 0.1 per 256 images, scaled with the batch (and with a --config.batch_size override).
  assert optim.peak_learning_rate(resnet50_config.get_config("batch=1024")) == pytest.approx(0.4)
  c.batch_size = 512
  assert optim.peak_learning_rate(c) == pytest.approx(0.2)
  with pytest.raises(ValueError, match="depth"):
    resnet50_config.get_config("depth=20")
  with pytest.raises(ValueError, match="version"):
    resnet50_config.get_config("version=v3")


def test_se_resnet50_config():
  c = se_resnet50_config.get_config()
  config_lib.validate(c)
  assert (c.model, c.batch_size, c.learning_rate, c.num_epochs) == ("se_resnet50", 1024,
                                                                     0.6, 100)
  assert tuple(c.decay_epochs) == (30, 60, 90) and c.weight_decay == 1e-4
  assert se_resnet50_config.get_config("batch=256").learning_rate == pytest.approx(0.15)
  v1 = se_resnet50_config.get_config("depth=101,version=v1")
  assert v1.model == "se_resnet101" and v1.model_kwargs.version == "v1"
  tiny = se_resnet50_config.get_config("tiny")
  assert tiny.dataset == "synthetic" and tiny.model_kwargs.width == 8


# ------------------------------------------------------------------------------- torch


def _torchvision(name, **kw):
  torch, tv = tr.import_torchvision()
  torch.manual_seed(0)
  m = getattr(tv.models, name)(weights=None, **kw)
  tr.randomize_batch_norm(torch, m)
  return torch, m.eval()


def _timm(name):
  torch, _ = tr.import_torchvision()
  timm = pytest.importorskip("timm")
  torch.manual_seed(0)
  m = timm.create_model(name, pretrained=False)
  tr.randomize_batch_norm(torch, m)
  return torch, m.eval()


def _compare(torch, ref, name, converter_name=None, model=None):
  model = model or create_model(name, num_classes=1000)
  variables = tc.convert(converter_name or name, tr.state_dict_numpy(ref), model=model,
                         input_shape=TORCH_SHAPE)
  x = np.random.default_rng(0).normal(size=TORCH_SHAPE).astype(np.float32)
  expected = tr.torch_logits(torch, ref, x)
  assert np.std(expected) > 10 * np.std(ref.fc.bias.detach().numpy())  # not the bias alone
  apply = model_testing.compile_at_level_0(
      lambda v, x: model.apply(v, x, train=False), variables, x)
  err = tr.max_relative_error(apply(variables, x), expected)
  print(f"{name} vs {type(ref).__module__}.{type(ref).__name__} at 64x64: "
        f"max relative error {err:.2e}")
  return err


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_matches_torchvision(name):
  torch, ref = _torchvision(name)
  assert _compare(torch, ref, name) < 1e-4


def test_v1_matches_torchvision_with_the_stride_moved_to_the_1x1():
  # torchvision's Bottleneck with conv1 strided instead of conv2 is Caffe's ResNet v1.
  torch, ref = _torchvision("resnet50")
  for layer in (ref.layer2, ref.layer3, ref.layer4):
    layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
  model = create_model("resnet50_v1", num_classes=1000)
  variables = tc.convert("resnet50", tr.state_dict_numpy(ref))  # no model: not refused
  tc.check_tree(model, variables, TORCH_SHAPE)
  x = np.random.default_rng(0).normal(size=TORCH_SHAPE).astype(np.float32)
  got = model_testing.compile_at_level_0(
      lambda v, x: model.apply(v, x, train=False), variables, x)(variables, x)
  err = tr.max_relative_error(got, tr.torch_logits(torch, ref, x))
  print(f"resnet50_v1 vs stride-moved torchvision resnet50: max relative error {err:.2e}")
  assert err < 1e-4


@pytest.mark.parametrize("timm_name,name", [("seresnet50", "se_resnet50"),
                                            ("resnet18", "resnet18")])
def test_matches_timm(timm_name, name):
  torch, ref = _timm(timm_name)
  assert _compare(torch, ref, name) < 1e-4


def test_v2_count_equals_timm_resnetv2_50():
  _, ref = _timm("resnetv2_50")
  assert sum(p.numel() for p in ref.parameters()) == COUNTS["resnet50_v2"]


# ------------------------------------------------------- CIFAR plain nets (Fig. 6 left)

CIFAR_SHAPE = (1, 32, 32, 3)


@pytest.mark.parametrize("name", ["resnet20", "resnet56"])
def test_plain_cifar_net_has_the_layers_and_params_of_option_a(name):
  # Option A adds no parameters, so the plain net is the ResNet less its additions:
  # the same conv/BN/fc tree, shape for shape (plain-20: 269,722 as ResNet-20).
  model = create_model(name, num_classes=10, shortcut="plain")
  res = model_testing.abstract_init(create_model(name, num_classes=10), CIFAR_SHAPE)
  plain = model_testing.abstract_init(model, CIFAR_SHAPE)
  assert jax.tree.map(lambda a: a.shape, plain) == jax.tree.map(lambda a: a.shape, res)
  assert _count(plain["params"]) == {"resnet20": 269_722, "resnet56": 853_018}[name]
  assert not any("proj_conv" in v for v in plain["params"].values())
  x = jax.ShapeDtypeStruct(CIFAR_SHAPE, jnp.float32)
  assert jax.eval_shape(lambda v, x: model.apply(v, x, train=False), plain, x).shape == (1, 10)


def _block(shortcut, strides=1, features=4):
  conv = functools.partial(nn.Conv, use_bias=False)
  norm = functools.partial(nn.BatchNorm, use_running_average=True)
  return BasicBlock(features=features, conv=conv, norm=norm, strides=strides,
                    shortcut=shortcut)


@pytest.mark.parametrize("strides,features", [(1, 4), (2, 8)])
def test_plain_block_is_its_branch_without_the_shortcut(strides, features):
  # Eager, 4x4 maps: with the last BN's scale and bias at zero the branch outputs 0, so a
  # plain block gives relu(0) = 0 where an option-A block gives relu(shortcut(x)).
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 4))
  plain, res = _block("plain", strides, features), _block("A", strides, features)
  v = plain.init(jax.random.key(1), x)
  assert jax.tree.map(jnp.shape, v) == jax.tree.map(jnp.shape, res.init(jax.random.key(1), x))
  y_plain, y_res = plain.apply(v, x), res.apply(v, x)
  # Otherwise the two differ exactly by the shortcut, inside the final ReLU.
  assert not np.allclose(y_plain, y_res)
  v["params"]["bn2"] = jax.tree.map(jnp.zeros_like, v["params"]["bn2"])
  assert float(jnp.abs(plain.apply(v, x)).max()) == 0.0
  shortcut = x[:, ::strides, ::strides, :]
  shortcut = jnp.pad(shortcut, ((0, 0),) * 3 + ((0, features - 4),))
  np.testing.assert_allclose(res.apply(v, x), jax.nn.relu(shortcut), rtol=1e-6)


def test_plain_option_errors_name_the_valid_values():
  with pytest.raises(ValueError, match="shortcut 'none'; valid values: 'A', 'B', 'plain'"):
    create_model("resnet20", num_classes=10, shortcut="none")
  # A plain block whose last BN starts at zero would output 0 forever.
  with pytest.raises(ValueError, match="zero_init_residual True; valid values: False when "
                     "shortcut='plain'"):
    create_model("resnet56", num_classes=10, shortcut="plain", zero_init_residual=True)


def test_config_depth_and_plain_words():
  c = resnet20_config.get_config("depth=56,plain,tiny")
  assert c.model == "resnet56" and c.model_kwargs.shortcut == "plain"
  assert resnet20_config.get_config().model == "resnet20"
  assert "shortcut" not in resnet20_config.get_config("depth=110").model_kwargs
  with pytest.raises(config_lib.ConfigError, match="depth is one of 20, 32, 44, 56, 110"):
    resnet20_config.get_config("depth=50")
