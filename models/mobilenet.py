"""MobileNet v1 and MobileNetV2: networks built from depthwise-separable convolutions.

MobileNet v1: Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications" (arXiv 1704.04861). It factorises a standard convolution into
a 3x3 *depthwise* convolution (one filter per input channel) and a 1x1 *pointwise*
convolution that mixes channels, each followed by BatchNorm and a nonlinearity: 8 to 9x
fewer multiply-adds than a 3x3 convolution at a small cost in accuracy. Two global
hyper-parameters trade accuracy for cost: the width multiplier alpha thins every layer
(alpha x channels; cost ~ alpha^2) and the resolution multiplier rho is simply the input
size (224, 192, 160, 128).

  Table 1 (224x224 input): conv 3x3/2 32 -> 13 depthwise-separable blocks (dw 3x3 +
  pw 1x1) with outputs 64, 128/2, 128, 256/2, 256, 512/2, 5 x 512, 1024/2, 1024 (/2: the
  depthwise conv has stride 2) -> global average pool (7x7) -> dropout -> fc -> softmax.

  Table 4 compares it with "Conv MobileNet", the same network with full convolutions:
  70.6% against 71.7% top-1 for 569M against 4866M multiply-adds and 4.2M against 29.3M
  parameters. ``separable=False`` is that network: each depthwise-separable block becomes
  one 3x3 convolution (same stride and output width) + BN + activation (Fig. 3, left).

MobileNetV2: Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks"
(CVPR 2018, arXiv 1801.04381). Its block is an *inverted residual*: a 1x1 conv expands a
thin input t-fold (expansion t = 6), a 3x3 depthwise conv filters the wide tensor, and a
1x1 *linear* conv (BatchNorm, no ReLU: a ReLU in the narrow space would destroy
information) projects back to a thin bottleneck; the shortcut joins the thin bottlenecks
(stride 1, same width), not the wide ones. ReLU6 everywhere else.

  Table 2 (224x224): conv 3x3/2 32 -> bottleneck sequences (t, c, n, s) = (1, 16, 1, 1),
  (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
  (6, 320, 1, 1) (n blocks of c channels, the first with stride s) -> conv 1x1 1280 ->
  global average pool -> dropout -> fc. 17 bottlenecks, 10 with a shortcut.

Variants (1000 classes, trainable parameters, BN statistics excluded; 224x224 top-1):

| variant          | alpha | params    | top-1 (source)                     |
|------------------|-------|-----------|------------------------------------|
| mobilenet_v1     | 1.0   | 4,231,976 | 70.6 (paper, Table 6)              |
| mobilenet_v1_075 | 0.75  | 2,585,560 | 68.4 (paper, Table 6)              |
| mobilenet_v1_050 | 0.5   | 1,331,592 | 63.7 (paper, Table 6)              |
| mobilenet_v1_025 | 0.25  | 470,072   | 50.6 (paper, Table 6)              |
| mobilenet_v2     | 1.0   | 3,504,872 | 72.0 (paper), 71.88 (torchvision)  |
| mobilenet_v2_075 | 0.75  | 2,636,424 | 69.8 (TF-slim checkpoint)          |
| mobilenet_v2_050 | 0.5   | 1,968,680 | 65.4 (TF-slim checkpoint)          |
| mobilenet_v2_140 | 1.4   | 6,108,776 | 74.7 (paper), 75.0 (TF-slim)       |

All counts equal timm's at the same multiplier (mobilenetv1_100; mobilenetv2_050, _075,
_100, _140) and, for v2, torchvision's ``mobilenet_v2(width_mult=alpha)``; v1 1.0 equals
Keras's ``MobileNet`` (its trainable parameters).

Choices:

* MobileNet v1 classifier: global average pool, dropout, then a dense layer with bias
  (TF-slim's 1x1 conv ``Conv2d_1c_1x1`` on the pooled 1x1 map is the same layer); with
  BatchNorm scale and offset on every conv this gives exactly 4,231,976. Dropout 0.001
  (TF-slim's ``dropout_keep_prob=0.999``; ``dropout`` field).
* MobileNet v1 activation: the paper's text says "batchnorm and ReLU", but the authors'
  released TF-slim code and its ImageNet checkpoints, Keras and timm (whose checkpoints
  our converter reads) all use ReLU6. Default ``relu6``; ``activation='relu'`` is the
  paper's text.
* MobileNet v1 width: TF-slim's rule ``max(int(alpha * c), 8)`` (the same channel counts
  as timm's ``make_divisible`` at the registered widths). Table 1 lists the 13th
  depthwise conv as "s2", a misprint: its input and output are both 7x7, so stride 1 (as
  in TF-slim). The stem is thinned with alpha too.
* Conv MobileNet (``separable=False``, Table 4): the paper does not describe its layers
  beyond "full convolutions"; we replace each block's depthwise 3x3 and pointwise 1x1
  (with their two BNs and activations) by one 3x3 convolution from the block's input
  width to its output width, with the depthwise conv's stride, one BN and one
  activation, under the block's own name (``dsconv{i}/full``). The stem and classifier
  are unchanged. At 224x224 and alpha 1 this is 4,867M multiply-adds (paper 4866M)
  and 29,294,088 parameters (paper 29.3M; the separable net: 569M, 4,231,976).
* Non-linear bottlenecks (``linear_bottleneck=False``, Fig. 6a's "ReLU6 in
  bottleneck"): ReLU6 after the projection conv's BN in every one of the 17 blocks, the
  first (t = 1) included, before the shortcut addition; the parameters are unchanged.
* MobileNetV2 width: every channel count ``make_divisible(alpha * c, 8)``
  (models.layers.make_divisible, as torchvision and timm); the last conv's 1280 is scaled
  only when alpha > 1; the hidden width of a block is ``round(t * in)``. Dropout 0.2
  before the classifier (torchvision; the paper does not say).
* Padding: 3x3 convs pad 1 on each side, at stride 2 too (PyTorch: torchvision, timm),
  not TF's asymmetric 'SAME' (0 before, 1 after on even inputs), so TF-trained weights
  would need that padding; any input size works.
* BatchNorm: eps 1e-5 (PyTorch default, torchvision and timm; the TF originals used 1e-3,
  a ``bn_epsilon`` field), momentum 0.9 in Flax's convention (= PyTorch 0.1; TF-slim used
  0.9997 for v1 and 0.997 for v2).
* Init (both) as torchvision's MobileNetV2: He normal in fan-out mode for every conv
  (for a depthwise 3x3 kernel fan-out = 9 x channels, as PyTorch computes it), BN scale
  1 and offset 0, classifier N(0, 0.01) with zero bias. (TF-slim v1: truncated normal
  0.09; timm: its own fan-out rule.)
* The depthwise convs are ``Conv(feature_group_count=channels)``: kernels (3, 3, 1, C).
  The paper puts "very little or no" weight decay on depthwise filters; our optimizer
  decays every leaf named ``kernel``, depthwise ones included.

Converters (``models.torch_convert.convert``): ``mobilenet_v2*`` read torchvision
(``features.N...``) or timm (``conv_stem``, ``blocks.i.j.conv_pw/conv_dw/conv_pwl``,
``conv_head``) state dicts; ``mobilenet_v1*`` read timm's ``mobilenetv1_100`` naming
(torchvision has no v1), into a model with ``activation='relu6'`` and eps 1e-5.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import register
from models import torch_convert as tc
from models.layers import (ACTIVATIONS, Conv, check_choice, check_dropout, check_positive,
                           get_activation, layer_ids_in_block_order, make_divisible)

Array = jax.Array
ModuleDef = Any

# He et al. 2015, fan-out mode: torchvision's MobileNetV2 init for every conv.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
classifier_init = nn.initializers.normal(0.01)
BOOLS = (True, False)  # the valid values of an on/off field


class ConvBN(nn.Module):
  """A k x k convolution (no bias), BatchNorm, then ``act`` (None: linear).

  ``groups == input channels`` makes it depthwise. Padding (k - 1) / 2 on each side.
  """

  features: int
  kernel_size: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  groups: int = 1
  act: Callable[[Array], Array] | None = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k, p = self.kernel_size, (self.kernel_size - 1) // 2
    x = self.conv(self.features, (k, k), self.strides, padding=((p, p), (p, p)),
                  feature_group_count=self.groups, name="conv")(x)
    x = self.norm(name="bn")(x)
    return x if self.act is None else self.act(x)


def layer_factories(dtype: Any, train: bool, epsilon: float) -> tuple[ModuleDef, ModuleDef]:
  conv = functools.partial(Conv, use_bias=False, kernel_init=he_normal_fan_out,
                           dtype=dtype, param_dtype=jnp.float32)
  norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=epsilon, dtype=dtype, param_dtype=jnp.float32)
  return conv, norm


def _check_common(model: nn.Module) -> None:
  """The options that MobileNet v1 and v2 share."""
  check_positive(model, "width_multiplier", model.width_multiplier)
  check_dropout(model, "dropout", model.dropout)
  check_positive(model, "bn_epsilon", model.bn_epsilon)


def _classifier(x: Array, num_classes: int, rate: float, train: bool, dtype: Any) -> Array:
  """Global average pool (in float32), dropout, fc."""
  x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(dtype)
  x = nn.Dropout(rate, deterministic=not train)(x)
  return nn.Dense(num_classes, kernel_init=classifier_init, bias_init=nn.initializers.zeros,
                  dtype=dtype, param_dtype=jnp.float32, name="fc")(x)


# ---------------------------------------------------------------------------------------
# MobileNet v1


# Table 1: the 13 depthwise-separable blocks as (pointwise output channels, stride).
MOBILENET_V1_BODY = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                     (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


class DepthwiseSeparable(nn.Module):
  """3x3 depthwise conv + BN + act, then 1x1 pointwise conv + BN + act (Fig. 3, right);
  with ``separable=False`` one full 3x3 conv + BN + act instead (Fig. 3, left: Table 4's
  "Conv MobileNet")."""

  features: int
  conv: ModuleDef
  norm: ModuleDef
  act: Callable[[Array], Array]
  strides: int = 1
  separable: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if not self.separable:
      return ConvBN(self.features, 3, self.conv, self.norm, self.strides, act=self.act,
                    name="full")(x)
    channels = x.shape[-1]
    x = ConvBN(channels, 3, self.conv, self.norm, self.strides, groups=channels,
               act=self.act, name="depthwise")(x)
    return ConvBN(self.features, 1, self.conv, self.norm, act=self.act, name="pointwise")(x)


class MobileNetV1(nn.Module):
  """MobileNet v1 (Table 1) with width multiplier ``width_multiplier`` (alpha)."""

  num_classes: int = 1000
  width_multiplier: float = 1.0
  min_depth: int = 8  # TF-slim's floor on thinned channel counts
  activation: str = "relu6"  # the paper's text: "relu"; its code and weights: relu6
  dropout: float = 0.001  # TF-slim: dropout_keep_prob 0.999
  bn_epsilon: float = 1e-5
  separable: bool = True  # False: full 3x3 convs, Table 4's "Conv MobileNet"
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    _check_common(self)
    check_positive(self, "min_depth", self.min_depth)
    check_choice(self, "activation", self.activation, ACTIVATIONS)
    check_choice(self, "separable", self.separable, BOOLS)

  def channels(self, c: int) -> int:
    return max(int(c * self.width_multiplier), self.min_depth)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    conv, norm = layer_factories(self.dtype, train, self.bn_epsilon)
    act = get_activation(self.activation)
    x = x.astype(self.dtype)
    x = ConvBN(self.channels(32), 3, conv, norm, strides=2, act=act, name="conv1")(x)
    for i, (c, s) in enumerate(MOBILENET_V1_BODY):
      x = DepthwiseSeparable(self.channels(c), conv, norm, act, s, self.separable,
                             name=f"dsconv{i + 1}")(x)
    return _classifier(x, self.num_classes, self.dropout, train, self.dtype)


# ---------------------------------------------------------------------------------------
# MobileNetV2


# Table 2: bottleneck sequences (expansion t, output channels c, repeats n, first stride s).
MOBILENET_V2_BOTTLENECKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


@dataclasses.dataclass(frozen=True)
class BottleneckSpec:
  """One inverted-residual block of the network, after the width multiplier."""
  name: str
  in_channels: int
  out_channels: int
  expansion: int
  strides: int

  @property
  def residual(self) -> bool:
    """The shortcut joins the bottlenecks only where their shapes agree (Fig. 4d)."""
    return self.strides == 1 and self.in_channels == self.out_channels


def mobilenet_v2_plan(width_multiplier: float = 1.0, divisor: int = 8
                      ) -> tuple[int, list[BottleneckSpec], int]:
  """(stem channels, the 17 bottlenecks, last conv channels) for a width multiplier."""
  stem = make_divisible(32 * width_multiplier, divisor)
  blocks, c_in = [], stem
  for seq, (t, c, n, s) in enumerate(MOBILENET_V2_BOTTLENECKS):
    c_out = make_divisible(c * width_multiplier, divisor)
    for i in range(n):
      blocks.append(BottleneckSpec(f"bottleneck{seq + 1}_{i + 1}", c_in, c_out, t,
                                   s if i == 0 else 1))
      c_in = c_out
  last = make_divisible(1280 * max(1.0, width_multiplier), divisor)
  return stem, blocks, last


class InvertedResidual(nn.Module):
  """Expand (1x1, ReLU6; absent for t = 1), depthwise 3x3 (ReLU6), project (1x1, linear;
  ``linear=False``: ReLU6 too, Fig. 6a's ablation), plus the input where stride is 1 and
  the widths agree (Table 1 of the V2 paper)."""

  features: int
  expansion: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  act: Callable[[Array], Array] = jax.nn.relu6
  linear: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c_in = x.shape[-1]
    hidden = int(round(c_in * self.expansion))
    y = x
    if self.expansion != 1:
      y = ConvBN(hidden, 1, self.conv, self.norm, act=self.act, name="expand")(y)
    y = ConvBN(hidden, 3, self.conv, self.norm, self.strides, groups=hidden, act=self.act,
               name="depthwise")(y)
    y = ConvBN(self.features, 1, self.conv, self.norm, act=None if self.linear else self.act,
               name="project")(y)
    if self.strides == 1 and c_in == self.features:
      y = y + x
    return y


class MobileNetV2(nn.Module):
  """MobileNetV2 (Table 2) with width multiplier ``width_multiplier`` (alpha)."""

  num_classes: int = 1000
  width_multiplier: float = 1.0
  dropout: float = 0.2  # torchvision
  bn_epsilon: float = 1e-5
  linear_bottleneck: bool = True  # False: ReLU6 after each projection (Fig. 6a)
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    _check_common(self)
    check_choice(self, "linear_bottleneck", self.linear_bottleneck, BOOLS)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    conv, norm = layer_factories(self.dtype, train, self.bn_epsilon)
    act = jax.nn.relu6
    stem, blocks, last = mobilenet_v2_plan(self.width_multiplier)
    x = x.astype(self.dtype)
    x = ConvBN(stem, 3, conv, norm, strides=2, act=act, name="conv1")(x)
    for b in blocks:
      x = InvertedResidual(b.out_channels, b.expansion, conv, norm, b.strides, act,
                           self.linear_bottleneck, name=b.name)(x)
    x = ConvBN(last, 1, conv, norm, act=act, name="conv2")(x)
    return _classifier(x, self.num_classes, self.dropout, train, self.dtype)


_BLOCK = re.compile(r"^dsconv(\d+)$|^bottleneck(\d+)_(\d+)$")


def layer_ids(names: Sequence[str]) -> tuple[dict[str, int], int]:
  """Layer groups for layer-wise learning-rate decay: the stem conv is layer 0, the blocks
  (v1's ``dsconv{i}``, v2's ``bottleneck{s}_{i}``) layers 1..L in network order (one per
  block, as timm's fine ``group_matcher``), the last conv and the classifier L + 1."""
  return layer_ids_in_block_order(names, _BLOCK, stem=("conv1",))


V1_WIDTHS = {"": 1.0, "_075": 0.75, "_050": 0.5, "_025": 0.25}
V2_WIDTHS = {"": 1.0, "_075": 0.75, "_050": 0.5, "_140": 1.4}
for _suffix, _alpha in V1_WIDTHS.items():
  register(f"mobilenet_v1{_suffix}", functools.partial(MobileNetV1, width_multiplier=_alpha),
           layer_groups=layer_ids)
for _suffix, _alpha in V2_WIDTHS.items():
  register(f"mobilenet_v2{_suffix}", functools.partial(MobileNetV2, width_multiplier=_alpha),
           layer_groups=layer_ids)


# ---------------------------------------------------------------------------------------
# PyTorch converters


def _conv_bn(sd: tc.StateDict, conv: str, bn: str) -> tuple[dict, dict]:
  """A PyTorch conv + BatchNorm pair -> our ConvBN's (params, batch_stats)."""
  bn_params, bn_stats = tc.batch_norm(sd, bn)
  return {"conv": tc.conv(sd, conv), "bn": bn_params}, {"bn": bn_stats}


def _timm_blocks(sd: tc.StateDict) -> list[tuple[int, int]]:
  """timm's ``blocks.i.j`` indices in network order."""
  found = {tuple(int(n) for n in k.split(".")[1:3]) for k in sd.keys()
           if k.startswith("blocks.")}
  return sorted(found)


def _check_model(model, cls: type, name: str) -> None:
  if model is None:
    return
  ok = isinstance(model, cls) and model.bn_epsilon == 1e-5
  if cls is MobileNetV1:
    ok = ok and model.activation == "relu6" and model.separable is True
    required = ", activation='relu6' and separable=True"
  else:
    ok = ok and model.linear_bottleneck is True
    required = " and linear_bottleneck=True"
  if not ok:
    raise tc.ConversionError(
        f"PyTorch {name} weights convert into a {cls.__name__} (create_model('{name}*')) "
        f"with bn_epsilon=1e-5{required}, not into a {type(model).__name__} with other "
        "options")


def _variables(params: dict, stats: dict) -> dict:
  # Copies: a state dict's arrays may share memory with the torch tensors.
  return {"params": jax.tree.map(np.array, params),
          "batch_stats": jax.tree.map(np.array, stats)}


@tc.register_converter(*(f"mobilenet_v1{s}" for s in V1_WIDTHS))
def convert_timm_mobilenet_v1(sd: tc.StateDict, model=None) -> dict:
  """timm's ``mobilenetv1_100`` state dict (``conv_stem``, ``blocks.i.j.conv_dw/conv_pw``,
  ``classifier``) -> variables of ``create_model('mobilenet_v1')``."""
  _check_model(model, MobileNetV1, "mobilenet_v1")
  tc.detect_source(sd, "mobilenet_v1", {"timm": "conv_stem.weight"})
  params, stats = {}, {}
  params["conv1"], stats["conv1"] = _conv_bn(sd, "conv_stem", "bn1")
  blocks = _timm_blocks(sd)
  if len(blocks) != len(MOBILENET_V1_BODY):
    raise tc.ConversionError(f"MobileNet v1 has {len(MOBILENET_V1_BODY)} depthwise-"
                             f"separable blocks; this checkpoint has {len(blocks)}")
  for n, (i, j) in enumerate(blocks):
    p, s = params.setdefault(f"dsconv{n + 1}", {}), stats.setdefault(f"dsconv{n + 1}", {})
    prefix = f"blocks.{i}.{j}"
    p["depthwise"], s["depthwise"] = _conv_bn(sd, f"{prefix}.conv_dw", f"{prefix}.bn1")
    p["pointwise"], s["pointwise"] = _conv_bn(sd, f"{prefix}.conv_pw", f"{prefix}.bn2")
  params["fc"] = tc.dense(sd, "classifier")
  return _variables(params, stats)


@tc.register_converter(*(f"mobilenet_v2{s}" for s in V2_WIDTHS))
def convert_mobilenet_v2(sd: tc.StateDict, model=None) -> dict:
  """torchvision's ``mobilenet_v2`` or timm's ``mobilenetv2_*`` state dict -> variables
  of ``create_model('mobilenet_v2...')`` (same width multiplier)."""
  _check_model(model, MobileNetV2, "mobilenet_v2")
  source = tc.detect_source(sd, "mobilenet_v2", {"torchvision": "features.0.0.weight",
                                                 "timm": "conv_stem.weight"})
  params, stats = {}, {}
  # Our bottleneck names in order, from Table 2's repeats.
  names = [(seq, i) for seq, (_, _, n, _) in enumerate(MOBILENET_V2_BOTTLENECKS)
           for i in range(n)]

  def put(block: str, layer: str, conv: str, bn: str) -> None:
    p, s = params.setdefault(block, {}), stats.setdefault(block, {})
    p[layer], s[layer] = _conv_bn(sd, conv, bn)

  if source == "torchvision":
    params["conv1"], stats["conv1"] = _conv_bn(sd, "features.0.0", "features.0.1")
    for k, (seq, i) in enumerate(names):
      block, f = f"bottleneck{seq + 1}_{i + 1}", f"features.{k + 1}.conv"
      layers = (["expand"] if MOBILENET_V2_BOTTLENECKS[seq][0] != 1 else []) + ["depthwise"]
      for n, layer in enumerate(layers):  # Conv2dNormActivation: .0 conv, .1 BN
        put(block, layer, f"{f}.{n}.0", f"{f}.{n}.1")
      n = len(layers)  # then the linear projection: a bare conv and a BN
      put(block, "project", f"{f}.{n}", f"{f}.{n + 1}")
    last = f"features.{len(names) + 1}"
    params["conv2"], stats["conv2"] = _conv_bn(sd, f"{last}.0", f"{last}.1")
    params["fc"] = tc.dense(sd, "classifier.1")
  else:
    params["conv1"], stats["conv1"] = _conv_bn(sd, "conv_stem", "bn1")
    for seq, i in names:
      block, f = f"bottleneck{seq + 1}_{i + 1}", f"blocks.{seq}.{i}"
      if MOBILENET_V2_BOTTLENECKS[seq][0] == 1:  # timm's DepthwiseSeparableConv
        put(block, "depthwise", f"{f}.conv_dw", f"{f}.bn1")
        put(block, "project", f"{f}.conv_pw", f"{f}.bn2")
      else:  # timm's InvertedResidual
        put(block, "expand", f"{f}.conv_pw", f"{f}.bn1")
        put(block, "depthwise", f"{f}.conv_dw", f"{f}.bn2")
        put(block, "project", f"{f}.conv_pwl", f"{f}.bn3")
    params["conv2"], stats["conv2"] = _conv_bn(sd, "conv_head", "bn2")
    params["fc"] = tc.dense(sd, "classifier")
  return _variables(params, stats)
