"""MobileNet v1 and MobileNetV2: models/mobilenet.py.

Counts, trees and output shapes go through jax.eval_shape (tracing only). What executes
without torch: one inverted-residual block (the shortcut rule) and a few training steps
of MobileNet v1 at width 0.25 on 32x32 inputs. The torch tests compare logits with
torchvision's mobilenet_v2 and timm's mobilenetv2_100 / mobilenetv1_100 at 64x64.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models.mobilenet  # noqa: F401  (registers the models until models/__init__ does)
from configs import common
from models import create_model, torch_convert
from models.mobilenet import (MOBILENET_V1_BODY, ConvBN, InvertedResidual, MobileNetV1,
                              mobilenet_v2_plan)
from tests.model_testing import abstract_init, count_params
from tests.torch_reference import (import_torchvision, max_relative_error,
                                   randomize_batch_norm, state_dict_numpy, torch_logits)
from training import optim
from training import steps as steps_lib

IMAGENET = (1, 224, 224, 3)
SMALL = (2, 64, 64, 3)

# ------------------------------------------------------------------ parameter counts


@pytest.mark.parametrize("name,expected", [
    ("mobilenet_v1", 4_231_976),  # REFERENCE.md; timm mobilenetv1_100, Keras MobileNet
    ("mobilenet_v1_075", 2_585_560),  # timm's builder at channel_multiplier 0.75
    ("mobilenet_v1_050", 1_331_592),
    ("mobilenet_v1_025", 470_072),
    ("mobilenet_v2", 3_504_872),  # REFERENCE.md; torchvision and timm mobilenetv2_100
    ("mobilenet_v2_075", 2_636_424),  # torchvision width_mult=0.75 = timm mobilenetv2_075
    ("mobilenet_v2_050", 1_968_680),
    ("mobilenet_v2_140", 6_108_776),
])
def test_param_counts(name, expected):
  v = abstract_init(create_model(name, num_classes=1000), IMAGENET)
  assert count_params(v["params"]) == expected
  # Every conv has a BatchNorm: two statistics per output channel.
  bn_channels = sum(a.shape[-1] for p, a in jax.tree_util.tree_leaves_with_path(v["params"])
                    if jax.tree_util.keystr(p).endswith("['bn']['scale']"))
  assert count_params(v["batch_stats"]) == 2 * bn_channels


def test_v1_counts_by_hand():
  # Table 1 with alpha: stem, 13 x (dw 3x3 + BN, pw 1x1 + BN), fc with bias.
  def count(alpha, classes=1000):
    ch = lambda c: max(int(c * alpha), 8)
    c_in, total = ch(32), 27 * ch(32) + 2 * ch(32)
    for c, _ in MOBILENET_V1_BODY:
      total += 9 * c_in + 2 * c_in + c_in * ch(c) + 2 * ch(c)
      c_in = ch(c)
    return total + c_in * classes + classes
  for name, alpha in (("mobilenet_v1", 1.0), ("mobilenet_v1_025", 0.25)):
    v = abstract_init(create_model(name, num_classes=10), (1, 32, 32, 3))
    assert count_params(v["params"]) == count(alpha, 10)


# ------------------------------------------------------------------ structure


def _depthwise_kernels(params) -> list[tuple[int, ...]]:
  return [a.shape for p, a in jax.tree_util.tree_leaves_with_path(params)
          if "['depthwise']['conv']['kernel']" in jax.tree_util.keystr(p)]


def test_depthwise_kernels_are_3x3_per_channel():
  v1 = abstract_init(create_model("mobilenet_v1", num_classes=10), (1, 32, 32, 3))["params"]
  assert len(_depthwise_kernels(v1)) == 13
  shapes = [v1[f"dsconv{i}"]["depthwise"]["conv"]["kernel"].shape for i in range(1, 14)]
  assert shapes == [(3, 3, 1, c) for c in (32, 64, 128, 128, 256, 256, 512, 512, 512, 512,
                                           512, 512, 1024)]  # each block's input width
  assert v1["dsconv1"]["pointwise"]["conv"]["kernel"].shape == (1, 1, 32, 64)
  v2 = abstract_init(create_model("mobilenet_v2", num_classes=10), (1, 32, 32, 3))["params"]
  shapes = _depthwise_kernels(v2)
  assert len(shapes) == 17 and all(s[:3] == (3, 3, 1) for s in shapes)
  # Expansion 6: the depthwise conv runs on 6x the block's input width.
  assert v2["bottleneck2_1"]["depthwise"]["conv"]["kernel"].shape == (3, 3, 1, 96)
  assert v2["bottleneck2_1"]["expand"]["conv"]["kernel"].shape == (1, 1, 16, 96)
  assert v2["bottleneck2_1"]["project"]["conv"]["kernel"].shape == (1, 1, 96, 24)
  assert "expand" not in v2["bottleneck1_1"]  # t = 1: no expansion conv
  assert v2["conv2"]["conv"]["kernel"].shape == (1, 1, 320, 1280)
  assert "bias" not in v2["conv1"]["conv"] and set(v2["fc"]) == {"kernel", "bias"}


def test_v2_plan_residuals_and_widths():
  stem, blocks, last = mobilenet_v2_plan(1.0)
  assert (stem, last, len(blocks)) == (32, 1280, 17)
  assert [b.out_channels for b in blocks] == [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96,
                                              96, 96, 160, 160, 160, 320]
  assert [b.strides for b in blocks].count(2) == 4
  for b in blocks:
    assert b.residual == (b.strides == 1 and b.in_channels == b.out_channels)
  assert [b.name for b in blocks if b.residual] == [
      "bottleneck2_2", "bottleneck3_2", "bottleneck3_3", "bottleneck4_2", "bottleneck4_3",
      "bottleneck4_4", "bottleneck5_2", "bottleneck5_3", "bottleneck6_2", "bottleneck6_3"]
  # Width multiplier: make_divisible(alpha * c, 8); the 1280 grows only for alpha > 1.
  assert mobilenet_v2_plan(0.5)[0] == 16 and mobilenet_v2_plan(0.5)[2] == 1280
  assert mobilenet_v2_plan(1.4)[0] == 48 and mobilenet_v2_plan(1.4)[2] == 1792
  assert [b.out_channels for b in mobilenet_v2_plan(0.35)[1]][:2] == [8, 8]


@pytest.mark.parametrize("c_in,c_out,strides,residual", [
    (8, 8, 1, True), (8, 16, 1, False), (8, 8, 2, False)])
def test_inverted_residual_shortcut(c_in, c_out, strides, residual):
  """With the projection's BN scale and offset at 0 the branch outputs 0, so the block
  returns its input where it has a shortcut and zeros where it has none."""
  conv, norm = models.mobilenet.layer_factories(jnp.float32, False, 1e-5)
  block = InvertedResidual(c_out, 6, conv, norm, strides)
  x = jax.random.normal(jax.random.key(0), (1, 4, 4, c_in))

  @jax.jit
  def run(x):
    v = block.init(jax.random.key(1), x)
    v["params"]["project"]["bn"] = jax.tree.map(jnp.zeros_like, v["params"]["project"]["bn"])
    return block.apply(v, x)

  y = run(x)
  assert y.shape == (1, 4 // strides, 4 // strides, c_out)
  np.testing.assert_array_equal(y, x if residual else jnp.zeros_like(y))


def test_conv_bn_pads_symmetrically():
  # PyTorch padding: a 3x3/2 conv on 4x4 reads rows -1..3 (pad 1 each side), so the
  # first output sees row 0 and 1 only; TF 'SAME' would read rows 0..4 instead.
  conv, norm = models.mobilenet.layer_factories(jnp.float32, False, 1e-5)
  layer = ConvBN(1, 3, conv, norm, strides=2)
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  v = jax.eval_shape(lambda x: layer.init(jax.random.key(0), x), x)
  v = jax.tree.map(lambda a: jnp.zeros(a.shape), v)
  v["params"]["conv"]["kernel"] = jnp.ones((3, 3, 1, 1))
  v["params"]["bn"]["scale"] = v["batch_stats"]["bn"]["var"] = jnp.ones((1,))
  y = jax.jit(layer.apply)(v, x)[0, :, :, 0] * math.sqrt(1 + 1e-5)
  np.testing.assert_allclose(y, [[0 + 1 + 4 + 5, 1 + 2 + 3 + 5 + 6 + 7],
                                 [4 + 5 + 8 + 9 + 12 + 13, 5 + 6 + 7 + 9 + 10 + 11 + 13 + 14 + 15]],
                             rtol=1e-5)


# ------------------------------------------------------------------ outputs


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_outputs_train_eval_and_bfloat16(name):
  model = create_model(name, num_classes=7, dtype=jnp.bfloat16)
  v = abstract_init(model, (2, 96, 96, 3))
  assert {x.dtype for x in jax.tree_util.tree_leaves(v)} == {jnp.dtype(jnp.float32)}
  x = jax.ShapeDtypeStruct((2, 96, 96, 3), jnp.float32)
  y = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v, x)
  assert y.shape == (2, 7) and y.dtype == jnp.bfloat16
  y, upd = jax.eval_shape(lambda v, x: model.apply(
      v, x, train=True, rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"]), v, x)
  assert y.shape == (2, 7) and set(upd) == {"batch_stats"}


def test_paper_activation_option():
  assert create_model("mobilenet_v1", num_classes=10).activation == "relu6"
  model = create_model("mobilenet_v1", num_classes=10, activation="relu")
  v = abstract_init(model, (1, 32, 32, 3))  # same tree: an activation has no parameters
  assert count_params(v["params"]) == count_params(
      abstract_init(create_model("mobilenet_v1", num_classes=10), (1, 32, 32, 3))["params"])
  assert create_model("mobilenet_v1", num_classes=10).dropout == 0.001
  assert create_model("mobilenet_v2", num_classes=10).dropout == 0.2


def test_conv_mobilenet_option_is_table_4s_full_convolution_net():
  """separable=False: each block one 3x3 conv (block's input -> output width, its stride)
  + BN; Table 4: 29.3M parameters and 4866M multiply-adds against 4.2M and 569M."""
  import analysis
  sep = create_model("mobilenet_v1", num_classes=1000)
  full = create_model("mobilenet_v1", num_classes=1000, separable=False)
  assert sep.separable is True
  assert count_params(abstract_init(full, IMAGENET)["params"]) == 29_294_088
  sep_macs, full_macs = analysis.count_macs(sep, IMAGENET), analysis.count_macs(full, IMAGENET)
  assert round(sep_macs / 1e6) == 569 and round(full_macs / 1e6) == 4867
  assert 8.5 < full_macs / sep_macs < 8.6  # the paper's 4866 / 569 = 8.55
  v = abstract_init(create_model("mobilenet_v1_025", num_classes=10, separable=False),
                    (1, 32, 32, 3))
  assert _depthwise_kernels(v["params"]) == []
  c_in = 8
  for i, (c, _) in enumerate(MOBILENET_V1_BODY, start=1):
    block = v["params"][f"dsconv{i}"]
    assert set(block) == {"full"} and set(block["full"]) == {"conv", "bn"}
    assert block["full"]["conv"]["kernel"].shape == (3, 3, c_in, max(c // 4, 8))
    c_in = max(c // 4, 8)
  # Same stem, strides and classifier: the same output shape at any input size.
  y = jax.eval_shape(lambda v, x: create_model("mobilenet_v1_025", num_classes=10,
                                               separable=False).apply(v, x, train=False),
                     v, jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32))
  assert y.shape == (2, 10)


def test_linear_bottleneck_option_adds_relu6_after_the_projection():
  model = create_model("mobilenet_v2", num_classes=10, linear_bottleneck=False)
  assert create_model("mobilenet_v2", num_classes=10).linear_bottleneck is True
  v = abstract_init(model, (1, 32, 32, 3))  # an activation has no parameters
  ref = abstract_init(create_model("mobilenet_v2", num_classes=10), (1, 32, 32, 3))
  assert jax.tree.structure(v) == jax.tree.structure(ref)
  assert count_params(v["params"]) == count_params(ref["params"]) == 2_236_682
  # One block without a shortcut: the projection's output is clipped to [0, 6] only
  # when it is not linear.
  conv, norm = models.mobilenet.layer_factories(jnp.float32, False, 1e-5)
  x = 3 * jax.random.normal(jax.random.key(0), (2, 4, 4, 8))
  outs = {}
  for linear in (True, False):
    block = InvertedResidual(16, 6, conv, norm, linear=linear)
    variables = block.init(jax.random.key(1), x)
    bn = variables["params"]["project"]["bn"]  # a wide output: beyond 0 and 6 both
    variables["params"]["project"]["bn"] = {**bn, "scale": 20 * bn["scale"]}
    outs[linear] = np.asarray(jax.jit(block.apply)(variables, x))
  assert outs[True].min() < 0 and outs[True].max() > 6
  assert outs[False].min() >= 0 and outs[False].max() <= 6
  np.testing.assert_allclose(outs[False], np.clip(outs[True], 0, 6), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,cls,field", [
    ("mobilenet_v1", "MobileNetV1", "separable"),
    ("mobilenet_v2", "MobileNetV2", "linear_bottleneck")])
def test_invalid_on_off_options_name_the_valid_values(name, cls, field):
  # Through the registry the field's annotation is checked first; the module itself
  # checks when it is constructed directly.
  with pytest.raises(models.ModelOptionError,
                     match=f"{field}='yes' is a str, but the field takes a bool"):
    create_model(name, num_classes=10, **{field: "yes"})
  with pytest.raises(models.ModelOptionError, match=f"{field} 'yes'; valid values: True, "
                     "False"):
    getattr(models.mobilenet, cls)(num_classes=10, **{field: "yes"})


# ------------------------------------------------------------------ training


def test_mobilenet_v1_trains_on_a_fixed_batch():
  """Four SGD steps of MobileNet v1 (alpha 0.25) on one batch: the loss falls, every
  kernel (depthwise ones included) moves, and BN statistics are updated."""
  model = create_model("mobilenet_v1", num_classes=10, width_multiplier=0.25, dropout=0.0)
  c = common.base()
  c.optimizer, c.learning_rate, c.schedule, c.momentum = "sgd", 0.05, "constant", 0.9
  tx = optim.create_optimizer(c, optim.create_schedule(c, 1))
  shapes = abstract_init(model, (8, 32, 32, 3))
  rng = np.random.default_rng(0)

  def fill(path, a):  # He-scaled kernels, BN at its init: real values without model.init
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):
      return rng.normal(0, math.sqrt(2.0 / math.prod(a.shape[:-1])), a.shape)
    return np.ones(a.shape) if ("'scale'" in name or "'var'" in name) else np.zeros(a.shape)

  v = jax.tree_util.tree_map_with_path(lambda p, a: jnp.asarray(fill(p, a), jnp.float32),
                                       shapes)
  state = steps_lib.TrainState(step=jnp.zeros((), jnp.int32), params=v["params"],
                               batch_stats=v["batch_stats"], opt_state=tx.init(v["params"]))
  cfg = steps_lib.StepConfig.normalizing((0.5,) * 3, (0.25,) * 3)
  step = jax.jit(steps_lib.make_train_step(model, tx, cfg, jax.random.key(1)))
  images = jnp.asarray(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 8).astype(np.int32))
  losses = []
  for _ in range(4):
    state, acc = step(state, steps_lib.zero_metrics(steps_lib.TRAIN_METRICS), images, labels)
    losses.append(float(acc["loss"] / acc["count"]))
  assert all(np.isfinite(losses)) and losses[-1] < losses[0]
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), state.params, v["params"])
  assert all(jax.tree.leaves(moved))
  assert not np.allclose(state.batch_stats["dsconv13"]["pointwise"]["bn"]["mean"], 0.0)


# ------------------------------------------------------------------ converters


def test_converters_reject_other_models_without_torch():
  with pytest.raises(torch_convert.ConversionError, match="relu6"):
    torch_convert.convert("mobilenet_v1", {},
                          model=create_model("mobilenet_v1", num_classes=10, activation="relu"))
  with pytest.raises(torch_convert.ConversionError, match="eps"):
    torch_convert.convert("mobilenet_v2", {},
                          model=create_model("mobilenet_v2", num_classes=10, bn_epsilon=1e-3))
  with pytest.raises(torch_convert.ConversionError, match="separable=True"):
    torch_convert.convert("mobilenet_v1", {},
                          model=create_model("mobilenet_v1", num_classes=10, separable=False))
  with pytest.raises(torch_convert.ConversionError, match="linear_bottleneck=True"):
    torch_convert.convert("mobilenet_v2", {}, model=create_model(
        "mobilenet_v2", num_classes=10, linear_bottleneck=False))
  with pytest.raises(torch_convert.ConversionError, match="cannot tell"):
    torch_convert.convert("mobilenet_v2", {"fc.weight": np.zeros((10, 4))})
  for name in ("mobilenet_v1", "mobilenet_v1_025", "mobilenet_v2", "mobilenet_v2_140"):
    assert name in torch_convert.list_convertible()


def _compare(torch, ref, name: str, width: float | None = None) -> float:
  randomize_batch_norm(torch, ref)
  ref.eval()
  kwargs = {} if width is None else {"width_multiplier": width}
  model = create_model(name, num_classes=1000, **kwargs)
  variables = torch_convert.convert(name, state_dict_numpy(ref), model=model,
                                    input_shape=SMALL)
  x = np.random.default_rng(0).normal(size=SMALL).astype(np.float32)
  expected = torch_logits(torch, ref, x)
  assert not np.allclose(expected[0], expected[1])  # the image matters
  ours = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  return max_relative_error(ours, expected)


def test_torchvision_mobilenet_v2_equivalence():
  torch, tv = import_torchvision()
  torch.manual_seed(0)
  err = _compare(torch, tv.models.mobilenet_v2(weights=None), "mobilenet_v2")
  print(f"mobilenet_v2 vs torchvision at 64x64: max relative error {err:.2e}")
  assert err < 1e-4


@pytest.mark.parametrize("timm_name,name", [("mobilenetv2_100", "mobilenet_v2"),
                                            ("mobilenetv2_050", "mobilenet_v2_050"),
                                            ("mobilenetv1_100", "mobilenet_v1")])
def test_timm_equivalence(timm_name, name):
  torch, _ = import_torchvision()
  timm = pytest.importorskip("timm")
  torch.manual_seed(0)
  err = _compare(torch, timm.create_model(timm_name, pretrained=False), name)
  print(f"{name} vs timm {timm_name} at 64x64: max relative error {err:.2e}")
  assert err < 1e-4


# ------------------------------------------------------------------ configs


@pytest.mark.parametrize("config_name", ["mobilenet_v1", "mobilenet_v2"])
def test_configs(config_name):
  from training import config as config_lib
  c = config_lib.load_config(f"configs/{config_name}.py")
  config_lib.validate(c)
  assert c.model == config_name and c.dataset == "imagenet2012" and c.image_size == 224
  assert c.optimizer == "sgd" and c.weight_decay == pytest.approx(4e-5)
  if config_name == "mobilenet_v2":  # torchvision: lr 0.045 x 0.98 per epoch
    schedule = optim.create_schedule(c, 10)
    assert float(schedule(0)) == pytest.approx(0.045)
    assert float(schedule(10 * 100 + 1)) == pytest.approx(0.045 * 0.98**100, rel=1e-4)
  wide = config_lib.load_config(f"configs/{config_name}.py:width=0.5")
  assert wide.model_kwargs.width_multiplier == 0.5
  tiny = config_lib.load_config(f"configs/{config_name}.py:tiny")
  config_lib.validate(tiny)
  assert tiny.dataset == "synthetic" and tiny.num_epochs == 2
  assert tuple(tiny.synthetic.shape) == (32, 32, 3)
  assert tiny.model_kwargs.width_multiplier == 0.25
  assert isinstance(create_model(tiny.model, num_classes=10, **tiny.model_kwargs.to_dict()),
                    (MobileNetV1, models.mobilenet.MobileNetV2))
  fm = config_lib.load_config(f"configs/{config_name}.py:fashion_mnist,width=0.25,epochs=3")
  config_lib.validate(fm)
  assert fm.dataset == common.shared_npz("fashion_mnist") and fm.pad == 2
  assert fm.image_size is None and not fm.augment.inception_crop
  assert (fm.num_epochs, fm.schedule, fm.decay_epochs, fm.warmup_epochs) == (3, "cosine", (),
                                                                              0.0)
  with pytest.raises(ValueError, match="give one of them"):
    config_lib.load_config(f"configs/{config_name}.py:paper,fashion_mnist")
