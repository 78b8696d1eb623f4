"""ConvNeXt: Liu et al. 2022, "A ConvNet for the 2020s" (CVPR 2022, arXiv 2201.03545).

The paper modernises a ResNet-50 step by step towards a Swin Transformer's design
(Table 10: 76.1% -> 82.0% top-1 at the same cost) and shows that a pure ConvNet built
that way matches hierarchical vision Transformers: a patchify stem, a (1:1:3:1) stage
ratio, depthwise convolutions with a large (7x7) kernel, an inverted bottleneck, fewer
activations (one GELU per block) and fewer norms (one LayerNorm per block), LayerNorm
instead of BatchNorm, and separate downsampling layers. It also brought the Transformer
training recipe (AdamW, 300 epochs, heavy augmentation, stochastic depth, layer scale,
EMA) to ConvNets.

Architecture (Sec. 2 and Fig. 4; NHWC here):

  stem: 4x4 conv stride 4 (C1 channels, "patchify") -> LayerNorm
  stage 1: d1 ConvNeXt blocks at C1 channels (H/4)
  downsample: LayerNorm -> 2x2 conv stride 2 (C2) -> stage 2: d2 blocks (H/8)
  downsample -> stage 3: d3 blocks (H/16); downsample -> stage 4: d4 blocks (H/32)
  head: global average pool -> LayerNorm -> linear classifier

  block(x) = x + DropPath(gamma * pwconv2(GELU(pwconv1(LN(dwconv7x7(x))))))

  dwconv: 7x7 depthwise conv (padding 3, with bias); pwconv1/pwconv2: the inverted
  bottleneck C -> 4C -> C as linear layers on each pixel (a Dense on NHWC is a 1x1
  conv); gamma: layer scale (Touvron et al. 2021, CaiT), per channel, initialised to
  1e-6; DropPath: stochastic depth (Huang et al. 2016), the whole residual branch of an
  example dropped with a rate rising linearly from 0 at the first block to
  ``drop_path_rate`` at the last.

Variants (1000 classes, 224x224; counts = torchvision's and timm's, REFERENCE.md):

| variant    | depths        | dims                  | params      | GFLOPs | top-1 (paper) |
|------------|---------------|-----------------------|-------------|--------|---------------|
| convnext_t | (3, 3, 9, 3)  | (96, 192, 384, 768)   | 28,589,128  | 4.5    | 82.1          |
| convnext_s | (3, 3, 27, 3) | (96, 192, 384, 768)   | 50,223,688  | 8.7    | 83.1          |
| convnext_b | (3, 3, 27, 3) | (128, 256, 512, 1024) | 88,591,464  | 15.4   | 83.8          |
| convnext_l | (3, 3, 27, 3) | (192, 384, 768, 1536) | 197,767,336 | 34.4   | 84.3          |

The paper trains T/S/B/L with stochastic-depth rates 0.1/0.4/0.5/0.5 (Table 5 and
Appendix A.1). Those are set by configs/convnext_t.py (``size=``), not by the registered
models, whose ``drop_path_rate`` is 0: a model built for evaluation or fine-tuning does
not silently carry a training regulariser.

Choices:

* Layer order and names follow the official code (facebookresearch/ConvNeXt, which
  torchvision and timm reproduce): ``dwconv``, ``norm``, ``pwconv1``, ``pwconv2``,
  ``layer_scale`` (param ``gamma``) in a block; the downsampling LayerNorm comes before
  its conv, and the head's LayerNorm after the pooling. Both libraries' checkpoints load
  through the converter below.
* LayerNorm is over the channel axis only, eps 1e-6 (``make_norm('layer')``), as the
  official code's channels-last / channels-first LayerNorm; GELU is the exact (erf) one.
* Init as the official code: trunc_normal(0.02) conv and linear kernels, zero biases,
  LayerNorm scale 1 and bias 0; the classifier's kernel (and zero bias) multiplied by
  ``head_init_scale`` (1.0 for ImageNet-1k training; the paper uses 0.001 when
  fine-tuning at 384). Flax's truncated normal cuts at +-2 std, PyTorch's at +-2
  absolute (see layers.trunc_normal_02).
* ``layer_scale_init`` 0 or None removes layer scale (and its parameters: the count of
  convnext_t falls by 6,624). ``kernel_size`` (7) sets the depthwise kernel for the
  Table 10 kernel-size ablation (3/5/7/9/11, padding k // 2).
* Weight decay: the official optimiser skips 1-D parameters (biases, LayerNorm, gamma);
  this project decays only leaves named ``kernel``, which is the same set.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import register
from models import torch_convert as tc
from models.layers import (STAGE_BLOCK, Conv, DropPath, LayerScale, check_drop_path_rate,
                           check_option, check_positive, check_positive_entries, check_same_length,
                           drop_path_rates, get_activation, make_norm, trunc_normal_02)

Array = jax.Array


def _scaled(init, scale: float):
  """``init`` multiplied by ``scale`` (the official ``head.weight.mul_(head_init_scale)``)."""
  if scale == 1.0:
    return init
  return lambda key, shape, dtype=jnp.float32: init(key, shape, dtype) * scale


class ConvNeXtBlock(nn.Module):
  """One ConvNeXt block (Fig. 4, right): dwconv 7x7 -> LN -> 4x linear -> GELU -> linear
  -> layer scale -> drop path, plus the identity shortcut."""

  dim: int
  kernel_size: int = 7
  drop_path: float = 0.0
  layer_scale_init: float | None = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    dense = functools.partial(nn.Dense, kernel_init=trunc_normal_02,
                              bias_init=nn.initializers.zeros, dtype=self.dtype,
                              param_dtype=jnp.float32)
    k = self.kernel_size
    shortcut = x
    x = Conv(self.dim, (k, k), padding=((k // 2, k // 2), (k // 2, k // 2)),
             feature_group_count=self.dim, kernel_init=trunc_normal_02,
             bias_init=nn.initializers.zeros, dtype=self.dtype, param_dtype=jnp.float32,
             name="dwconv")(x)
    x = make_norm("layer", train=train, dtype=self.dtype)(name="norm")(x)
    x = dense(4 * self.dim, name="pwconv1")(x)
    x = get_activation("gelu")(x)
    x = dense(self.dim, name="pwconv2")(x)
    if self.layer_scale_init:
      x = LayerScale(self.layer_scale_init, name="layer_scale")(x)
    x = DropPath(self.drop_path, name="drop_path")(x, deterministic=not train)
    return shortcut + x


class ConvNeXt(nn.Module):
  """ConvNeXt (Sec. 2): patchify stem, four stages of ConvNeXt blocks with separate
  downsampling layers between them, pooled LayerNorm head."""

  num_classes: int = 1000
  depths: Sequence[int] = (3, 3, 9, 3)
  dims: Sequence[int] = (96, 192, 384, 768)
  drop_path_rate: float = 0.0
  layer_scale_init: float | None = 1e-6
  kernel_size: int = 7
  head_init_scale: float = 1.0
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_positive_entries(self, "depths", self.depths)
    check_positive_entries(self, "dims", self.dims)
    check_same_length(self, "dims", self.dims, "depths", self.depths)
    check_drop_path_rate(self, "drop_path_rate", self.drop_path_rate)
    check_positive(self, "layer_scale_init", self.layer_scale_init, off="no layer scale")
    check_option(self.kernel_size > 0 and self.kernel_size % 2 == 1, self, "kernel_size",
                 self.kernel_size, "odd sizes > 0 (padding k // 2)")

  def block_drop_path_rates(self) -> list[list[float]]:
    """The stochastic-depth rate of every block, by stage: linear in the block's index
    over the whole network, 0 at the first block, ``drop_path_rate`` at the last."""
    return drop_path_rates(self.drop_path_rate, tuple(self.depths))

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    conv = functools.partial(Conv, padding="VALID", kernel_init=trunc_normal_02,
                             bias_init=nn.initializers.zeros, dtype=self.dtype,
                             param_dtype=jnp.float32)
    norm = make_norm("layer", train=train, dtype=self.dtype)
    x = x.astype(self.dtype)
    rates = self.block_drop_path_rates()
    for stage, (depth, dim) in enumerate(zip(self.depths, self.dims)):
      if stage == 0:  # patchify stem: non-overlapping 4x4 patches
        x = conv(dim, (4, 4), strides=4, name="stem_conv")(x)
        x = norm(name="stem_norm")(x)
      else:  # separate downsampling layer between stages
        x = norm(name=f"downsample{stage + 1}_norm")(x)
        x = conv(dim, (2, 2), strides=2, name=f"downsample{stage + 1}_conv")(x)
      for block in range(depth):
        x = ConvNeXtBlock(dim, kernel_size=self.kernel_size, drop_path=rates[stage][block],
                          layer_scale_init=self.layer_scale_init, dtype=self.dtype,
                          name=f"stage{stage + 1}_block{block + 1}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    x = norm(name="head_norm")(x)
    return nn.Dense(self.num_classes, kernel_init=_scaled(trunc_normal_02, self.head_init_scale),
                    bias_init=nn.initializers.zeros, dtype=self.dtype, param_dtype=jnp.float32,
                    name="head")(x)


VARIANTS = {
    "convnext_t": dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
    "convnext_s": dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
    "convnext_b": dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
    "convnext_l": dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536)),
}
# The paper's stochastic-depth rates for ImageNet-1k training (set by the config).
PAPER_DROP_PATH_RATES = {"convnext_t": 0.1, "convnext_s": 0.4, "convnext_b": 0.5,
                         "convnext_l": 0.5}

_DOWNSAMPLE = re.compile(r"^downsample(\d+)_")
NUM_LAYER_GROUPS = 12  # the official code's num_layers for layer decay


def layer_ids(names: Sequence[str]) -> tuple[dict[str, int], int]:
  """Layer groups for layer-wise learning-rate decay: the official code's assignment
  (``get_num_layer_for_convnext`` in facebookresearch/ConvNeXt's optim_factory.py), 12
  layers for any depth. The stem is layer 0; stages 1 and 2 are layers 1 and 2; stage 3
  takes layers 3.. in groups of three blocks; stage 4 is layer 12; each downsampling layer
  joins the stage it feeds (the last one layer 12); the head and its norm are layer 13.
  """
  ids = {}
  for n in names:
    if n.startswith("stem_"):
      ids[n] = 0
    elif m := _DOWNSAMPLE.match(n):
      stage = int(m.group(1))  # downsampleS feeds stage S (1-based)
      ids[n] = stage if stage < 4 else NUM_LAYER_GROUPS
    elif m := STAGE_BLOCK.match(n):
      stage, block = int(m.group(1)), int(m.group(2))
      ids[n] = {1: 1, 2: 2, 4: NUM_LAYER_GROUPS}.get(stage, 3 + (block - 1) // 3)
    else:
      ids[n] = NUM_LAYER_GROUPS + 1
  return ids, NUM_LAYER_GROUPS


for _name, _kw in VARIANTS.items():
  register(_name, functools.partial(ConvNeXt, **_kw), layer_groups=layer_ids)


# ---------------------------------------------------------------------------------------
# PyTorch checkpoints: torchvision's convnext_{tiny,small,base,large} and timm's
# convnext_{tiny,small,base,large} (the official code's layout renamed).

# Our block's layers -> (torchvision suffix, timm suffix) under a block's prefix.
_BLOCK_LAYERS = {"dwconv": ("block.0", "conv_dw"), "norm": ("block.2", "norm"),
                 "pwconv1": ("block.3", "mlp.fc1"), "pwconv2": ("block.5", "mlp.fc2")}


def torch_names(source: str):
  """torchvision's or timm's ConvNeXt names: ``(names, stage_prefix(s),
  down_prefix(s), gamma_key, layer_index)``; the converter and the exporter share it."""
  if source == "torchvision":
    names = {"stem_conv": "features.0.0", "stem_norm": "features.0.1",
             "head_norm": "classifier.0", "head": "classifier.2"}
    return (names, lambda s: f"features.{2 * s + 1}", lambda s: f"features.{2 * s}",
            "layer_scale", 0)
  names = {"stem_conv": "stem.0", "stem_norm": "stem.1", "head_norm": "head.norm",
           "head": "head.fc"}
  return (names, lambda s: f"stages.{s}.blocks", lambda s: f"stages.{s}.downsample",
          "gamma", 1)


@tc.register_converter(*VARIANTS)
def convert_convnext(sd: tc.StateDict, model=None) -> dict:
  """A torchvision or timm ConvNeXt state dict -> variables of ``create_model('convnext_*')``.

  torchvision: ``features.0.{0,1}`` stem conv and LayerNorm, ``features.{1,3,5,7}.k``
  blocks (``block.{0,2,3,5}``, ``layer_scale`` of shape (C, 1, 1)), ``features.{2,4,6}
  .{0,1}`` downsampling LayerNorm and conv, ``classifier.{0,2}`` LayerNorm and linear.
  timm: ``stem.{0,1}``, ``stages.i.downsample.{0,1}``, ``stages.i.blocks.j.{conv_dw,
  norm, mlp.fc1, mlp.fc2, gamma}``, ``head.{norm,fc}``. Depths are read from the
  checkpoint; ``convert(..., model=, input_shape=)`` checks them against the model.
  """
  if model is not None and not (isinstance(model, ConvNeXt) and model.kernel_size == 7):
    raise tc.ConversionError("torchvision's and timm's ConvNeXt convert into a "
                             "create_model('convnext_*') with kernel_size=7")
  source = tc.detect_source(sd, "convnext", {"torchvision": "features.0.0.weight",
                                             "timm": "stem.0.weight"})
  names, stage_prefix, down_prefix, gamma_key, layer_index = torch_names(source)

  def depth(s: int) -> int:
    n = 0
    while f"{stage_prefix(s)}.{n}.{_BLOCK_LAYERS['dwconv'][layer_index]}.weight" in sd:
      n += 1
    return n

  depths = [depth(s) for s in range(4)]
  if model is not None and tuple(depths) != tuple(model.depths):
    raise tc.ConversionError(f"the checkpoint has depths {tuple(depths)}, the model "
                             f"{tuple(model.depths)}: convert into the matching convnext_*")
  with_gamma = (bool(model.layer_scale_init) if model is not None
                else f"{stage_prefix(0)}.0.{gamma_key}" in sd)

  params: dict[str, Any] = {"stem_conv": tc.conv(sd, names["stem_conv"]),
                            "stem_norm": tc.layer_norm(sd, names["stem_norm"])}
  for s, d in enumerate(depths):
    if s > 0:
      params[f"downsample{s + 1}_norm"] = tc.layer_norm(sd, f"{down_prefix(s)}.0")
      params[f"downsample{s + 1}_conv"] = tc.conv(sd, f"{down_prefix(s)}.1")
    for b in range(d):
      prefix = f"{stage_prefix(s)}.{b}"
      theirs = {ours: f"{prefix}.{pair[layer_index]}" for ours, pair in _BLOCK_LAYERS.items()}
      p = {"dwconv": tc.conv(sd, theirs["dwconv"]),
           "norm": tc.layer_norm(sd, theirs["norm"]),
           "pwconv1": tc.dense(sd, theirs["pwconv1"]),
           "pwconv2": tc.dense(sd, theirs["pwconv2"])}
      if with_gamma:
        p["layer_scale"] = {"gamma": sd.get(f"{prefix}.{gamma_key}").reshape(-1)}
      params[f"stage{s + 1}_block{b + 1}"] = p
  params["head_norm"] = tc.layer_norm(sd, names["head_norm"])
  params["head"] = tc.dense(sd, names["head"])
  # Copies: the arrays may share memory with the torch tensors.
  return {"params": jax.tree.map(np.array, params)}
