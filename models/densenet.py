"""DenseNet: Huang, Liu, van der Maaten & Weinberger 2016, "Densely Connected
Convolutional Networks" (CVPR 2017 best paper, arXiv 1608.06993).

Dense connectivity: inside a dense block every layer receives the concatenation of the
feature maps of all layers before it, x_l = H_l([x_0, x_1, ..., x_{l-1}]), and adds only
``k`` (the growth rate) new maps of its own. Features are reused instead of relearned, so
a DenseNet needs far fewer parameters than a ResNet of the same accuracy (DenseNet-201,
20M parameters, matches ResNet-101, over 40M), and every layer has a short path to the
loss. DenseNet-BC adds bottleneck layers (B) and compressing transitions (C).

Architecture (pre-activation throughout: every conv is preceded by BN and ReLU):

  stem -> dense block 1 -> transition 1 -> ... -> dense block B -> BN -> ReLU -> global
  average pool -> linear classifier

* Dense layer H_l: BN-ReLU-conv 3x3 (k maps, padding 1); with the bottleneck ("-B"),
  BN-ReLU-conv 1x1 (``bn_size`` x k = 4k maps)-BN-ReLU-conv 3x3 (k maps). Its output is
  concatenated to its input along channels, so a block of n layers on c0 channels ends
  with c0 + n k.
* Transition between blocks: BN-ReLU-conv 1x1 to floor(theta m) channels (compression
  theta, "-C"; 0.5 in DenseNet-BC) -> 2x2/2 average pool.
* ImageNet stem (Table 1): conv 7x7/2 with 2k maps -> BN -> ReLU -> max pool 3x3/2
  (padding 1); four blocks on 56, 28, 14 and 7 pixel maps (224 input).
* CIFAR stem (Sec. 3, "Implementation Details"): one conv 3x3 (16 maps, 2k for
  DenseNet-BC), nothing else (the first dense layer's BN-ReLU follows); three blocks of
  equal size on 32x32, 16x16 and 8x8 maps. Depth L counts the stem conv, the 3x3 (and
  1x1) convs, the two transition convs and the classifier: n = (L - 4) / 3 layers per
  block, half that with bottlenecks.

Variants (trainable parameters; BN statistics excluded):

| name               | stem     | k  | blocks          | init | classes | params     | ref.   |
|--------------------|----------|----|-----------------|------|---------|------------|--------|
| densenet121        | ImageNet | 32 | 6, 12, 24, 16   | 64   | 1000    | 7,978,856  | 8.0M   |
| densenet169        | ImageNet | 32 | 6, 12, 32, 32   | 64   | 1000    | 14,149,480 | 14.1M  |
| densenet201        | ImageNet | 32 | 6, 12, 48, 32   | 64   | 1000    | 20,013,928 | 20.0M  |
| densenet161        | ImageNet | 48 | 6, 12, 36, 24   | 96   | 1000    | 28,681,000 | 28.7M  |
| densenet_bc100_k12 | CIFAR    | 12 | 16, 16, 16      | 24   | 10      | 769,162    | 0.8M   |
| densenet_bc250_k24 | CIFAR    | 24 | 41, 41, 41      | 48   | 10      | 15,324,406 | 15.3M  |
| densenet_bc190_k40 | CIFAR    | 40 | 31, 31, 31      | 80   | 10      | 25,624,430 | 25.6M  |
| densenet40_k12     | CIFAR    | 12 | 12, 12, 12 (*)  | 16   | 10      | 1,019,722  | 1.0M   |

(*) plain DenseNet (Table 2's first rows): no bottleneck (``bn_size=0``), no compression.
Table 2's deeper plain nets are overrides of it: ``block_config=(32, 32, 32)`` gives
DenseNet L=100 k=12 (6,979,642; paper 7.0M), with ``growth_rate=24`` L=100 k=24
(27,249,082; 27.2M).
ref.: the paper's Table 2 for CIFAR; the ImageNet counts (the paper gives none in a table)
equal torchvision's and timm's exactly. With 100 classes the CIFAR counts grow by
(classes - 10) x (final channels + 1): BC-100 k=12 has 800,032. The paper's ImageNet
networks are DenseNet-BC with k = 32 (161: k = 48, only in the authors' code and
torchvision). Table 2 reports CIFAR-10+ errors of 4.51% (BC-100, k=12), 3.62% (BC-250,
k=24) and 3.46% (BC-190, k=40); Table 3 ImageNet top-1 single-crop errors of 25.02%,
23.80%, 22.58% (121, 169, 201).

Choices:

* Exactly torchvision's DenseNet (and the authors' Torch code) for the ImageNet models,
  so their ImageNet weights convert (``densenet121/169/201/161`` from torchvision or
  timm, which share key names): convolutions without biases, BN eps 1e-5, a final
  BN-ReLU before the pooling (Table 1 omits it; the authors' code and torchvision have
  it), a linear classifier with bias.
* CIFAR: the authors' Torch code (liuzhuang13/DenseNet ``models/densenet.lua``), which
  the paper's counts come from: 2k stem maps for DenseNet-BC (our plain variants use
  the paper's 16; that code uses 2k for both), no conv biases, floor(theta m)
  transitions, an 8x8 (global) average pool.
* Dropout (``dropout_rate``): the paper adds dropout "after each convolutional layer
  (except the first one)" for data sets without augmentation (0.2 on C10, C100, SVHN;
  0 with augmentation and on ImageNet). We follow the paper and the authors' code:
  after the bottleneck 1x1 conv, the 3x3 conv and the transition conv. torchvision's
  ``drop_rate`` drops only each dense layer's 3x3 output; in evaluation both are the
  identity.
* Init as torchvision: conv kernels He normal, fan-in mode (the authors' Torch code uses
  fan-out; both are "the weight initialization introduced by [He et al. 2015]" the
  paper cites), BN scale 1 and bias 0, the classifier's weight PyTorch's default
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (Torch7's too) and its bias 0.
* The memory-efficient implementation (Pleiss et al. 2017, shared buffers or
  checkpointing) is not needed for correctness and is not implemented; ``jax.checkpoint``
  around the blocks would be the JAX equivalent.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import register
from models import torch_convert as tc
from models.layers import (Conv, avg_pool, check_choice, check_dropout, check_option,
                           check_positive, check_positive_entries, layer_ids_in_block_order,
                           make_norm, max_pool)

Array = jax.Array

# He et al. 2015, fan-in mode: torchvision's ``kaiming_normal_`` defaults.
he_normal_fan_in = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
# PyTorch's (and Torch7's) default nn.Linear weight: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_linear_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
STEMS = ("imagenet", "cifar")
_PAD_1 = ((1, 1), (1, 1))


class DenseLayer(nn.Module):
  """H_l: [BN-ReLU-conv 1x1 (bn_size k)]-BN-ReLU-conv 3x3 (k), concatenated to its input."""

  growth_rate: int
  bn_size: int = 4  # 0: no bottleneck (plain DenseNet)
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    norm = make_norm("batch", train=train, dtype=self.dtype)
    conv = functools.partial(Conv, use_bias=False, kernel_init=he_normal_fan_in,
                             dtype=self.dtype, param_dtype=jnp.float32)
    dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
    y = nn.relu(norm(name="norm1")(x))
    if self.bn_size:
      y = dropout(conv(self.bn_size * self.growth_rate, (1, 1), name="conv1")(y))
      y = nn.relu(norm(name="norm2")(y))
      y = conv(self.growth_rate, (3, 3), padding=_PAD_1, name="conv2")(y)
    else:
      y = conv(self.growth_rate, (3, 3), padding=_PAD_1, name="conv1")(y)
    y = dropout(y)
    return jnp.concatenate([x, y], axis=-1)


class DenseBlock(nn.Module):
  """``num_layers`` dense layers: c0 input channels become c0 + num_layers x k."""

  num_layers: int
  growth_rate: int
  bn_size: int = 4
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    for i in range(self.num_layers):
      x = DenseLayer(self.growth_rate, self.bn_size, self.dropout_rate, self.dtype,
                     name=f"denselayer{i + 1}")(x, train)
    return x


class Transition(nn.Module):
  """BN-ReLU-conv 1x1 to ``features`` channels, then 2x2/2 average pooling."""

  features: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    if min(x.shape[1:3]) < 2:
      raise ValueError(f"{self.name}: a {x.shape[1]}x{x.shape[2]} map cannot be pooled 2x2; "
                       "the ImageNet DenseNets need inputs of 32x32 or more, the CIFAR "
                       "ones 4x4")
    x = nn.relu(make_norm("batch", train=train, dtype=self.dtype)(name="norm")(x))
    x = Conv(self.features, (1, 1), use_bias=False, kernel_init=he_normal_fan_in,
             dtype=self.dtype, param_dtype=jnp.float32, name="conv")(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return avg_pool(x, (2, 2))


class DenseNet(nn.Module):
  """DenseNet(-BC). Defaults: DenseNet-121 (ImageNet, k = 32, theta = 0.5, bottlenecks)."""

  num_classes: int = 1000
  growth_rate: int = 32  # k
  block_config: tuple[int, ...] = (6, 12, 24, 16)  # dense layers per block
  num_init_features: int = 64  # stem maps: 2k for DenseNet-BC, 16 for plain CIFAR nets
  bn_size: int = 4  # bottleneck width in units of k ("-B"); 0: no bottleneck
  compression: float = 0.5  # theta ("-C"); 1: transitions keep the channel count
  dropout_rate: float = 0.0  # after every conv but the first (paper: 0.2 without aug.)
  stem: str = "imagenet"  # "imagenet": 7x7/2 conv, BN, ReLU, 3x3/2 max pool | "cifar"
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_positive(self, "growth_rate", self.growth_rate)
    check_positive_entries(self, "block_config", self.block_config)
    check_positive(self, "num_init_features", self.num_init_features)
    check_positive(self, "bn_size", self.bn_size, off="no bottleneck")
    check_option(0.0 < self.compression <= 1.0, self, "compression", self.compression,
                 "0 < compression <= 1")
    check_dropout(self, "dropout_rate", self.dropout_rate)
    check_choice(self, "stem", self.stem, STEMS)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    norm = make_norm("batch", train=train, dtype=self.dtype)
    conv = functools.partial(Conv, use_bias=False, kernel_init=he_normal_fan_in,
                             dtype=self.dtype, param_dtype=jnp.float32)
    x = x.astype(self.dtype)
    if self.stem == "imagenet":
      x = conv(self.num_init_features, (7, 7), 2, padding=((3, 3), (3, 3)), name="conv0")(x)
      x = nn.relu(norm(name="norm0")(x))
      x = max_pool(x, 3, 2, pad=1)
    else:
      x = conv(self.num_init_features, (3, 3), padding=_PAD_1, name="conv0")(x)

    for i, num_layers in enumerate(self.block_config):
      x = DenseBlock(num_layers, self.growth_rate, self.bn_size, self.dropout_rate,
                     self.dtype, name=f"denseblock{i + 1}")(x, train)
      if i < len(self.block_config) - 1:
        features = math.floor(self.compression * x.shape[-1])
        x = Transition(features, self.dropout_rate, self.dtype,
                       name=f"transition{i + 1}")(x, train)

    x = nn.relu(norm(name="norm_final")(x))
    x = jnp.mean(x, axis=(1, 2))  # the 7x7 (ImageNet) or 8x8 (CIFAR) average pool
    return nn.Dense(self.num_classes, kernel_init=torch_linear_init, dtype=self.dtype,
                    param_dtype=jnp.float32, name="classifier")(x)


IMAGENET_VARIANTS = {
    # name: (growth rate, block config, initial features)
    "densenet121": (32, (6, 12, 24, 16), 64),
    "densenet169": (32, (6, 12, 32, 32), 64),
    "densenet201": (32, (6, 12, 48, 32), 64),
    "densenet161": (48, (6, 12, 36, 24), 96),
}

_BLOCK = re.compile(r"^(?:denseblock|transition)(\d+)$")


def layer_ids(names: Sequence[str]) -> tuple[dict[str, int], int]:
  """Layer groups for layer-wise learning-rate decay, as timm's coarse ``group_matcher``
  for DenseNets: the stem (``conv0``, ``norm0``) is layer 0, dense block i and the
  transition after it are layer i, the final norm and the classifier L + 1."""
  return layer_ids_in_block_order(names, _BLOCK, stem=("conv0", "norm0"))


for _name, (_k, _blocks, _init) in IMAGENET_VARIANTS.items():
  register(_name, functools.partial(DenseNet, growth_rate=_k, block_config=_blocks,
                                    num_init_features=_init), layer_groups=layer_ids)


def _cifar(depth: int, k: int, bc: bool) -> functools.partial:
  """The CIFAR DenseNet of depth L: three blocks of (L - 4) / 3 layers (/ 2 with -B)."""
  n = (depth - 4) // (6 if bc else 3)
  return functools.partial(DenseNet, growth_rate=k, block_config=(n, n, n),
                           num_init_features=2 * k if bc else 16, bn_size=4 if bc else 0,
                           compression=0.5 if bc else 1.0, stem="cifar")


for _depth, _k in ((100, 12), (250, 24), (190, 40)):
  register(f"densenet_bc{_depth}_k{_k}", _cifar(_depth, _k, bc=True), layer_groups=layer_ids)
register("densenet40_k12", _cifar(40, 12, bc=False), layer_groups=layer_ids)


# ----------------------------------------------------------------------------- torchvision

# torchvision's released .pth files name a dense layer's modules "norm.1", "conv.2", ...
# (torchvision renames them when it loads them; timm's files use the new names).
_LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|conv))([12])$")


@tc.register_converter(*IMAGENET_VARIANTS)
def convert_torchvision_densenet(sd: tc.StateDict, model=None) -> dict:
  """A torchvision or timm DenseNet state dict -> variables of ``create_model('densenet*')``.

  Both libraries use the same names (``features.denseblock1.denselayer1.norm1.weight``,
  ``features.transition1.conv.weight``, ``features.norm5``, ``classifier``), so one
  path reads both; torchvision's downloadable files with the older ``norm.1``-style
  names convert too. The block structure is read from the checkpoint and, given a
  model, must match its ``block_config``.
  """
  if model is not None and not (isinstance(model, DenseNet) and model.stem == "imagenet"
                                and model.bn_size == 4):
    raise tc.ConversionError("torchvision and timm DenseNets convert into the ImageNet "
                             "DenseNet-BC models (densenet121/169/201/161: ImageNet stem, "
                             "bottleneck bn_size=4), not into a model with other options")

  def name(prefix: str) -> str:
    legacy = _LEGACY.sub(r"\1.\2", prefix)
    return legacy if f"{prefix}.weight" not in sd and f"{legacy}.weight" in sd else prefix

  def bn(prefix: str) -> tuple[dict, dict]:
    return tc.batch_norm(sd, name(prefix))

  params: dict[str, Any] = {"conv0": tc.conv(sd, "features.conv0")}
  stats: dict[str, Any] = {}
  params["norm0"], stats["norm0"] = bn("features.norm0")
  blocks = []
  while any(k.startswith(f"features.denseblock{len(blocks) + 1}.") for k in sd.keys()):
    i = len(blocks) + 1
    p, s = params.setdefault(f"denseblock{i}", {}), stats.setdefault(f"denseblock{i}", {})
    j = 0
    while f"{name(f'features.denseblock{i}.denselayer{j + 1}.conv1')}.weight" in sd:
      j += 1
      theirs = f"features.denseblock{i}.denselayer{j}"
      lp, ls = p.setdefault(f"denselayer{j}", {}), s.setdefault(f"denselayer{j}", {})
      for norm_name, conv_name in (("norm1", "conv1"), ("norm2", "conv2")):
        lp[norm_name], ls[norm_name] = bn(f"{theirs}.{norm_name}")
        lp[conv_name] = tc.conv(sd, name(f"{theirs}.{conv_name}"))
    blocks.append(j)
    if f"features.transition{i}.conv.weight" in sd:
      t = f"features.transition{i}"
      norm_params, norm_stats = bn(f"{t}.norm")
      params[f"transition{i}"] = {"norm": norm_params, "conv": tc.conv(sd, f"{t}.conv")}
      stats[f"transition{i}"] = {"norm": norm_stats}
  if model is not None and tuple(blocks) != tuple(model.block_config):
    raise tc.ConversionError(f"the checkpoint's dense blocks have {tuple(blocks)} layers, "
                             f"the model's {tuple(model.block_config)}: another DenseNet")
  params["norm_final"], stats["norm_final"] = bn("features.norm5")
  params["classifier"] = tc.dense(sd, "classifier")
  return {"params": jax.tree.map(np.array, params), "batch_stats": jax.tree.map(np.array, stats)}
