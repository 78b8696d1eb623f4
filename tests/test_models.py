"""Tests for models/: registry, layers, LeNet-1989 and CIFAR ResNets.

Parameter counts and shapes go through jax.eval_shape (tracing only, no compile);
anything executed uses tiny inputs or widths so the file runs in seconds on a CPU.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from models import create_model
from models.layers import get_activation
from models.lenet import H2_INPUT_MAPS, lecun_uniform_init
from models.resnet import shortcut_a

LENET_SHAPE = (2, 16, 16, 1)
CIFAR_SHAPE = (2, 32, 32, 3)
TINY_CIFAR_SHAPE = (2, 8, 8, 3)  # for tests that execute: compile time grows with shapes


def _count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree))


def _abstract_init(model, shape, dtype=jnp.float32):
  x = jax.ShapeDtypeStruct(shape, dtype)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def _key(seed: int) -> jax.Array:
  # The 'unsafe_rbg' PRNG initialises several times faster than threefry on CPU.
  return jax.random.key(seed, impl="unsafe_rbg")


def _init(model, shape, seed=0):
  x = jax.random.normal(_key(seed + 1), shape)
  return model.init(_key(seed), x, train=False), x


def _random_variables(model, shape, seed=0):
  """Variables with the model's tree and shapes but numpy-random values: skips the
  slow init for tests that only need some weights. BN stats start as Flax's (0, 1)."""
  rng = np.random.default_rng(seed)
  abstract = _abstract_init(model, shape)

  def fill(path, a):
    name = jax.tree_util.keystr(path)
    if "batch_stats" in name:
      return jnp.full(a.shape, 1.0 if "var" in name else 0.0, a.dtype)
    return jnp.asarray(rng.normal(0.0, 0.2, a.shape), a.dtype)

  variables = jax.tree_util.tree_map_with_path(fill, abstract)
  return variables, jnp.asarray(rng.normal(size=shape), jnp.float32)


# ----------------------------------------------------------------------------- registry


def test_registry_lists_all_variants():
  assert set(models.list_models()) >= {
      "lenet1989", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}


def test_unknown_model_lists_available():
  with pytest.raises(models.UnknownModelError) as e:
    create_model("resnet21", num_classes=10)
  msg = str(e.value)
  assert "resnet21" in msg
  assert "lenet1989" in msg and "resnet110" in msg


def test_unknown_override_names_field():
  with pytest.raises(TypeError, match="no_such_field"):
    create_model("lenet1989", num_classes=10, no_such_field=1)
  with pytest.raises(TypeError, match="no_such_field"):
    create_model("resnet20", num_classes=10, no_such_field=1)


# Bad options fail when the model is built: (model, overrides, what the message names,
# the valid values it lists). The three examples, then a choice field (or, where
# a family has none, another option) of every family.
BAD_OPTIONS = [
    ("resnet50", dict(version="v3"), "ResNet version 'v3'", "'v1', 'v1.5', 'v2'"),
    ("convnext_t", dict(depths=(3, 3, 9)), "ConvNeXt dims (96, 192, 384, 768)",
     "3 entries, one per entry of depths (3, 3, 9)"),
    ("resnet50", dict(width=0), "ResNet width 0", "width > 0"),
    ("resnet20", dict(shortcut="C"), "CifarResNet shortcut 'C'", "'A', 'B'"),
    ("lenet1989", dict(activation="swish"), "LeNet1989 activation 'swish'",
     "'relu', 'relu6', 'scaled_tanh', 'sigmoid', 'silu', 'tanh'"),
    ("lenet5", dict(variant="2000"), "LeNet5 variant '2000'", "'1998', 'modern'"),
    ("lecun1989_net5", dict(h1="conv"), "LeCun1989Net h1 'conv'",
     "None, 'full', 'local', 'shared'"),
    ("alexnet", dict(weight_init="he"), "AlexNet weight_init 'he'", "'paper', 'torchvision'"),
    ("vgg11", dict(weight_init="he"), "VGG weight_init 'he'", "'torchvision', 'glorot'"),
    ("googlenet", dict(aux_pool="max"), "GoogLeNet aux_pool 'max'", "'adaptive', '5x5_s3'"),
    ("bn_inception", dict(dropout=1.5), "BNInception dropout 1.5", "0 <= dropout <= 1"),
    ("densenet121", dict(stem="deep"), "DenseNet stem 'deep'", "'imagenet', 'cifar'"),
    ("mobilenet_v1", dict(activation="swish"), "MobileNetV1 activation 'swish'",
     "'relu', 'relu6'"),
    ("mobilenet_v2", dict(width_multiplier=0.0), "MobileNetV2 width_multiplier 0.0",
     "width_multiplier > 0"),
    ("convnext_t", dict(drop_path_rate=-0.1), "ConvNeXt drop_path_rate -0.1",
     "0 <= drop_path_rate < 1"),
    ("roadmap_resnet50", dict(norm="instance"), "ModernizedResNet norm 'instance'",
     "'batch', 'layer', 'group'"),
    ("vit_ti16", dict(pool="max"), "VisionTransformer pool 'max'", "'token', 'gap'"),
    ("vit_ti16", dict(num_heads=5), "VisionTransformer num_heads 5",
     "divisors of hidden_size 192"),
    ("allcnn_c", dict(downsampling="avg"), "AllCNN downsampling 'avg'", "'conv', 'maxpool'"),
]


@pytest.mark.parametrize("name,overrides,names,valid", BAD_OPTIONS,
                         ids=[f"{n}-{','.join(o)}" for n, o, _, _ in BAD_OPTIONS])
def test_bad_option_is_one_line_naming_the_valid_values(name, overrides, names, valid):
  with pytest.raises(models.ModelOptionError) as e:
    create_model(name, num_classes=10, **overrides)  # built, not traced: fails here
  msg = str(e.value)
  assert isinstance(e.value, ValueError)
  assert "\n" not in msg
  assert msg.startswith(f"model {name!r}: ") and names in msg
  assert valid in msg.partition("; valid values: ")[2], msg


@pytest.mark.parametrize("name,overrides,match", [
    ("airbench94", dict(head_unit_std="false"),
     "head_unit_std='false' is a str, but the field takes a bool"),
    ("resnet20", dict(width=1.5), "width=1.5 is a float, but the field takes an int"),
    ("airbench94", dict(widths="64"), "widths='64' is a str, but the field takes a tuple"),
])
def test_a_value_of_the_wrong_type_is_one_line(name, overrides, match):
  with pytest.raises(models.ModelOptionError, match=f"^model {name!r}: {match}"):
    create_model(name, num_classes=10, **overrides)


def test_values_of_the_declared_types_pass():
  # An int where a float is declared, a list where a tuple is.
  model = create_model("airbench94", num_classes=10, scaling_factor=1, widths=[4, 8, 8])
  assert model.scaling_factor == 1 and tuple(model.widths) == (4, 8, 8)


def test_bad_num_classes_and_direct_construction():
  with pytest.raises(models.ModelOptionError, match="num_classes 0; valid values: num_classes > 0"):
    create_model("resnet20", num_classes=0)
  from models.resnet import ResNet  # pylint: disable=g-import-not-at-top
  with pytest.raises(models.ModelOptionError, match="^unknown ResNet block 'wide'"):
    ResNet(block="wide")  # the module itself checks, without the registry


# ------------------------------------------------------------------------------- layers


def test_scaled_tanh():
  x = jnp.linspace(-4.0, 4.0, 17)
  np.testing.assert_allclose(get_activation("scaled_tanh")(x),
                             1.7159 * np.tanh(2.0 * np.asarray(x) / 3.0), rtol=1e-6)
  # The constants are chosen so that f(1) is (almost exactly) 1.
  assert abs(float(get_activation("scaled_tanh")(jnp.float32(1.0))) - 1.0) < 1e-3


@pytest.mark.parametrize("name,expected", [
    ("tanh", np.tanh), ("relu", lambda x: np.maximum(x, 0)),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))), ("identity", lambda x: x)])
def test_activations(name, expected):
  x = np.linspace(-3.0, 3.0, 13, dtype=np.float32)
  np.testing.assert_allclose(get_activation(name)(x), expected(x), rtol=1e-5, atol=1e-6)


def test_gelu_is_exact_erf_form():
  x = jnp.linspace(-3.0, 3.0, 13)
  np.testing.assert_allclose(get_activation("gelu")(x),
                             jax.nn.gelu(x, approximate=False), rtol=1e-6)


def test_unknown_activation():
  with pytest.raises(ValueError, match="valid values:.*scaled_tanh"):
    get_activation("swishy")


# ------------------------------------------------------------------------------ LeNet


def test_lenet1989_param_counts():
  v = _abstract_init(create_model("lenet1989", num_classes=10), LENET_SHAPE)
  assert set(v) == {"params"}  # no BatchNorm, no other state
  per_layer = {k: _count(p) for k, p in v["params"].items()}
  assert per_layer == {"H1": 1068, "H2": 2592, "H3": 5790, "out": 310}
  assert _count(v["params"]) == 9760


def test_lenet1989_param_shapes():
  p = _abstract_init(create_model("lenet1989", num_classes=10), LENET_SHAPE)["params"]
  shapes = jax.tree_util.tree_map(lambda a: a.shape, p)
  assert shapes == {
      "H1": {"kernel": (5, 5, 1, 12), "bias": (8, 8, 12)},   # untied biases
      "H2": {"kernel": (5, 5, 8, 12), "bias": (4, 4, 12)},   # 8 inputs per map
      "H3": {"kernel": (192, 30), "bias": (30,)},
      "out": {"kernel": (30, 10), "bias": (10,)},
  }


def test_lenet1989_forward():
  model = create_model("lenet1989", num_classes=10)
  v, x = _init(model, LENET_SHAPE)
  y = model.apply(v, x, train=False)
  assert y.shape == (2, 10)
  assert np.all(np.abs(np.asarray(y)) < 1.0)  # tanh outputs by default
  raw = create_model("lenet1989", num_classes=10, output_activation=None)
  np.testing.assert_allclose(raw.apply(v, x, train=False), np.arctanh(y), rtol=1e-3,
                             atol=1e-4)


def test_lenet1989_bfloat16_keeps_float32_params():
  model = create_model("lenet1989", num_classes=10, dtype=jnp.bfloat16)
  v = _abstract_init(model, LENET_SHAPE)
  assert {x.dtype for x in jax.tree_util.tree_leaves(v)} == {jnp.dtype(jnp.float32)}
  x = jax.ShapeDtypeStruct((5, 16, 16, 1), jnp.float32)
  y = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v, x)
  assert y.shape == (5, 10) and y.dtype == jnp.bfloat16


def test_lenet1989_h2_partial_connectivity():
  model = create_model("lenet1989", num_classes=10)
  v, _ = _init(model, LENET_SHAPE)
  h1 = jax.random.uniform(_key(3), (1, 8, 8, 12), minval=-1, maxval=1)
  h2 = lambda h: model.apply(v, h, method=lambda m, h: m.H2(h))  # pre-activation
  jac = jax.jacobian(h2)(h1)  # (1, 4, 4, 12, 1, 8, 8, 12)
  depends = np.asarray(jnp.abs(jac).sum(axis=(0, 1, 2, 4, 5, 6)) > 0)  # [h2_map, h1_map]
  expected = np.zeros((12, 12), bool)
  for h2_map in range(12):
    # Written out independently of H2_INPUT_MAPS: blocks read 0-7, 4-11, {0-3, 8-11}.
    inputs = [range(0, 8), range(4, 12), [0, 1, 2, 3, 8, 9, 10, 11]][h2_map // 4]
    expected[h2_map, list(inputs)] = True
  np.testing.assert_array_equal(depends, expected)
  assert depends.sum(axis=1).tolist() == [8] * 12
  assert [set(m) for m in H2_INPUT_MAPS] == [
      set(np.flatnonzero(expected[4 * g])) for g in range(3)]


def test_lenet1989_pads_with_background():
  # With zero biases, a blank (-1) image gives the same H1 pre-activation at the border
  # as in the interior only if the padding is background (-1) too.
  model = create_model("lenet1989", num_classes=10)
  v, _ = _init(model, LENET_SHAPE)
  v["params"]["H1"]["bias"] = jnp.zeros_like(v["params"]["H1"]["bias"])
  blank = -jnp.ones(LENET_SHAPE)
  h1 = model.apply(v, blank, method=lambda m, x: m.H1(x))
  np.testing.assert_allclose(h1, jnp.broadcast_to(h1[:, 3:4, 3:4], h1.shape), atol=1e-6)
  other = create_model("lenet1989", num_classes=10, pad_value=0.0)
  h1_zero_pad = other.apply(v, blank, method=lambda m, x: m.H1(x))
  assert not np.allclose(h1_zero_pad[0, 0, 0], h1_zero_pad[0, 3, 3])


@pytest.mark.parametrize("mode,scale", [("fan_in", lambda f: f),
                                        ("sqrt_fan_in", math.sqrt)])
def test_lecun_uniform_init_limits(mode, scale):
  w = lecun_uniform_init(mode)(_key(0), (5, 5, 8, 12))  # fan-in 200
  limit = 2.4 / scale(200)
  assert float(jnp.max(jnp.abs(w))) <= limit
  assert float(jnp.max(jnp.abs(w))) > 0.9 * limit


def test_lenet1989_weight_init_option():
  small = create_model("lenet1989", num_classes=10, weight_init="fan_in")
  p = _init(small, LENET_SHAPE)[0]["params"]
  assert float(jnp.max(jnp.abs(p["H3"]["kernel"]))) <= 2.4 / 192
  assert float(jnp.max(jnp.abs(p["H1"]["bias"]))) == 0.0
  with pytest.raises(ValueError, match="weight_init"):
    _abstract_init(create_model("lenet1989", num_classes=10, weight_init="x"),
                   LENET_SHAPE)


def test_lenet1989_h3_dropout():
  model = create_model("lenet1989", num_classes=10, h3_dropout=0.5)
  v, x = _init(model, LENET_SHAPE)
  a = model.apply(v, x, train=True, rngs={"dropout": _key(7)})
  b = model.apply(v, x, train=True, rngs={"dropout": _key(8)})
  c = model.apply(v, x, train=False)
  assert not np.allclose(a, b)
  np.testing.assert_allclose(c, model.apply(v, x, train=False))
  assert not np.allclose(a, c)


# ----------------------------------------------------------------------------- ResNet

CIFAR_COUNTS = {"resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586,
                "resnet56": 853_018, "resnet110": 1_727_962}
PAPER_MILLIONS = {"resnet20": "0.27", "resnet32": "0.46", "resnet44": "0.66",
                  "resnet56": "0.85", "resnet110": "1.7"}


@pytest.mark.parametrize("name", sorted(CIFAR_COUNTS))
def test_cifar_resnet_param_counts(name):
  v = _abstract_init(create_model(name, num_classes=10), CIFAR_SHAPE)
  n = _count(v["params"])
  assert n == CIFAR_COUNTS[name]
  digits = len(PAPER_MILLIONS[name].split(".")[1])
  assert f"{n / 1e6:.{digits}f}" == PAPER_MILLIONS[name]  # REFERENCE.md's rounding
  # Two BN statistics per BN channel: stem + two per block, 16/32/64 channels.
  blocks = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}
  assert _count(v["batch_stats"]) == 2 * (16 + 2 * blocks[name] * (16 + 32 + 64))


def test_cifar_resnet_shortcut_options():
  a = _abstract_init(create_model("resnet20", num_classes=10), CIFAR_SHAPE)["params"]
  b = _abstract_init(create_model("resnet20", num_classes=10, shortcut="B"),
                     CIFAR_SHAPE)["params"]
  assert not any("proj_conv" in blk for blk in a.values())
  with_proj = sorted(k for k, blk in b.items() if "proj_conv" in blk)
  assert with_proj == ["stage2_block1", "stage3_block1"]
  assert b["stage2_block1"]["proj_conv"]["kernel"].shape == (1, 1, 16, 32)
  assert _count(b) - _count(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
  with pytest.raises(ValueError, match="shortcut"):
    _abstract_init(create_model("resnet20", num_classes=10, shortcut="Z"), CIFAR_SHAPE)


def test_shortcut_a_subsamples_and_zero_pads():
  x = jax.random.normal(_key(0), (2, 8, 8, 4))
  y = shortcut_a(x, features=8, strides=2)
  assert y.shape == (2, 4, 4, 8)
  np.testing.assert_array_equal(y[..., :4], x[:, ::2, ::2, :])
  assert float(jnp.abs(y[..., 4:]).max()) == 0.0


def test_cifar_resnet_forward_shapes_and_bfloat16():
  model = create_model("resnet56", num_classes=100, dtype=jnp.bfloat16)
  v = _abstract_init(model, CIFAR_SHAPE)
  assert {x.dtype for x in jax.tree_util.tree_leaves(v)} == {jnp.dtype(jnp.float32)}
  x = jax.ShapeDtypeStruct((3, 32, 32, 3), jnp.float32)
  y = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), v, x)
  assert y.shape == (3, 100) and y.dtype == jnp.bfloat16


def test_cifar_resnet_init():
  # n=1 (an 8-layer net) keeps the real init cheap; the blocks are the same code.
  model = create_model("resnet20", num_classes=10, width=4, blocks_per_stage=1,
                       zero_init_residual=True)
  p = _init(model, TINY_CIFAR_SHAPE)[0]["params"]
  assert sorted(k for k in p if k.startswith("stage")) == [
      "stage1_block1", "stage2_block1", "stage3_block1"]
  k = p["stage3_block1"]["conv2"]["kernel"]
  std_expected = math.sqrt(2.0 / (3 * 3 * 16))  # He, fan-out: 3x3 kernel, 16 filters
  assert k.shape == (3, 3, 16, 16) and abs(float(k.std()) / std_expected - 1) < 0.1
  for blk in ("stage1_block1", "stage2_block1", "stage3_block1"):
    assert float(jnp.abs(p[blk]["bn2"]["scale"]).max()) == 0.0  # zero_init_residual
    assert float(jnp.abs(p[blk]["bn1"]["scale"]).min()) == 1.0


def test_cifar_resnet_batch_stats():
  model = create_model("resnet20", num_classes=10, width=4)
  v, x = _random_variables(model, TINY_CIFAR_SHAPE)
  logits, updates = model.apply(v, x, train=True, mutable=["batch_stats"])
  assert logits.shape == (2, 10)
  old, new = v["batch_stats"], updates["batch_stats"]
  assert jax.tree_util.tree_structure(old) == jax.tree_util.tree_structure(new)
  # Init stats are mean 0, var 1; a training step moves them by 10% toward the batch.
  assert not np.allclose(old["bn1"]["mean"], new["bn1"]["mean"])
  assert not np.allclose(old["stage3_block3"]["bn2"]["var"],
                         new["stage3_block3"]["bn2"]["var"])
  # Eval needs no mutable collection, is deterministic and reads the running stats.
  variables = {"params": v["params"], "batch_stats": new}
  y1 = model.apply(variables, x, train=False)
  np.testing.assert_array_equal(y1, model.apply(variables, x, train=False))
  assert not np.allclose(y1, model.apply(v, x, train=False))
  with pytest.raises(Exception, match="batch_stats"):
    model.apply(v, x, train=True)  # training without mutable must not pass silently


def test_cifar_resnet_zero_init_residual_makes_blocks_identity():
  # With bn2's scale and bias zero, each block is relu(shortcut): the network output
  # is then unchanged by the weights of every block's convolutions.
  model = create_model("resnet20", num_classes=10, width=4)
  v, x = _random_variables(model, TINY_CIFAR_SHAPE)
  for blk in (k for k in v["params"] if k.startswith("stage")):
    for leaf in ("scale", "bias"):
      v["params"][blk]["bn2"][leaf] = jnp.zeros_like(v["params"][blk]["bn2"][leaf])
  y = model.apply(v, x, train=False)
  v["params"]["stage2_block2"]["conv1"]["kernel"] *= 3.0
  np.testing.assert_allclose(model.apply(v, x, train=False), y, rtol=1e-6)
