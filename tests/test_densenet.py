"""DenseNet (ImageNet and CIFAR variants) and its torchvision/timm converter:
models/densenet.py.

Counts and shapes go through jax.eval_shape (tracing only). What executes uses tiny
growth rates and blocks; the torch tests compile DenseNet-121 once, at 64x64.
"""

from __future__ import annotations

import functools
import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models.densenet  # noqa: F401  (registers the DenseNets)
from models import create_model, torch_convert
from models.densenet import DenseNet
from models.layers import max_pool
from tests.model_testing import (abstract_init, compile_at_level_0, count_params,
                                 random_variables, train_on_fixed_batch)
from tests.torch_reference import (import_torchvision, max_relative_error,
                                   randomize_batch_norm, state_dict_numpy, torch_logits)

TORCH_SHAPE = (2, 64, 64, 3)
# ImageNet stem, bottlenecks and compression, but k = 4 and short blocks.
TINY = dict(growth_rate=4, block_config=(1, 2, 1, 1), num_init_features=8)


@functools.cache
def _variables(name: str, num_classes: int):
  """``create_model(name)``'s variables as shapes (traced once per test file): parameter
  shapes do not depend on the input size (global average pooling)."""
  return abstract_init(create_model(name, num_classes=num_classes), (1, 32, 32, 3))


# ------------------------------------------------------------------ parameter counts


@pytest.mark.parametrize("name,classes,expected", [
    ("densenet121", 1000, 7_978_856),  # torchvision, REFERENCE.md
    ("densenet169", 1000, 14_149_480),
    ("densenet201", 1000, 20_013_928),
    ("densenet161", 1000, 28_681_000),  # torchvision densenet161
    ("densenet_bc100_k12", 10, 769_162),  # Table 2: 0.8M
    ("densenet_bc100_k12", 100, 800_032),
    ("densenet_bc250_k24", 10, 15_324_406),  # 15.3M
    ("densenet_bc190_k40", 10, 25_624_430),  # 25.6M
    ("densenet40_k12", 10, 1_019_722),  # 1.0M
])
def test_param_counts(name, classes, expected):
  v = _variables(name, classes)
  assert count_params(v["params"]) == expected
  # One BN per conv input (plus the final one): two statistics per normalised channel.
  norms = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(v["params"])
           if jax.tree_util.keystr(path).endswith("['scale']")]
  assert count_params(v["batch_stats"]) == 2 * sum(a.shape[0] for a in norms)


# ------------------------------------------------------------------ dense connectivity


@pytest.mark.parametrize("name,classes,k,init,blocks", [
    ("densenet121", 1000, 32, 64, (6, 12, 24, 16)),
    ("densenet_bc100_k12", 10, 12, 24, (16, 16, 16)),
    ("densenet40_k12", 10, 12, 16, (12, 12, 12)),
])
def test_channels_grow_by_k_per_layer(name, classes, k, init, blocks):
  p = _variables(name, classes)["params"]
  bc = create_model(name, num_classes=classes).bn_size > 0
  c = init
  for i, n in enumerate(blocks, start=1):
    block = p[f"denseblock{i}"]
    assert len(block) == n
    for j in range(1, n + 1):
      layer = block[f"denselayer{j}"]
      # Layer j sees the block input and the k maps of each of the j - 1 layers before it.
      assert layer["norm1"]["scale"].shape == (c + (j - 1) * k,)
      if bc:  # 1x1 to 4k, then 3x3 to k
        assert layer["conv1"]["kernel"].shape == (1, 1, c + (j - 1) * k, 4 * k)
        assert layer["conv2"]["kernel"].shape == (3, 3, 4 * k, k)
      else:
        assert set(layer) == {"norm1", "conv1"}
        assert layer["conv1"]["kernel"].shape == (3, 3, c + (j - 1) * k, k)
    c += n * k  # the channels entering the transition: init + n k
    if i < len(blocks):
      t = p[f"transition{i}"]
      out = c // 2 if bc else c  # compression 0.5 for -BC, none for plain DenseNet
      assert t["norm"]["scale"].shape == (c,)
      assert t["conv"]["kernel"].shape == (1, 1, c, out)
      c = out
  assert p["norm_final"]["scale"].shape == (c,)
  assert p["classifier"]["kernel"].shape == (c, classes)


@pytest.fixture(scope="module")
def tiny_run():
  """One compiled program on a tiny ImageNet-stem DenseNet-BC with dropout 0.5: every
  module's output in evaluation, the dropout layers' outputs in training."""
  model = DenseNet(num_classes=5, dropout_rate=0.5, **TINY)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
  v = random_variables(model, x.shape)

  def run(v, x, rng):
    logits, state = model.apply(v, x, train=False, capture_intermediates=True)
    _, train_state = model.apply(
        v, x, train=True, rngs={"dropout": rng}, mutable=["batch_stats"],
        capture_intermediates=lambda m, _: isinstance(m, nn.Dropout))
    return logits, state["intermediates"], train_state["intermediates"]

  run = compile_at_level_0(run, v, x, jax.random.key(1))
  logits, inter, dropped = run(v, x, jax.random.key(1))
  again, _, dropped_again = run(v, x, jax.random.key(2))
  return dict(logits=logits, inter=inter, dropped=dropped, logits_again=again,
              dropped_again=dropped_again)


def test_concatenation_keeps_earlier_maps_unchanged(tiny_run):
  inter = tiny_run["inter"]
  out = lambda *path: np.asarray(_get(inter, *path, "__call__")[0])
  # Block 1's input: the stem (conv, BN, ReLU, 3x3/2 max pool) at 8x8.
  stem = np.asarray(max_pool(jax.nn.relu(out("norm0")), 3, 2, pad=1))
  assert stem.shape == (2, 8, 8, 8)
  previous, channels = stem, 8
  for i, n in enumerate(TINY["block_config"], start=1):
    for j in range(1, n + 1):
      y = out(f"denseblock{i}", f"denselayer{j}")
      channels += 4
      assert y.shape[-1] == channels
      np.testing.assert_array_equal(y[..., :channels - 4], previous)  # passed through
      assert np.std(y[..., channels - 4:]) > 0.1  # and k new maps
      previous = y
    np.testing.assert_array_equal(out(f"denseblock{i}"), previous)
    if i < len(TINY["block_config"]):
      previous = out(f"transition{i}")
      channels //= 2
      assert previous.shape[-1] == channels
  assert [out(f"denseblock{i}").shape[1] for i in range(1, 5)] == [8, 4, 2, 1]


def _get(tree, *path):
  for key in path:
    tree = tree[key]
  return tree


# ------------------------------------------------------------------ shapes and options


def test_imagenet_shapes_at_224():
  model = create_model("densenet121", num_classes=1000)
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  v = _variables("densenet121", 1000)
  y, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False, capture_intermediates=True), v, x)
  assert y.shape == (2, 1000)
  blocks = {i: state["intermediates"][f"denseblock{i}"]["__call__"][0].shape
            for i in range(1, 5)}
  # Table 1: 56, 28, 14, 7 pixel maps; 256, 512, 1024, 1024 channels leaving the blocks.
  assert blocks == {1: (2, 56, 56, 256), 2: (2, 28, 28, 512), 3: (2, 14, 14, 1024),
                    4: (2, 7, 7, 1024)}


def test_cifar_shapes_and_bfloat16():
  model = create_model("densenet_bc100_k12", num_classes=100, dtype=jnp.bfloat16)
  x = jax.ShapeDtypeStruct((3, 32, 32, 3), jnp.float32)
  v = _variables("densenet_bc100_k12", 100)  # the float32 model's: the same tree
  # Parameters stay float32 with a bfloat16 compute dtype (a tiny model: a cheaper trace).
  tiny = DenseNet(num_classes=3, growth_rate=4, block_config=(1, 1, 1), num_init_features=8,
                  stem="cifar", dtype=jnp.bfloat16)
  assert {a.dtype for a in jax.tree_util.tree_leaves(abstract_init(tiny, (1, 8, 8, 3)))} == {
      jnp.dtype(jnp.float32)}
  assert set(v["params"]) == ({"conv0", "norm_final", "classifier", "transition1",
                               "transition2"} | {f"denseblock{i}" for i in (1, 2, 3)})
  assert v["params"]["conv0"]["kernel"].shape == (3, 3, 3, 24)  # 3x3, 2k maps, no BN
  y, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False, capture_intermediates=True), v, x)
  assert y.shape == (3, 100) and y.dtype == jnp.bfloat16
  sizes = [state["intermediates"][f"denseblock{i}"]["__call__"][0].shape[1:]
           for i in (1, 2, 3)]
  assert sizes == [(32, 32, 216), (16, 16, 300), (8, 8, 342)]  # 24+192, 108+192, 150+192


def test_invalid_options_and_inputs():
  # An ImageNet DenseNet halves the input five times: 16x16 leaves a 1x1 map at the third
  # transition (a tiny one, which traces faster: the depth does not matter).
  with pytest.raises(ValueError, match="transition3.*32x32"):
    abstract_init(DenseNet(num_classes=10, **TINY), (1, 16, 16, 3))
  abstract_init(DenseNet(num_classes=10, **TINY), (1, 32, 32, 3))
  with pytest.raises(ValueError, match="stem"):
    abstract_init(create_model("densenet121", num_classes=10, stem="deep"), (1, 32, 32, 3))
  with pytest.raises(ValueError, match="compression"):
    abstract_init(create_model("densenet121", num_classes=10, compression=0.0),
                  (1, 32, 32, 3))


def test_dropout_after_every_conv_but_the_first(tiny_run):
  inter = tiny_run["dropped"]
  assert set(inter) == {f"denseblock{i}" for i in range(1, 5)} | {
      f"transition{i}" for i in range(1, 4)}  # none in the stem or the classifier
  # Each dense layer drops after its 1x1 and its 3x3 conv, each transition after its conv.
  outputs = []
  for i, n in enumerate(TINY["block_config"], start=1):
    for j in range(1, n + 1):
      dropped = inter[f"denseblock{i}"][f"denselayer{j}"]["Dropout_0"]["__call__"]
      assert [a.shape[-1] for a in dropped] == [16, 4]  # 4k, then k maps
      outputs += dropped
    if i < 4:
      outputs += inter[f"transition{i}"]["Dropout_0"]["__call__"]
  zeros = np.mean(np.concatenate([np.ravel(a) == 0 for a in outputs]))
  assert 0.45 < zeros < 0.55  # rate 0.5 (the kept values are rescaled, not zero)
  first = lambda d: np.asarray(d["transition1"]["Dropout_0"]["__call__"][0])
  assert not np.array_equal(first(inter), first(tiny_run["dropped_again"]))  # the rng
  # Evaluation is deterministic, whatever the rng.
  np.testing.assert_array_equal(tiny_run["logits"], tiny_run["logits_again"])


# ------------------------------------------------------------------ training step


def test_tiny_densenet_fits_a_fixed_batch():
  model = create_model("densenet_bc100_k12", num_classes=10, growth_rate=8,
                       block_config=(1, 1, 1), num_init_features=16)
  initial, losses, final = train_on_fixed_batch(model, (8, 8, 3), steps=8)
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.9 * losses[0]  # measured: 2.36 -> 1.98
  changed = lambda a, b: not np.allclose(a, b)
  assert all(jax.tree.leaves(jax.tree.map(changed, final.params, initial.params)))
  # Every BatchNorm's running statistics moved.
  assert all(jax.tree.leaves(jax.tree.map(changed, final.batch_stats, initial.batch_stats)))


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("arg,model,epochs,batch,decay", [
    ("", "densenet121", 90, 256, (30, 60)),  # Sec. 4.2, ImageNet
    ("depth=201", "densenet201", 90, 256, (30, 60)),
    ("cifar", "densenet_bc100_k12", 300, 64, (150, 225)),  # 50% and 75% of training
    ("cifar,epochs=40", "densenet_bc100_k12", 40, 64, (20, 30)),
])
def test_config_recipes(arg, model, epochs, batch, decay):
  from training import config as config_lib
  c = config_lib.load_config(f"configs/densenet121.py:{arg}")
  config_lib.validate(c)
  assert (c.model, c.num_epochs, c.batch_size, tuple(c.decay_epochs)) == (
      model, epochs, batch, decay)
  assert (c.optimizer, c.learning_rate, c.momentum, c.nesterov, c.weight_decay) == (
      "sgd", 0.1, 0.9, True, 1e-4)
  assert c.schedule == "step" and c.decay_factor == 0.1 and c.augment.flip
  noaug = config_lib.load_config("configs/densenet121.py:cifar,noaug")
  assert noaug.model_kwargs.dropout_rate == 0.2 and not noaug.augment.flip
  assert noaug.augment.crop_padding == 0
  for spec in ("tiny", "cifar,tiny"):
    tiny = config_lib.load_config(f"configs/densenet121.py:{spec}")
    assert tiny.dataset == "synthetic" and tiny.num_epochs == 2
    # The tiny model builds (its block count fits its stem).
    create_model(tiny.model, num_classes=10, **tiny.model_kwargs.to_dict())
  with pytest.raises(ValueError, match="depth"):
    config_lib.load_config("configs/densenet121.py:depth=100")


# ------------------------------------------------------------------ converter

# Our leaf names <- PyTorch's.
_LEAVES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
           "var": "running_var"}


def _to_torch_names(variables) -> dict[str, np.ndarray]:
  """The inverse of the converter: our variables as a torchvision DenseNet state dict."""
  sd = {}
  for col in ("params", "batch_stats"):
    for path, leaf in jax.tree_util.tree_leaves_with_path(variables[col]):
      keys = [p.key for p in path]
      module = ".".join(keys[:-1]).replace("norm_final", "norm5")
      prefix = module if module.startswith("classifier") else f"features.{module}"
      a = np.asarray(leaf)
      if keys[-1] == "kernel":
        a = a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T
      sd[f"{prefix}.{_LEAVES[keys[-1]]}"] = a
  return sd


def _legacy_names(sd):
  """torchvision's released files: ``denselayer1.norm.1.weight``, ``conv.2.weight``."""
  return {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v
          for k, v in sd.items()}


def test_converter_round_trip_without_torch():
  model = DenseNet(num_classes=7, **TINY)
  shape = (1, 32, 32, 3)
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda a: rng.normal(size=a.shape).astype(np.float32),
                           abstract_init(model, shape))
  sd = _to_torch_names(variables)
  assert "features.denseblock1.denselayer1.norm1.running_var" in sd
  assert "features.transition3.conv.weight" in sd and "features.norm5.weight" in sd
  for checkpoint in (sd, _legacy_names(sd)):
    converted = torch_convert.convert("densenet121", checkpoint, model=model,
                                      input_shape=shape)
    jax.tree.map(np.testing.assert_array_equal, converted, variables)
  assert "features.denseblock1.denselayer1.norm.1.weight" in _legacy_names(sd)
  # Another block structure, a missing tensor, or a model of another kind: clear errors.
  with pytest.raises(torch_convert.ConversionError, match=r"\(1, 2, 1, 1\) layers"):
    torch_convert.convert("densenet121", sd, model=DenseNet(
        num_classes=7, growth_rate=4, block_config=(1, 2, 2, 1), num_init_features=8))
  del sd["features.norm5.running_var"]
  with pytest.raises(torch_convert.ConversionError, match="norm5.running_var"):
    torch_convert.convert("densenet121", sd, model=model)
  for other in (create_model("densenet_bc100_k12", num_classes=10),
                create_model("densenet121", num_classes=10, bn_size=0)):
    with pytest.raises(torch_convert.ConversionError, match="ImageNet DenseNet-BC"):
      torch_convert.convert("densenet121", {}, model=other)
  assert {"densenet121", "densenet161", "densenet169", "densenet201"} <= set(
      torch_convert.list_convertible())


@pytest.fixture(scope="module")
def densenet121_apply():
  model = create_model("densenet121", num_classes=1000)
  v = _variables("densenet121", 1000)
  fn = compile_at_level_0(lambda v, x: model.apply(v, x, train=False), v,
                          jax.ShapeDtypeStruct(TORCH_SHAPE, jnp.float32))
  return model, fn


def _check_equivalence(torch, ref, model, apply, source):
  randomize_batch_norm(torch, ref)
  with torch.no_grad():
    ref.classifier.bias.normal_(0.0, 0.1)
  sd = state_dict_numpy(ref)
  variables = torch_convert.convert("densenet121", sd, model=model, input_shape=TORCH_SHAPE)
  x = np.random.default_rng(0).normal(size=TORCH_SHAPE).astype(np.float32)
  expected = torch_logits(torch, ref, x)
  assert np.std(expected) > 5 * np.std(sd["classifier.bias"])  # not just the bias
  err = max_relative_error(apply(variables, x), expected)
  print(f"densenet121 vs {source} at 64x64: max relative error {err:.2e}")
  assert err < 1e-4
  return sd


def test_torchvision_densenet121_equivalence(densenet121_apply):
  torch, tv = import_torchvision()
  torch.manual_seed(0)
  ref = tv.models.densenet121(weights=None).eval()
  model, apply = densenet121_apply
  sd = _check_equivalence(torch, ref, model, apply, "torchvision")
  # torchvision's released files use the older "norm.1" names: the same variables.
  np.testing.assert_array_equal(
      torch_convert.convert("densenet121", _legacy_names(sd))["params"]["denseblock2"][
          "denselayer3"]["conv2"]["kernel"],
      sd["features.denseblock2.denselayer3.conv2.weight"].transpose(2, 3, 1, 0))
  with pytest.raises(torch_convert.ConversionError, match="dense blocks"):
    torch_convert.convert("densenet169", sd, model=create_model("densenet169",
                                                                num_classes=1000))


def test_timm_densenet121_equivalence(densenet121_apply):
  torch, _ = import_torchvision()
  timm = pytest.importorskip("timm")
  torch.manual_seed(1)
  ref = timm.create_model("densenet121", pretrained=False).eval()
  model, apply = densenet121_apply
  _check_equivalence(torch, ref, model, apply, "timm")


def test_torchvision_densenet161_tree():
  """densenet161 (k = 48, 96 stem maps) converts leaf for leaf; its arithmetic is
  densenet121's, which the equivalence tests cover."""
  _, tv = import_torchvision()
  sd = state_dict_numpy(tv.models.densenet161(weights=None))
  model = create_model("densenet161", num_classes=1000)
  variables = torch_convert.convert("densenet161", sd, model=model, input_shape=(1, 32, 32, 3))
  assert count_params(variables["params"]) == 28_681_000
  assert math.prod(variables["params"]["conv0"]["kernel"].shape) == 7 * 7 * 3 * 96
