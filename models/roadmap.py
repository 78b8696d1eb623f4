"""The ConvNeXt roadmap: Liu et al. 2022, "A ConvNet for the 2020s" (CVPR 2022, arXiv
2201.03545), Sec. 2, Fig. 2 and Table 10: "modernizing" a ResNet-50 step by step into
ConvNeXt-T.

The paper starts from ResNet-50 (76.1% top-1, 78.8% with a Transformer-style training
recipe) and makes one change at a time towards the design of a Swin Transformer, keeping
each change that helps: the macro design (stage ratio 1:1:3:1, a "patchify" stem), the
ResNeXt idea (depthwise convolution, more width), the inverted bottleneck, a large kernel
(after moving the depthwise conv up), and the micro design (GELU, fewer activations,
fewer norms, LayerNorm, separate downsampling layers). The last step is ConvNeXt-T
(82.0%). Here every step is a field of one module, :class:`ModernizedResNet`, so a step
of the roadmap, or any other mix of its changes, is a config change.

One block, three layers (``conv1``/``conv2``/``conv3``; ``dwconv``/``pwconv1``/``pwconv2``
once the spatial conv moved up), each followed by a norm and the first two by an
activation, plus a shortcut; stage s (0-3) has width w_s = ``width`` x 2^s:

  ResNet layout (``spatial_conv_first`` False):
    1x1 conv -> norm -> act -> kxk conv (stride) -> norm -> act -> 1x1 conv -> norm
  moved up (True):
    kxk conv (stride) -> norm -> act -> 1x1 -> norm -> act -> 1x1 -> norm
  y = act(shortcut(x) + drop_path(layer_scale(branch(x)))), the shortcut the identity or,
  where the shape changes, a 1x1 conv with the block's stride and a norm.

  bottleneck:          in/out 4 w_s, hidden w_s     (ResNet)
  inverted_bottleneck: in/out w_s,   hidden 4 w_s   (MobileNetV2, Transformer MLP)
  fewer_activations:   only the activation after the second layer (between the two 1x1
                       layers once the depthwise conv moved up), none after the addition
  fewer_norms:         only the norm after the first layer (after the depthwise conv,
                       "before the conv 1x1 layers")
  separate_downsampling: norm + 2x2 stride-2 conv between stages (no strided block, so
                       no projection), a norm after the stem and after the pooling

Table 10 (1000 classes, 224x224; params: trainable, BN statistics excluded; GMACs:
``analysis.count_macs``, the multiply-adds of convolutions and matrix products;
paper: its GFLOPs (fvcore's multiply-adds) and ImageNet-1k top-1, mean of 3 seeds):

| model               | change                  |     params | GMACs | paper |   diff | top-1 |
|---------------------|-------------------------|------------|-------|-------|--------|-------|
| roadmap_resnet50    | ResNet-50 (= resnet50)  | 25,557,032 | 4.089 |  4.09 | -0.02% | 76.13 |
| roadmap_recipe      | + recipe (layer scale)  | 25,572,136 | 4.089 |  4.09 | -0.02% | 78.82 |
| roadmap_stage_ratio | stages (3,3,9,3)        | 28,646,184 | 4.526 |  4.53 | -0.09% | 79.36 |
| roadmap_patchify    | patchify stem 4x4/4     | 28,639,784 | 4.418 |  4.42 | -0.06% | 79.51 |
| roadmap_depthwise   | depthwise 3x3           | 15,740,264 | 2.350 |  2.35 | -0.02% | 78.28 |
| roadmap_width       | width 64 -> 96          | 33,787,432 | 5.268 |  5.27 | -0.04% | 80.50 |
| roadmap_inverted    | inverted bottleneck     | 25,858,024 | 4.644 |  4.64 | +0.09% | 80.64 |
| roadmap_dw_up       | depthwise conv moved up | 25,632,040 | 4.065 |  4.07 | -0.12% | 79.92 |
| roadmap_kernel5     | kernel 5 (branch)       | 25,727,272 | 4.097 |  4.10 | -0.07% | 80.35 |
| roadmap_kernel7     | kernel 7                | 25,870,120 | 4.146 |  4.15 | -0.11% | 80.57 |
| roadmap_kernel9     | kernel 9 (branch)       | 26,060,584 | 4.210 |  4.21 | +0.00% | 80.57 |
| roadmap_kernel11    | kernel 11 (branch)      | 26,298,664 | 4.291 |  4.29 | +0.01% | 80.47 |
| roadmap_gelu        | ReLU -> GELU            | 25,870,120 | 4.146 |  4.15 | -0.11% | 80.62 |
| roadmap_fewer_acts  | fewer activations       | 25,870,120 | 4.146 |  4.15 | -0.11% | 81.27 |
| roadmap_fewer_norms | fewer norms             | 25,837,000 | 4.146 |  4.15 | -0.11% | 81.41 |
| roadmap_ln          | BN -> LN                | 25,844,296 | 4.146 |  4.15 | -0.11% | 81.47 |
| roadmap_downsample  | separate downsampling   | 28,589,128 | 4.456 |  4.49 | -0.77% | 81.97 |

``roadmap_resnet50`` has exactly the variables (names and shapes) of ``resnet50`` and
``roadmap_downsample`` those of ``convnext_t``. Kernels 5, 9 and 11 are side branches:
the paper keeps 7, and the next row builds on ``roadmap_kernel7``. ``STEPS`` lists the
rows in this order with the paper's numbers; ``STEP_KWARGS`` gives each row's fields.

Counting. Rounded to two decimals as the paper prints them, ``count_macs`` gives the
paper's number on 16 of the 17 rows. Counting the norms as fvcore does (batch norm 2
FLOPs per element in eval, layer norm 5; ``fvcore_norm_flops`` in tests/test_roadmap.py)
gives it on one row only (ResNet-50 becomes 4.11, kernel 7 4.17), so the paper's counter
counted convolutions and matrix products only, as ``count_macs`` does. Two rows need a
word:

* BN -> LN: Table 10 prints 4.46 and Figure 2 labels the row 4.2; the row's count is
  4.15, the "fewer norms" row's (``STEPS`` holds 4.15, as ../shared/REFERENCE.md says to
  check). Changing a norm changes no convolution, so the two rows cost the same under
  any conv + matmul count; counting the norms the fvcore way adds 0.011G (4.157). The
  printed 4.46 is, to its precision, the conv + matmul count of the *next* row (4.456,
  ConvNeXt-T), whose separate downsampling adds exactly that 0.31G (three 2x2 stride-2
  convs and first blocks at full width, less the strided 1x1 shortcuts): a slip that
  repeats ConvNeXt-T's count. The tests check both: 4.15 for the row, and 4.46 as the
  next row's count.
* Separate downsampling (ConvNeXt-T): 4.456 against 4.49 (-0.8%, within 2%); Table 1
  gives 4.5 and fvcore counting its LayerNorms 4.47, so the last 0.02G is unexplained.

Choices where the paper is ambiguous (it publishes no code for the intermediate models):

* Stride. In-block downsampling puts the stride on the spatial conv (ResNet v1.5, as
  torchvision's ResNet-50 whose 4.09 GFLOPs is the first row), also once it moved up;
  the projection shortcut is a 1x1 stride-2 conv + norm. With this placement every row
  before BN -> LN matches the paper's GFLOPs to 0.12%.
* Inverted bottleneck: the hidden width is 4x the block's *output* width, so the first
  block of a stage maps C -> 8C -> 2C (the first 1x1 at the input resolution, the
  strided depthwise conv on the hidden width); this reproduces 4.64.
* Depthwise. "groups = channels" on the bottleneck's 3x3 (64 x 2^s channels, ResNet-50's
  widths) for 2.35; ``width`` 96 then widens every layer by 1.5x (5.27). ``groups``
  gives ResNeXt's grouped convs instead.
* Fewer activations / norms are defined by the paper on the moved-up block; on the
  ResNet layout the same positions are kept (activation after the second layer, norm
  after the first). The projection shortcut keeps its norm (the paper removes norms of
  the residual branch).
* Stem. The patchify stem is the 4x4 stride-4 conv alone ("replace the ResNet-style stem
  cell with a patchify layer"); its LayerNorm comes with separate downsampling, which the
  paper lists with "one after the stem" and "one after the final global average
  pooling". ``stem_stride`` 2 adapts both stems to small images (patchify 2x2/2; ResNet
  stem: the 7x7 conv at stride 1, then the 3x3/2 max pool).
* Layer scale (init 1e-6) and trunc-normal(0.02) init come with the "ConvNeXt training
  recipe" row (the paper's Table 5 lists layer scale among the training settings), so
  that row adds 15,104 parameters (one scale per block output channel) to ResNet-50 and
  the recipe's stochastic depth is ``drop_path_rate``, set by the config (0 here, as in
  models/convnext.py). The ResNet rows use ResNet's He (fan-out) init.
* Biases: a conv has a bias unless a BatchNorm follows it (ResNet has none, ConvNeXt's
  convs all have one; with LN the depthwise conv and the projection gain one).
* Names: the ResNet layout uses ResNet's layer names and 1x1 convs (``conv1..3``,
  ``bn1..3``, ``proj_conv``, ``fc``), the moved-up layout ConvNeXt's (``dwconv``,
  ``norm``, ``pwconv1``/``pwconv2`` as Dense layers, ``layer_scale``, ``head``), so the
  variables that the converters of models/resnet.py and models/convnext.py make from
  torchvision or timm checkpoints apply to the two endpoints unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import convnext, register
from models.layers import (ACTIVATIONS, NORMS, STAGE_BLOCK, Conv, DropPath, LayerScale,
                           check_choice, check_drop_path_rate, check_option, check_positive,
                           check_positive_entries, drop_path_rates, get_activation,
                           layer_ids_in_block_order, make_norm, max_pool, trunc_normal_02)
from models.resnet import he_normal_fan_out

Array = jax.Array
ModuleDef = Any

STEMS = ("resnet", "patchify")
INITS = ("he", "trunc_normal")


def _pad(k: int) -> tuple[tuple[int, int], tuple[int, int]]:
  return ((k // 2, k // 2), (k // 2, k // 2))


def _norm_name(kind: str, i: int) -> str:
  return f"bn{i}" if kind == "batch" else f"norm{i}"


class RoadmapBlock(nn.Module):
  """One residual block of the roadmap: three layers (1x1, kxk, 1x1; or kxk, 1x1, 1x1
  when ``spatial_conv_first``), their norms and activations, layer scale, drop path and
  a projection shortcut where the shape changes. ``conv``, ``dense`` and ``norm`` are
  factories from the network (init, dtype, train mode)."""

  features: int  # output channels
  hidden: int  # the output width of the branch's first 1x1 layer
  conv: ModuleDef
  dense: ModuleDef
  norm: ModuleDef
  norm_kind: str = "batch"
  strides: int = 1
  kernel_size: int = 3
  depthwise: bool = False
  groups: int = 1
  spatial_conv_first: bool = False
  act: Any = jax.nn.relu
  fewer_activations: bool = False
  fewer_norms: bool = False
  layer_scale_init: float | None = None
  drop_path: float = 0.0

  def _layer(self, i: int, y: Array, features: int, kind: str, strides: int) -> Array:
    """Layer ``i`` (1-3) of the branch: a ``spatial`` kxk conv or a ``pointwise`` 1x1."""
    biased = self.norm_kind != "batch" or (self.fewer_norms and i > 1)  # no bias before BN
    if kind == "spatial":
      k = self.kernel_size
      groups = y.shape[-1] if self.depthwise else self.groups
      if self.spatial_conv_first:
        name = "dwconv" if self.depthwise else "spatial_conv"
      else:
        name = f"conv{i}"
      return self.conv(features, (k, k), strides, padding=_pad(k), feature_group_count=groups,
                       use_bias=biased, name=name)(y)
    if self.spatial_conv_first:  # ConvNeXt's pointwise layers: Dense on NHWC = 1x1 conv
      return self.dense(features, use_bias=biased, name=f"pwconv{i - 1}")(y)
    return self.conv(features, (1, 1), padding="VALID", use_bias=biased, name=f"conv{i}")(y)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    if self.spatial_conv_first:  # kxk on the input width, then the two 1x1 layers
      layers = [("spatial", x.shape[-1], self.strides), ("pointwise", self.hidden, 1),
                ("pointwise", self.features, 1)]
    else:  # ResNet v1.5: the stride on the kxk conv
      layers = [("pointwise", self.hidden, 1), ("spatial", self.hidden, self.strides),
                ("pointwise", self.features, 1)]
    y = x
    for i, (kind, features, strides) in enumerate(layers, 1):
      y = self._layer(i, y, features, kind, strides)
      if not self.fewer_norms:
        y = self.norm(name=_norm_name(self.norm_kind, i))(y)
      elif i == 1:
        y = self.norm(name="norm")(y)
      if i == 2 or (i == 1 and not self.fewer_activations):
        y = self.act(y)
    if self.layer_scale_init:
      y = LayerScale(self.layer_scale_init, name="layer_scale")(y)
    y = DropPath(self.drop_path, name="drop_path")(y, deterministic=not train)
    shortcut = x
    if x.shape[-1] != self.features or self.strides != 1:
      shortcut = self.conv(self.features, (1, 1), self.strides, padding="VALID",
                           use_bias=self.norm_kind != "batch", name="proj_conv")(x)
      shortcut = self.norm(name="proj_bn" if self.norm_kind == "batch" else "proj_norm")(
          shortcut)
    y = shortcut + y
    return y if self.fewer_activations else self.act(y)


class ModernizedResNet(nn.Module):
  """ResNet-50 to ConvNeXt-T (Table 10): the defaults are ResNet-50 (v1.5), each field
  one step of the roadmap (see the module docstring for the block and the choices).

  ``width`` is the stem's and stage 1's width w_0 (64 in ResNet-50, 96 in ConvNeXt-T);
  stage s has w_s = w_0 x 2^s, and its blocks' in/out width is 4 w_s (bottleneck) or w_s
  (inverted bottleneck, hidden 4 w_s).
  """

  num_classes: int = 1000
  depths: Sequence[int] = (3, 4, 6, 3)  # stage ratio: (3, 3, 9, 3)
  width: int = 64  # 96
  stem: str = "resnet"  # resnet (7x7/2 conv, norm, act, 3x3/2 max pool) | patchify
  stem_stride: int = 4  # 2 for small images (see the module docstring)
  depthwise: bool = False  # groups = channels in the kxk conv ("ResNeXt-ify")
  groups: int = 1  # ResNeXt's grouped kxk conv, when not depthwise
  inverted_bottleneck: bool = False
  spatial_conv_first: bool = False  # "moving up depthwise conv layer"
  kernel_size: int = 3  # 3 / 5 / 7 / 9 / 11
  activation: str = "relu"  # gelu
  fewer_activations: bool = False
  fewer_norms: bool = False
  norm: str = "batch"  # layer
  separate_downsampling: bool = False
  layer_scale_init: float | None = None  # 1e-6 from the recipe row on
  drop_path_rate: float = 0.0  # stochastic depth (the recipe's; set by the config)
  weight_init: str = "he"  # he (ResNet's fan-out normal) | trunc_normal (0.02, ConvNeXt's)
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_positive_entries(self, "depths", self.depths)
    check_positive(self, "width", self.width)
    check_choice(self, "stem", self.stem, STEMS)
    resnet_stem = self.stem == "resnet"
    check_option(self.stem_stride in (2, 4) if resnet_stem else self.stem_stride > 0, self,
                 "stem_stride", self.stem_stride,
                 "4, or 2 for small images, with the ResNet stem; > 0 with the patchify stem")
    check_positive(self, "groups", self.groups)
    check_option(not (self.depthwise and self.groups != 1), self, "groups", self.groups,
                 "1 when depthwise=True (depthwise sets the groups = channels)")
    check_option(self.kernel_size > 0 and self.kernel_size % 2 == 1, self, "kernel_size",
                 self.kernel_size, "odd sizes > 0 (padding k // 2)")
    check_choice(self, "activation", self.activation, ACTIVATIONS)
    check_choice(self, "norm", self.norm, NORMS)
    check_positive(self, "layer_scale_init", self.layer_scale_init, off="no layer scale")
    check_drop_path_rate(self, "drop_path_rate", self.drop_path_rate)
    check_choice(self, "weight_init", self.weight_init, INITS)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    if self.weight_init == "he":
      kernel_init, head_init = he_normal_fan_out, nn.initializers.lecun_normal()
    else:
      kernel_init = head_init = trunc_normal_02
    conv = functools.partial(Conv, kernel_init=kernel_init, bias_init=nn.initializers.zeros,
                             dtype=self.dtype, param_dtype=jnp.float32)
    dense = functools.partial(nn.Dense, kernel_init=kernel_init,
                              bias_init=nn.initializers.zeros, dtype=self.dtype,
                              param_dtype=jnp.float32)
    norm = make_norm(self.norm, train=train, dtype=self.dtype)
    act = get_activation(self.activation)
    batch_norm = self.norm == "batch"

    x = x.astype(self.dtype)
    if self.stem == "resnet":
      x = conv(self.width, (7, 7), self.stem_stride // 2, padding=_pad(7),
               use_bias=not batch_norm, name="conv1")(x)
      x = act(norm(name=_norm_name(self.norm, 1))(x))
      x = max_pool(x, 3, 2, pad=1)
    else:  # non-overlapping patches, as a ViT's patch embedding
      p = self.stem_stride
      x = conv(self.width, (p, p), p, padding="VALID",
               use_bias=not (self.separate_downsampling and batch_norm), name="stem_conv")(x)
      if self.separate_downsampling:
        x = norm(name="stem_norm")(x)

    rates = drop_path_rates(self.drop_path_rate, tuple(self.depths))
    for stage, depth in enumerate(self.depths):
      w = self.width * 2**stage
      features, hidden = (w, 4 * w) if self.inverted_bottleneck else (4 * w, w)
      if stage > 0 and self.separate_downsampling:
        x = norm(name=f"downsample{stage + 1}_norm")(x)
        x = conv(features, (2, 2), 2, padding="VALID", name=f"downsample{stage + 1}_conv")(x)
      for b in range(depth):
        strided = stage > 0 and b == 0 and not self.separate_downsampling
        x = RoadmapBlock(
            features=features, hidden=hidden, conv=conv, dense=dense, norm=norm,
            norm_kind=self.norm, strides=2 if strided else 1, kernel_size=self.kernel_size,
            depthwise=self.depthwise, groups=self.groups,
            spatial_conv_first=self.spatial_conv_first, act=act,
            fewer_activations=self.fewer_activations, fewer_norms=self.fewer_norms,
            layer_scale_init=self.layer_scale_init, drop_path=rates[stage][b],
            name=f"stage{stage + 1}_block{b + 1}")(x, train)
    x = jnp.mean(x, axis=(1, 2))
    if self.separate_downsampling:
      x = norm(name="head_norm")(x)
    return nn.Dense(self.num_classes, kernel_init=head_init, bias_init=nn.initializers.zeros,
                    dtype=self.dtype, param_dtype=jnp.float32,
                    name="head" if self.separate_downsampling else "fc")(x)


@dataclasses.dataclass(frozen=True)
class Step:
  """A row of Table 10: what changes from the row it builds on, and the paper's numbers."""

  name: str  # registered as roadmap_<name>
  label: str
  changes: dict[str, Any]
  gflops: float  # the paper's
  top1: float  # the paper's, ImageNet-1k
  branch: bool = False  # a side branch (kernels 5, 9, 11): the next row does not build on it


STEPS: tuple[Step, ...] = (
    Step("resnet50", "ResNet-50, classic recipe", {}, 4.09, 76.13),
    Step("recipe", "+ ConvNeXt training recipe",
         dict(layer_scale_init=1e-6, weight_init="trunc_normal"), 4.09, 78.82),
    Step("stage_ratio", "stage ratio (3,3,9,3)", dict(depths=(3, 3, 9, 3)), 4.53, 79.36),
    Step("patchify", "patchify stem (4x4, stride 4)", dict(stem="patchify"), 4.42, 79.51),
    Step("depthwise", "depthwise conv", dict(depthwise=True), 2.35, 78.28),
    Step("width", "width 64 -> 96", dict(width=96), 5.27, 80.50),
    Step("inverted", "inverted bottleneck", dict(inverted_bottleneck=True), 4.64, 80.64),
    Step("dw_up", "move depthwise conv up", dict(spatial_conv_first=True), 4.07, 79.92),
    Step("kernel5", "kernel 5", dict(kernel_size=5), 4.10, 80.35, branch=True),
    Step("kernel7", "kernel 7", dict(kernel_size=7), 4.15, 80.57),
    Step("kernel9", "kernel 9", dict(kernel_size=9), 4.21, 80.57, branch=True),
    Step("kernel11", "kernel 11", dict(kernel_size=11), 4.29, 80.47, branch=True),
    Step("gelu", "ReLU -> GELU", dict(activation="gelu"), 4.15, 80.62),
    Step("fewer_acts", "fewer activations", dict(fewer_activations=True), 4.15, 81.27),
    Step("fewer_norms", "fewer norms", dict(fewer_norms=True), 4.15, 81.41),
    Step("ln", "BN -> LN", dict(norm="layer"), 4.15, 81.47),  # Table 10 prints 4.46: above
    Step("downsample", "separate downsampling layers (= ConvNeXt-T)",
         dict(separate_downsampling=True), 4.49, 81.97),
)


def _step_kwargs() -> dict[str, dict[str, Any]]:
  """Each step's fields: the changes of every non-branch row up to it, then its own."""
  out, base = {}, {}
  for step in STEPS:
    out[step.name] = {**base, **step.changes}
    if not step.branch:
      base = out[step.name]
  return out


STEP_KWARGS = _step_kwargs()


def layer_ids(names: Sequence[str]) -> tuple[dict[str, int], int]:
  """Layer groups for layer-wise learning-rate decay. With ConvNeXt's layout (a patchify
  stem and separate downsampling layers: the last row, ConvNeXt-T) ConvNeXt's official
  assignment (models.convnext.layer_ids); before it ResNet's: the stem layer 0, the
  blocks 1..L in network order, the head L + 1."""
  if (any(n.startswith("downsample") for n in names)
      and any(n.startswith("stem_") for n in names)):
    return convnext.layer_ids(names)
  return layer_ids_in_block_order(
      names, STAGE_BLOCK, stem=("conv1", "bn1", "norm1", "stem_conv", "stem_norm"))


for _name, _kw in STEP_KWARGS.items():
  register(f"roadmap_{_name}", functools.partial(ModernizedResNet, **_kw),
           layer_groups=layer_ids)
