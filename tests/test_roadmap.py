"""The ConvNeXt roadmap (models/roadmap.py, configs/convnext_roadmap.py): Table 10's GFLOPs
row by row, the endpoints (= resnet50 and convnext_t), what each step changes, shapes at
small resolution, a train step, and the sweep.

Counts, MACs and activations go through jax.eval_shape / jax.make_jaxpr (tracing only,
full-size models). What executes is small, 8-channel models with one block per stage on
32x32 images: two forward passes of each endpoint and four train steps of a two-stage
one.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import convnext_roadmap as roadmap_config
from models import create_model
from analysis import count_macs
from models.roadmap import STEP_KWARGS, STEPS, ModernizedResNet
from tests.model_testing import (abstract_init, compile_at_level_0, count_params, fast_key,
                                 train_on_fixed_batch)
from training import config as config_lib

IMAGENET = (1, 224, 224, 3)
SMALL = (1, 32, 32, 3)  # parameter counts do not depend on the input size
TINY = dict(width=8, depths=(1, 1, 1, 1), stem_stride=2)  # maps of 16x16 .. 2x2
PAPER = {step.name: step.gflops for step in STEPS}
# Each row and the row it builds on (kernels 5, 9 and 11 are side branches).
BASE = {}
_main = None
for _step in STEPS:
  BASE[_step.name] = _main
  _main = _main if _step.branch else _step.name


@functools.lru_cache(maxsize=None)
def _variables(name: str):
  return abstract_init(create_model(f"roadmap_{name}", num_classes=1000), SMALL)


def _params(name: str):
  return _variables(name)["params"]


@functools.lru_cache(maxsize=None)
def _macs(name: str) -> int:
  return count_macs(create_model(f"roadmap_{name}", num_classes=1000), IMAGENET)


def _gmacs(name: str) -> float:
  return _macs(name) / 1e9


def fvcore_norm_flops(model, shape) -> int:
  """What fvcore adds for norm layers: 2 FLOPs per input element for ``aten::batch_norm``
  in eval, 5 for ``aten::layer_norm`` / ``group_norm`` (fvcore/nn/jit_handles.py), taken
  from the input of every norm layer the model calls."""
  total = 0

  def record(f, args, kwargs, context):
    nonlocal total
    if context.method_name == "__call__":
      per_element = {nn.BatchNorm: 2, nn.LayerNorm: 5, nn.GroupNorm: 5}.get(
          type(context.module), 0)
      total += per_element * math.prod(args[0].shape)
    return f(*args, **kwargs)

  variables = abstract_init(model, shape)
  with nn.intercept_methods(record):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables,
                   jax.ShapeDtypeStruct(shape, jnp.float32))
  return total


# ------------------------------------------------------------------ the GFLOPs table

# Table 10's printed GFLOPs for BN -> LN: a slip that repeats the next row's count
# (models/roadmap.py); the row itself is checked against 4.15 (../shared/REFERENCE.md).
TABLE_10_PRINTED_LN = 4.46


@pytest.mark.parametrize("name", [s.name for s in STEPS])
def test_gflops_table(name):
  ours, paper = _gmacs(name), PAPER[name]
  print(f"{name}: {ours:.4f} GMACs, paper {paper} ({100 * (ours - paper) / paper:+.2f}%)")
  assert abs(ours - paper) / paper < 0.02
  if name != "downsample":  # to the paper's two decimals (ConvNeXt-T: 4.456 vs 4.49)
    assert round(ours, 2) == paper


def test_the_bn_to_ln_row_and_what_the_paper_counted():
  # A norm changes no convolution: BN -> LN costs what "fewer norms" costs...
  assert _macs("ln") == _macs("fewer_norms")
  # ...and the 4.46 Table 10 prints for it is the next row's count (separate
  # downsampling, ConvNeXt-T).
  assert PAPER["ln"] == PAPER["fewer_norms"] == 4.15
  assert abs(_gmacs("downsample") - TABLE_10_PRINTED_LN) / TABLE_10_PRINTED_LN < 0.002
  # fvcore's norm FLOPs cannot close the gap (0.011G), and counting them would have moved
  # the BN rows off the paper's numbers: it counted convolutions and matrix products only.
  ln = create_model("roadmap_ln", num_classes=1000)
  assert fvcore_norm_flops(ln, IMAGENET) / 1e9 < 0.02
  r50 = create_model("roadmap_resnet50", num_classes=1000)
  with_norms = _gmacs("resnet50") + fvcore_norm_flops(r50, IMAGENET) / 1e9
  assert round(with_norms, 2) == 4.11 and round(_gmacs("resnet50"), 2) == 4.09


# ------------------------------------------------------------------ the two endpoints


@pytest.mark.parametrize("step,reference,count", [
    ("resnet50", "resnet50", 25_557_032), ("downsample", "convnext_t", 28_589_128)])
def test_endpoints_are_resnet50_and_convnext_t(step, reference, count):
  ours = _variables(step)
  theirs = abstract_init(create_model(reference, num_classes=1000), SMALL)
  assert count_params(ours["params"]) == count_params(theirs["params"]) == count
  # The same variables, names and shapes (BN statistics included), so weights load.
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  assert jax.tree.leaves(jax.tree.map(lambda a: a.shape, ours)) == jax.tree.leaves(
      jax.tree.map(lambda a: a.shape, theirs))
  assert _macs(step) == count_macs(create_model(reference, num_classes=1000), IMAGENET)


@pytest.mark.parametrize("step,reference,kwargs", [
    ("resnet50", "resnet50", dict(width=8, stage_sizes=(1, 1, 1, 1))),
    ("downsample", "convnext_t", dict(dims=(8, 16, 32, 64), depths=(1, 1, 1, 1)))])
def test_endpoints_compute_the_same_function(step, reference, kwargs):
  ref = create_model(reference, num_classes=10, **kwargs)
  ours = create_model(f"roadmap_{step}", num_classes=10, width=8, depths=(1, 1, 1, 1))

  def both(key, x):
    variables = ref.init(key, x, train=False)
    if step == "downsample":  # layer scale at 1e-6 would hide the blocks
      variables = jax.tree_util.tree_map_with_path(
          lambda p, v: jnp.full_like(v, 0.5) if p[-1].key == "gamma" else v, variables)
    return ours.apply(variables, x, train=False), ref.apply(variables, x, train=False)

  key, x = fast_key(0), jax.random.normal(fast_key(1), (2, 32, 32, 3))
  got, expected = compile_at_level_0(both, key, x)(key, x)
  assert np.std(expected) > 0.1
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ each step's change


def _blocks(p, stage: int) -> list[str]:
  return [k for k in p if k.startswith(f"stage{stage}_")]


def _gammas(p) -> int:
  return sum(v["layer_scale"]["gamma"].shape[0] for k, v in p.items() if "_block" in k)


def _gelu_count(name: str) -> int:
  """erfc calls in the traced forward pass (one per exact GELU) of the row's network
  with one block per stage."""
  model = create_model(f"roadmap_{name}", num_classes=10, depths=(1, 1, 1, 1))
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(
      abstract_init(model, SMALL), jax.ShapeDtypeStruct(SMALL, jnp.float32))

  def walk(j) -> int:
    n = 0
    for eqn in j.eqns:
      n += eqn.primitive.name == "erfc"
      for param in eqn.params.values():
        for sub in param if isinstance(param, (tuple, list)) else (param,):
          n += walk(sub.jaxpr) if hasattr(sub, "consts") else walk(sub) if hasattr(
              sub, "eqns") else 0
    return n

  return walk(jaxpr.jaxpr)


def _check_step(name: str, prev, p) -> None:
  """The change the paper describes, on the parameter trees of the row it builds on
  (``prev``) and of this row (``p``)."""
  b1, b2 = p["stage1_block1"], p["stage2_block1"]
  channels = sum(96 * 2**s * d for s, d in enumerate((3, 3, 9, 3)))  # ConvNeXt-T's C's
  if name == "recipe":  # layer scale on every block's output channels, nothing else
    assert count_params(p) - count_params(prev) == _gammas(p) == 15_104
    assert _macs(name) == _macs("resnet50")
  elif name == "stage_ratio":
    assert [len(_blocks(p, s)) for s in (1, 2, 3, 4)] == [3, 3, 9, 3]
    assert [len(_blocks(prev, s)) for s in (1, 2, 3, 4)] == [3, 4, 6, 3]
  elif name == "patchify":  # 7x7/2 conv + BN + max pool -> a 4x4/4 conv
    assert "conv1" in prev and "conv1" not in p and "stem_norm" not in p
    assert p["stem_conv"]["kernel"].shape == (4, 4, 3, 64)
    stem_macs = 112 * 112 * 7 * 7 * 3 * 64 - 56 * 56 * 4 * 4 * 3 * 64
    assert _macs("stage_ratio") - _macs(name) == stem_macs
  elif name == "depthwise":
    assert prev["stage1_block1"]["conv2"]["kernel"].shape == (3, 3, 64, 64)
    assert b1["conv2"]["kernel"].shape == (3, 3, 1, 64)
  elif name == "width":
    assert p["stem_conv"]["kernel"].shape == (4, 4, 3, 96)
    assert b1["conv2"]["kernel"].shape == (3, 3, 1, 96)
    assert p["stage4_block3"]["conv3"]["kernel"].shape == (1, 1, 768, 3072)
  elif name == "inverted":  # in/out C, hidden 4C (8C -> 2C where a stage starts)
    assert b1["conv1"]["kernel"].shape == (1, 1, 96, 384)
    assert b1["conv2"]["kernel"].shape == (3, 3, 1, 384)
    assert b1["conv3"]["kernel"].shape == (1, 1, 384, 96)
    assert b2["conv1"]["kernel"].shape == (1, 1, 96, 768)
    assert b2["proj_conv"]["kernel"].shape == (1, 1, 96, 192)
  elif name == "dw_up":  # depthwise (strided) on the input, then the two 1x1 layers
    assert b2["dwconv"]["kernel"].shape == (3, 3, 1, 96)
    assert b2["pwconv1"]["kernel"].shape == (96, 768)
    assert b2["pwconv2"]["kernel"].shape == (768, 192)
    assert {"bn1", "bn2", "bn3"} <= set(b2)
  elif name.startswith("kernel"):
    k = int(name[len("kernel"):])
    assert b1["dwconv"]["kernel"].shape == (k, k, 1, 96)
  elif name == "gelu":
    assert jax.tree.structure(p) == jax.tree.structure(prev)
    assert (_gelu_count("kernel7"), _gelu_count(name)) == (0, 3 * 4)  # 2 per branch + 1
  elif name == "fewer_acts":
    assert jax.tree.structure(p) == jax.tree.structure(prev)
    assert _gelu_count(name) == 4  # one per block, between the two 1x1 layers
  elif name == "fewer_norms":  # one norm (after the dwconv); the 1x1s gain biases
    assert {k for k in b1 if "bn" in k or "norm" in k} == {"norm"}
    assert "pwconv1" in b1 and "bias" in b1["pwconv1"] and "bias" not in b1["dwconv"]
    assert count_params(p) - count_params(prev) == -5 * channels
  elif name == "ln":  # same norm parameters, no statistics; the dwconv gains a bias
    assert "batch_stats" not in _variables(name) and "batch_stats" in _variables(BASE[name])
    assert b1["norm"]["scale"].shape == (96,) and "bias" in b1["dwconv"]
  elif name == "downsample":  # norm + 2x2/2 conv between stages; LN after stem and pool
    for s, c in ((2, 192), (3, 384), (4, 768)):
      assert p[f"downsample{s}_conv"]["kernel"].shape == (2, 2, c // 2, c)
    assert {"stem_norm", "head_norm"} <= set(p) and "proj_conv" not in b2
    assert b2["pwconv1"]["kernel"].shape == (192, 768)
  else:
    raise AssertionError(f"no check for step {name!r}")


@pytest.mark.parametrize("name", [s.name for s in STEPS[1:]])
def test_each_step_makes_the_papers_change(name):
  prev, p = _params(BASE[name]), _params(name)
  changed = {k for k in STEP_KWARGS[name] if STEP_KWARGS[BASE[name]].get(k) !=
             STEP_KWARGS[name][k]}
  assert changed == set(next(s for s in STEPS if s.name == name).changes)
  _check_step(name, prev, p)


# ------------------------------------------------------------------ small images


@pytest.mark.parametrize("name", [s.name for s in STEPS])
def test_small_resolution_shapes(name):
  model = create_model(f"roadmap_{name}", num_classes=10, drop_path_rate=0.1, **TINY)
  shape = (2, 32, 32, 1)  # Fashion-MNIST padded to 32
  variables = abstract_init(model, shape)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  y, state = jax.eval_shape(lambda v, x: model.apply(
      v, x, train=True, rngs={"dropout": jax.random.key(0)}, capture_intermediates=True,
      mutable=["batch_stats", "intermediates"]), variables, x)
  assert y.shape == (2, 10)
  last = state["intermediates"]["stage4_block1"]["__call__"][0]
  assert last.shape[1:3] == (2, 2)  # the proportions of 7x7 at 224


def test_bad_fields_are_errors():
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  for kwargs, match in [(dict(stem="vit"), "stem"), (dict(kernel_size=4), "odd"),
                        (dict(stem_stride=1), "ResNet stem"),
                        (dict(depthwise=True, groups=4), "depthwise"),
                        (dict(weight_init="zeros"), "weight_init")]:
    with pytest.raises(ValueError, match=match):
      jax.eval_shape(lambda x: ModernizedResNet(**{**TINY, **kwargs}).init(
          jax.random.key(0), x, train=False), x)


def test_tiny_train_step():
  """BatchNorm, depthwise-first blocks with in-block downsampling, layer scale, drop path:
  four Adam steps on a fixed batch (LN and separate downsampling are convnext_t's code
  path, trained in tests/test_convnext.py)."""
  model = create_model("roadmap_fewer_norms", num_classes=10, drop_path_rate=0.1,
                       **{**TINY, "depths": (1, 1)})  # two stages: a short compile
  initial, losses, final = train_on_fixed_batch(model, (32, 32, 3), steps=4, batch=16)
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
  np.testing.assert_array_equal(initial.params["stage1_block1"]["layer_scale"]["gamma"],
                                np.float32(1e-6))
  w = initial.params["stage2_block1"]["pwconv1"]["kernel"]  # trunc_normal(0.02), 8 x 64
  assert 0.012 < np.std(w) < 0.022
  assert not np.allclose(initial.batch_stats["stage2_block1"]["proj_bn"]["mean"],
                         final.batch_stats["stage2_block1"]["proj_bn"]["mean"])


# ------------------------------------------------------------------ config and sweep


@pytest.mark.parametrize("arg", [None, "tiny", "res=64,epochs=9"])
def test_sweep_has_one_run_per_step_that_applies(arg):
  sweep = roadmap_config.get_sweep(arg)
  assert [run["name"] for run in sweep] == [f"{i:02d}_{s.name}" for i, s in enumerate(STEPS)]
  for run, step in zip(sweep, STEPS):
    assert run["model"] == f"roadmap_{step.name}"
    # What the sweep tool does: every value through the command line's parser.
    config = config_lib.apply_overrides(
        roadmap_config.get_config(arg),
        [(k, str(v)) for k, v in run.items() if k != "name"])
    config_lib.validate(config)
    expected = roadmap_config.get_config(f"{arg},step={step.name}" if arg
                                         else f"step={step.name}")
    assert config.to_dict() == expected.to_dict()
  assert sweep[0]["optimizer"] == "sgd" and sweep[0]["schedule"] == "step"
  assert all(set(run) == {"name", "model"} for run in sweep[1:])


def test_cpu_variant_scales_each_rows_own_width_and_depths():
  sweep = roadmap_config.get_sweep("cpu")
  assert [run["name"] for run in sweep] == [f"{i:02d}_{s.name}" for i, s in enumerate(STEPS)]
  for run, step in zip(sweep, STEPS):
    config = config_lib.apply_overrides(
        roadmap_config.get_config("cpu"), [(k, str(v)) for k, v in run.items() if k != "name"])
    config_lib.validate(config)
    assert config.to_dict() == roadmap_config.get_config(f"cpu,step={step.name}").to_dict()
    kw, row = config.model_kwargs, STEP_KWARGS[step.name]
    # The paper's widths 64 / 96 and depths (3, 4, 6, 3) / (3, 3, 9, 3), scaled.
    assert kw.width == (12 if row.get("width") == 96 else 8)
    assert tuple(kw.depths) == ((1, 1, 3, 1) if row.get("depths") == (3, 3, 9, 3)
                                else (1, 1, 2, 1))
    assert (kw.stem_stride, config.pad, config.num_train_examples) == (4, 2, 4000)
    assert config.augment.rand_augment == "" and config.augment.mixup == 0
    assert config.optimizer == ("sgd" if step.name == "resnet50" else "adamw")
  # The two steps that change width and depth still change them at this scale.
  by_name = {run["name"][3:]: run for run in sweep}
  assert by_name["depthwise"]["model_kwargs.width"] == 8 and "model_kwargs.width" not in \
      by_name["width"]  # the base row (ConvNeXt-T) is at 12 already
  assert by_name["recipe"]["model_kwargs.depths"] == (1, 1, 2, 1)
  assert "model_kwargs.depths" not in by_name["stage_ratio"]
  for bad in ("cpu,tiny", "cpu,res=64", "cpu,cifar10"):
    with pytest.raises(ValueError, match="cpu is Fashion-MNIST at 32x32"):
      roadmap_config.get_config(bad)


def test_cpu_variant_builds_at_32_pixels():
  for name in ("resnet50", "depthwise", "kernel11", "downsample"):
    c = roadmap_config.get_config(f"cpu,step={name}")
    model = create_model(c.model, num_classes=10, **c.model_kwargs)
    variables = abstract_init(model, (2, 32, 32, 1))
    y = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables,
                       jax.ShapeDtypeStruct((2, 32, 32, 1), jnp.float32))
    assert y.shape == (2, 10)


def test_config_step_and_resolution():
  c = roadmap_config.get_config("step=kernel7,res=64")
  assert (c.model, c.image_size, c.model_kwargs.stem_stride) == ("roadmap_kernel7", 64, 4)
  c = roadmap_config.get_config(None)
  assert (c.model, c.pad, c.model_kwargs.stem_stride) == ("roadmap_downsample", 2, 2)
  assert c.dataset.endswith("fashion_mnist.npz") and c.optimizer == "adamw"
  with pytest.raises(ValueError, match="step=swin is not valid: step is one of resnet50, "):
    roadmap_config.get_config("step=swin")
