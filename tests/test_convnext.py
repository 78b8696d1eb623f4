"""ConvNeXt (models/convnext.py): counts, layer scale, stochastic depth, a train step, and
torchvision / timm checkpoints.

Counts and the wiring of drop-path rates go through jax.eval_shape (tracing only). What
executes without torch is small: one 8-channel block on 2000 examples of 2x2 and a
4-block, 8-64-channel ConvNeXt on 32x32 images.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import create_model, torch_convert
# models.convnext registers convnext_* (models/__init__ may not import it yet).
from models.convnext import PAPER_DROP_PATH_RATES, ConvNeXt, ConvNeXtBlock
from models.layers import DropPath
from tests.model_testing import abstract_init, count_params, fast_key, train_on_fixed_batch
from tests.torch_reference import (import_torchvision, max_relative_error, state_dict_numpy,
                                   torch_logits)

TINY = dict(dims=(8, 16, 32, 64), depths=(1, 1, 1, 1))
SMALL = (2, 64, 64, 3)  # 2x2 maps in stage 4


# ------------------------------------------------------------------ parameter counts


@pytest.mark.parametrize("name,expected", [
    ("convnext_t", 28_589_128),  # REFERENCE.md = torchvision = timm
    ("convnext_s", 50_223_688),
    ("convnext_b", 88_591_464),
    ("convnext_l", 197_767_336),
])
def test_param_counts(name, expected):
  # Counts do not depend on the input size: trace at 32x32.
  assert count_params(abstract_init(create_model(name, num_classes=1000),
                                    (1, 32, 32, 3))) == expected


def test_layer_scale_option_and_layers():
  p = abstract_init(create_model("convnext_t", num_classes=1000), (1, 32, 32, 3))["params"]
  assert set(p) == ({"stem_conv", "stem_norm", "head_norm", "head"}
                    | {f"downsample{s}_{k}" for s in (2, 3, 4) for k in ("norm", "conv")}
                    | {f"stage{s}_block{b}" for s, d in zip((1, 2, 3, 4), (3, 3, 9, 3))
                       for b in range(1, d + 1)})
  assert p["stem_conv"]["kernel"].shape == (4, 4, 3, 96)
  assert p["downsample3_conv"]["kernel"].shape == (2, 2, 192, 384)
  block = p["stage3_block9"]
  assert block["dwconv"]["kernel"].shape == (7, 7, 1, 384)  # depthwise
  assert block["pwconv1"]["kernel"].shape == (384, 1536)  # inverted bottleneck, 4x
  assert block["pwconv2"]["kernel"].shape == (1536, 384)
  assert block["layer_scale"]["gamma"].shape == (384,)
  gammas = 3 * 96 + 3 * 192 + 9 * 384 + 3 * 768
  for off in (None, 0.0):
    q = abstract_init(create_model("convnext_t", num_classes=1000, layer_scale_init=off),
                      (1, 32, 32, 3))
    assert count_params(q) == 28_589_128 - gammas
    assert "layer_scale" not in q["params"]["stage1_block1"]
  k5 = abstract_init(create_model("convnext_t", num_classes=1000, kernel_size=5),
                     (1, 32, 32, 3))["params"]
  assert k5["stage1_block1"]["dwconv"]["kernel"].shape == (5, 5, 1, 96)


# ------------------------------------------------------------------ outputs and init


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_output_shapes_and_dtypes(dtype):
  model = create_model("convnext_t", num_classes=7, dtype=dtype, drop_path_rate=0.1)
  v = abstract_init(model, (3, 64, 64, 3))
  assert {x.dtype for x in jax.tree_util.tree_leaves(v)} == {jnp.dtype(jnp.float32)}
  x = jax.ShapeDtypeStruct((3, 64, 64, 3), jnp.float32)
  for train in (False, True):
    y = jax.eval_shape(lambda v, x: model.apply(v, x, train=train,
                                                rngs={"dropout": jax.random.key(0)}), v, x)
    assert y.shape == (3, 7) and y.dtype == dtype


@pytest.fixture(scope="module")
def tiny_training():
  """Six Adam steps of a tiny ConvNeXt (drop path 0.1, head_init_scale 0.5) on one fixed
  batch: the initial state checks the init, the rest the training step."""
  model = create_model("convnext_t", num_classes=10, drop_path_rate=0.1, head_init_scale=0.5,
                       **TINY)
  return train_on_fixed_batch(model, (32, 32, 3), steps=6, batch=16)


def test_init(tiny_training):
  p = tiny_training[0].params
  blocks = [k for k in p if "_block" in k]
  assert len(blocks) == 4
  for b in blocks:  # layer scale starts at 1e-6 in every block
    np.testing.assert_array_equal(p[b]["layer_scale"]["gamma"], np.float32(1e-6))
    assert not np.any(p[b]["dwconv"]["bias"]) and not np.any(p[b]["pwconv1"]["bias"])
  np.testing.assert_array_equal(p["stem_norm"]["scale"], 1.0)
  # trunc_normal(0.02), cut at 2 std: the 16 x 64 stage-2 fc1 weights.
  w = np.asarray(p["stage2_block1"]["pwconv1"]["kernel"])
  assert 0.015 < w.std() < 0.02 and np.abs(w).max() <= 0.04 + 1e-7
  # The head scaled by head_init_scale (0.5): std about 0.01.
  assert 0.006 < np.asarray(p["head"]["kernel"]).std() < 0.0105
  assert not np.any(p["head"]["bias"])


# ------------------------------------------------------------------ stochastic depth


def test_drop_path_rates_rise_linearly():
  model = create_model("convnext_t", num_classes=10, drop_path_rate=0.1)
  rates = model.block_drop_path_rates()
  assert [len(r) for r in rates] == [3, 3, 9, 3]
  flat = [r for stage in rates for r in stage]
  np.testing.assert_allclose(flat, np.linspace(0.0, 0.1, 18), atol=1e-12)
  # The rates the built network's DropPath layers carry, in the order they run.
  wired = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, DropPath) and context.method_name == "__call__":
      wired.append(context.module.rate)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    abstract_init(model, (1, 32, 32, 3))
  assert wired == flat
  assert all(r == 0.0 for r in
             sum(create_model("convnext_s", num_classes=10).block_drop_path_rates(), []))
  assert PAPER_DROP_PATH_RATES == {"convnext_t": 0.1, "convnext_s": 0.4,
                                   "convnext_b": 0.5, "convnext_l": 0.5}


def test_stochastic_depth_drops_whole_branches():
  n, p = 2000, 0.3
  x = jnp.asarray(np.random.default_rng(0).normal(size=(n, 2, 2, 8)), jnp.float32)
  # Layer scale 100: trunc_normal(0.02) weights make a branch of order 1e-2, this of order 1.
  block = ConvNeXtBlock(8, drop_path=p, layer_scale_init=100.0)
  v = block.init(fast_key(0), x[:1], train=False)

  @jax.jit
  def run(v, x):
    train = block.apply(v, x, train=True, rngs={"dropout": fast_key(1)})
    evals = [block.apply(v, x, train=False, rngs={"dropout": fast_key(k)})
             for k in (2, 3)]
    no_drop = block.clone(drop_path=0.0).apply(v, x, train=True)
    return train, evals, no_drop

  train, (eval_a, eval_b), no_drop = map(jax.tree.map, [np.asarray] * 3, run(v, x))
  x = np.asarray(x)
  # Evaluation: deterministic, x + branch, the same as training without drop path.
  np.testing.assert_array_equal(eval_a, eval_b)
  np.testing.assert_allclose(eval_a, no_drop, rtol=1e-6, atol=1e-6)
  branch = eval_a - x
  assert np.all(np.abs(branch).reshape(n, -1).max(1) > 1e-2)  # the branch is not ~0
  # Training: each example's whole branch is dropped (output = input exactly) or kept and
  # scaled by 1 / (1 - p).
  dropped = np.all(train == x, axis=(1, 2, 3))
  kept = np.all(np.isclose(train, x + branch / (1 - p), rtol=1e-5, atol=1e-5), axis=(1, 2, 3))
  assert np.all(dropped ^ kept)
  sigma = math.sqrt(p * (1 - p) / n)
  assert abs(dropped.mean() - p) < 3 * sigma, dropped.mean()


# ------------------------------------------------------------------ training


def test_train_step_on_tiny_convnext(tiny_training):
  initial, losses, final = tiny_training
  assert all(np.isfinite(losses))
  assert losses[-1] < 0.8 * losses[0], losses
  for name in ("stem_conv", "stage4_block1", "head"):
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), initial.params[name],
                           final.params[name])
    assert all(jax.tree.leaves(changed)), name
  # Layer scale learns away from its 1e-6 start (Adam: about 1e-3 per step).
  assert np.abs(final.params["stage4_block1"]["layer_scale"]["gamma"]).max() > 1e-4


# ------------------------------------------------------------------ converter


def _fake_state_dict(source: str, depths, dims, classes=10, seed=0):
  """A checkpoint in torchvision's or timm's naming with random tensors in PyTorch
  layouts, for the converter's mapping without torch."""
  rng = np.random.default_rng(seed)
  r = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
  sd = {}

  def conv(key, o, i, k, groups=1):
    sd[f"{key}.weight"], sd[f"{key}.bias"] = r(o, i // groups, k, k), r(o)

  def norm(key, c):
    sd[f"{key}.weight"], sd[f"{key}.bias"] = r(c), r(c)

  def linear(key, o, i):
    sd[f"{key}.weight"], sd[f"{key}.bias"] = r(o, i), r(o)

  tv = source == "torchvision"
  conv("features.0.0" if tv else "stem.0", dims[0], 3, 4)
  norm("features.0.1" if tv else "stem.1", dims[0])
  for s, (d, c) in enumerate(zip(depths, dims)):
    if s:
      down = f"features.{2 * s}" if tv else f"stages.{s}.downsample"
      norm(f"{down}.0", dims[s - 1])
      conv(f"{down}.1", c, dims[s - 1], 2)
    for b in range(d):
      pre = f"features.{2 * s + 1}.{b}" if tv else f"stages.{s}.blocks.{b}"
      names = ("block.0", "block.2", "block.3", "block.5") if tv else (
          "conv_dw", "norm", "mlp.fc1", "mlp.fc2")
      conv(f"{pre}.{names[0]}", c, c, 7, groups=c)
      norm(f"{pre}.{names[1]}", c)
      linear(f"{pre}.{names[2]}", 4 * c, c)
      linear(f"{pre}.{names[3]}", c, 4 * c)
      sd[f"{pre}.layer_scale" if tv else f"{pre}.gamma"] = r(*((c, 1, 1) if tv else (c,)))
  norm("classifier.0" if tv else "head.norm", dims[-1])
  linear("classifier.2" if tv else "head.fc", classes, dims[-1])
  return sd


@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_converter_layouts_without_torch(source):
  model = create_model("convnext_t", num_classes=10, **TINY)
  sd = _fake_state_dict(source, TINY["depths"], TINY["dims"])
  v = torch_convert.convert("convnext_t", sd, model=model, input_shape=(1, 32, 32, 3))
  p = v["params"]["stage2_block1"]
  pre = "features.3.0" if source == "torchvision" else "stages.1.blocks.0"
  dw = sd[f"{pre}.block.0.weight" if source == "torchvision" else f"{pre}.conv_dw.weight"]
  np.testing.assert_array_equal(p["dwconv"]["kernel"][:, :, 0, 5], dw[5, 0])
  fc1 = sd[f"{pre}.block.3.weight" if source == "torchvision" else f"{pre}.mlp.fc1.weight"]
  np.testing.assert_array_equal(p["pwconv1"]["kernel"], fc1.T)
  gamma = sd[f"{pre}.layer_scale" if source == "torchvision" else f"{pre}.gamma"]
  np.testing.assert_array_equal(p["layer_scale"]["gamma"], gamma.reshape(-1))
  # A model of other options or depths is refused with a message that says so.
  with pytest.raises(torch_convert.ConversionError, match="not used"):
    torch_convert.convert("convnext_t", sd, model=create_model(
        "convnext_t", num_classes=10, layer_scale_init=None, **TINY))
  with pytest.raises(torch_convert.ConversionError, match="depths"):
    torch_convert.convert("convnext_t", sd, model=create_model("convnext_t", num_classes=10))
  with pytest.raises(torch_convert.ConversionError, match="kernel_size=7"):
    torch_convert.convert("convnext_t", sd, model=create_model(
        "convnext_t", num_classes=10, kernel_size=5, **TINY))
  with pytest.raises(torch_convert.ConversionError, match="cannot tell whose"):
    torch_convert.convert("convnext_t", {"conv1.weight": np.zeros(1)}, model=model)


# ------------------------------------------------------------------ torchvision and timm


@pytest.fixture(scope="module")
def convnext_t_apply():
  model = create_model("convnext_t", num_classes=1000)
  return model, jax.jit(lambda v, x: model.apply(v, x, train=False))


def _randomize(torch, module, seed=0):
  """Layer scale of order 0.1-1 (at 1e-6 the blocks would barely matter), LayerNorm
  affine parameters and biases away from their 1 / 0 init, so each is checked."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in module.named_parameters():
      if name.endswith(("layer_scale", "gamma")):
        p.copy_(torch.rand(p.shape, generator=g) * 0.9 + 0.1)
      elif p.ndim == 1 and name.endswith("weight"):  # LayerNorm scales
        p.copy_(torch.rand(p.shape, generator=g) + 0.5)
      elif p.ndim == 1:
        p.copy_(torch.randn(p.shape, generator=g) * 0.1)
  return module.eval()


def _check_equivalence(torch, ref, convnext_t_apply, label):
  model, apply = convnext_t_apply
  sd = state_dict_numpy(ref)
  variables = torch_convert.convert("convnext_t", sd, model=model, input_shape=SMALL)
  x = np.random.default_rng(0).normal(size=SMALL).astype(np.float32)
  expected = torch_logits(torch, ref, x)
  head_bias = sd["classifier.2.bias" if "classifier.2.bias" in sd else "head.fc.bias"]
  assert np.std(expected) > 3 * np.std(head_bias)  # not just the bias
  err = max_relative_error(apply(variables, x), expected)
  print(f"convnext_t vs {label} at 64x64: max relative error {err:.2e}")
  assert err < 1e-4
  return sd


def test_torchvision_convnext_tiny_equivalence(convnext_t_apply):
  torch, tv = import_torchvision()
  torch.manual_seed(0)
  ref = _randomize(torch, tv.models.convnext_tiny(weights=None))
  sd = _check_equivalence(torch, ref, convnext_t_apply, "torchvision")
  with pytest.raises(torch_convert.ConversionError, match="depths"):
    torch_convert.convert("convnext_s", sd, model=create_model("convnext_s", num_classes=1000))


def test_timm_convnext_tiny_equivalence(convnext_t_apply):
  torch, _ = import_torchvision()
  timm = pytest.importorskip("timm")
  torch.manual_seed(1)
  ref = _randomize(torch, timm.create_model("convnext_tiny", pretrained=False), seed=1)
  _check_equivalence(torch, ref, convnext_t_apply, "timm")


def test_converter_registered():
  assert {"convnext_t", "convnext_s", "convnext_b", "convnext_l"} <= set(
      torch_convert.list_convertible())
  assert isinstance(create_model("convnext_l", num_classes=10), ConvNeXt)
