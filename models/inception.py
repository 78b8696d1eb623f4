"""GoogLeNet (Inception v1) and BN-Inception.

GoogLeNet: Szegedy et al. 2014, "Going Deeper with Convolutions" (CVPR 2015, arXiv
1409.4842), the ILSVRC 2014 classification winner (6.67% top-5, 7 models x 144 crops).
It introduced the Inception module: parallel 1x1, 3x3 and 5x5 convolutions and a 3x3
max-pool, concatenated along channels, with 1x1 "reduce" convolutions in front of the
3x3 and 5x5 ones (and behind the pool) so that a 22-layer network costs 1.5 GMACs and
has 12x fewer parameters than AlexNet. Two auxiliary classifiers on the outputs of
modules 4a and 4d add 0.3 x their losses during training only.

Architecture (the paper's Table 1; 224x224 input):

  conv1 7x7/2 64 -> max-pool 3x3/2 -> LRN -> conv2_reduce 1x1 64 -> conv2 3x3 192 -> LRN
  -> max-pool 3x3/2 -> inception 3a, 3b -> max-pool 3x3/2 -> 4a (-> aux1), 4b, 4c,
  4d (-> aux2), 4e -> max-pool 3x3/2 -> 5a, 5b -> global average pool (7x7) -> dropout
  -> fc.

  Inception modules (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj):
  3a 64 96 128 16 32 32; 3b 128 128 192 32 96 64; 4a 192 96 208 16 48 64;
  4b 160 112 224 24 64 64; 4c 128 128 256 24 64 64; 4d 112 144 288 32 64 64;
  4e 256 160 320 32 128 128; 5a 256 160 320 32 128 128; 5b 384 192 384 48 128 128.

  Auxiliary classifier: average pool (4x4 output) -> 1x1 conv 128 + ReLU -> fc 1024 +
  ReLU -> dropout 0.7 -> fc.

BN-Inception: Ioffe & Szegedy 2015, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift" (ICML 2015, arXiv 1502.03167), Sec. 4.2
and the appendix's Figure 5. GoogLeNet with BatchNorm before every ReLU, each 5x5 conv
replaced by two stacked 3x3 convs, a third 28x28 module (3c), no pooling layers between
stages (modules 3c and 4e reduce with stride 2 and a max-pool tower that is passed
through unprojected), average pooling in most towers, no LRN, no dropout, no auxiliary
heads. Modules (#1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool + proj):

  3a 64 64 64 64 96 avg+32;     3b 64 64 96 64 96 avg+64;     3c 0 128 160 64 96 max (s2)
  4a 224 64 96 96 128 avg+128;  4b 192 96 128 96 128 avg+128; 4c 160 128 160 128 160 avg+128
  4d 96 128 192 160 192 avg+128; 4e 0 128 192 192 256 max (s2)
  5a 352 192 320 160 224 avg+128; 5b 352 192 320 192 224 max+128

Variants (1000 classes, 224x224; trainable parameters, BN statistics excluded):

| variant         | without aux heads | with aux heads | notes                              |
|-----------------|-------------------|----------------|------------------------------------|
| googlenet       | 6,624,904         | 13,004,888     | = torchvision, both counts         |
| googlenet_paper | 6,998,552         | 13,378,280     | Table 1 / Caffe bvlc_googlenet     |
| bn_inception    | 11,285,224        | -              | Figure 5; + conv biases 11,295,240 |

``googlenet`` (default; torchvision's GoogLeNet, so its ImageNet weights load through
the converter below; torchvision reports 69.78% top-1):

* Every conv is torchvision's ``BasicConv2d``: conv without bias, BatchNorm (eps 1e-3),
  ReLU. The paper predates BatchNorm; torchvision's weights were trained with it.
* The "5x5" tower uses a 3x3 kernel (``kernel_5x5=3``), a known slip that torchvision
  keeps because its weights depend on it (pytorch/vision#906).
* No LRN; the max-pool before 5a is 2x2/2 (the paper's is 3x3/2; both give 7x7 at 224);
  dropout 0.2 before fc; the auxiliary heads pool with ``AdaptiveAvgPool2d((4, 4))``
  (windows of 4 at 14x14, not the paper's 5x5/3) and their 1x1 conv has BatchNorm.
* Max-pools use ``ceil_mode=True``, as torchvision and Caffe do.
* Init as torchvision: conv and linear kernels N(0, 0.01) (torchvision truncates at
  +-2, i.e. 200 standard deviations: no truncation in effect), BN scale 1, bias 0;
  linear biases start at 0 here (PyTorch: its default uniform init).
* ``transform_input`` is not implemented: it only rescales ImageNet-standardized input
  to ``(x - 0.5) / 0.5``. torchvision's pretrained weights expect that input, so feed
  them ``normalization='symmetric'`` images (``[0, 1] -> [-1, 1]``).

``googlenet_paper`` (the paper's network as in Caffe's reference ``bvlc_googlenet``
train_val.prototxt, the public implementation of Table 1):

* Conv biases, no BatchNorm, true 5x5 kernels, 3x3/2 max-pool before 5a.
* LRN after the first max-pool and after conv2 (before the second max-pool), with
  Caffe's parameters: size 5, alpha 1e-4 divided by the size (``alpha_per_size``),
  beta 0.75, k 1 (Caffe's default).
* Dropout 0.4 before the classifier; auxiliary heads exactly as the paper lists them:
  5x5/3 average pool (4x4 at 224; it needs a 5x5 map, i.e. inputs of 79x79 or more),
  1x1 conv 128 + ReLU, fc 1024 + ReLU, dropout 0.7, fc.
* Init as Caffe: "xavier" (uniform, variance 1/fan_in) kernels; biases 0.2, except the
  classifiers' (0).
* Table 1's "params" column (about 6.8M in all) does not follow exactly from its own
  filter counts (e.g. 3a: 159K listed, 163K from its columns); our count is that of the
  layers Table 1 and the Caffe model list.

The 1x1 reductions (Sec. 4, Figure 2): ``towers='naive'`` is Figure 2(a), the module
"in naive form": the 1x1, 3x3 and 5x5 convs all read the module's input and the 3x3
max-pool's output is concatenated as it is, so a module's output has
``n1x1 + n3x3 + n5x5 + input channels`` channels and the widths grow from module to
module, the "computational blow up" the reductions (Figure 2(b), ``'reduced'``, the
default and every registered net) avoid. The naive towers keep Table 1's #1x1, #3x3 and
#5x5 (our choice: the paper never builds the naive network). ``width`` scales every
conv's filters and the auxiliary heads' widths (``max(1, round(n * width))``; 1.0 is the
paper's); the experiments train GoogLeNet at 1/4 width on a CPU.

Both: the final 7x7/1 average pool is a global average (identical at 224, and any input
size works). The auxiliary classifiers follow the project convention: with
``train=True`` the model returns ``(logits, (aux1, aux2))``, with ``train=False`` the
logits alone; with ``aux_logits=True`` (default) their parameters exist in both modes so
checkpoints have one tree. Counts "without aux heads" are for ``aux_logits=False``.

``bn_inception``: Figure 5 leaves details open; we follow the released Caffe BN-Inception
(Yuanjun Xiong's, as ported to PyTorch in Cadene's pretrainedmodels ``bninception``):

* Stem as GoogLeNet's (7x7/2 conv 64, 3x3/2 max-pool, 1x1 64, 3x3 192, 3x3/2 max-pool),
  with a plain 7x7 conv (TF-slim's inception_v2 makes it depthwise-separable instead).
* Stride-2 modules put the stride in the last conv of each tower; their pool tower is a
  3x3/2 max-pool with ceil mode (so the 28x28 and 14x14 maps must have even sizes:
  224, or any multiple of 32, works). The average-pool towers are 3x3/1, padding 1,
  counting the zero padding (Caffe).
* Figure 5's output-depth column lists 576 for 4c and 4d and 1024 for 4e, but its branch
  columns add up to 608, 608 and 1056; the Caffe model (and ours) follows the branches.
* BN eps 1e-5 (Caffe model). The paper notes that a bias before BN is redundant, so convs
  have none by default; ``conv_bias=True`` adds them as in the Caffe model, whose count
  (11,295,240, Cadene's ``bninception``) we then match exactly. The paper's text says
  13.6M parameters, which its own Figure 5 does not give.
* Init is not given: He normal (fan-in) kernels.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import register
from models import torch_convert as tc
from models.layers import (Conv, adaptive_avg_pool, check_choice, check_dropout, check_option,
                           check_positive, local_response_norm, max_pool)

Array = jax.Array
ModuleDef = Any

# Caffe's "xavier" filler: uniform with variance 1/fan_in.
caffe_xavier = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
INITS = ("torchvision", "caffe")
AUX_POOLS = ("adaptive", "5x5_s3")
# Figure 2: (b) "with dimension reductions" (1x1 convs before the 3x3 and 5x5, after the
# pool) or (a) "naive" (none).
TOWERS = ("reduced", "naive")


class ModuleSpec(NamedTuple):
  """One row of Table 1 (GoogLeNet) or Figure 5 (BN-Inception).

  For BN-Inception the ``5x5`` columns are the "double 3x3" tower. ``n1x1=0``: no 1x1
  tower; ``pool_proj=0``: the pooled input is concatenated as it is.
  """
  n1x1: int
  n3x3_reduce: int
  n3x3: int
  n5x5_reduce: int
  n5x5: int
  pool_proj: int
  pool: str = "max"
  strides: int = 1


GOOGLENET_MODULES = {
    "3a": ModuleSpec(64, 96, 128, 16, 32, 32),
    "3b": ModuleSpec(128, 128, 192, 32, 96, 64),
    "4a": ModuleSpec(192, 96, 208, 16, 48, 64),
    "4b": ModuleSpec(160, 112, 224, 24, 64, 64),
    "4c": ModuleSpec(128, 128, 256, 24, 64, 64),
    "4d": ModuleSpec(112, 144, 288, 32, 64, 64),
    "4e": ModuleSpec(256, 160, 320, 32, 128, 128),
    "5a": ModuleSpec(256, 160, 320, 32, 128, 128),
    "5b": ModuleSpec(384, 192, 384, 48, 128, 128),
}

BN_INCEPTION_MODULES = {
    "3a": ModuleSpec(64, 64, 64, 64, 96, 32, "avg"),
    "3b": ModuleSpec(64, 64, 96, 64, 96, 64, "avg"),
    "3c": ModuleSpec(0, 128, 160, 64, 96, 0, "max", strides=2),
    "4a": ModuleSpec(224, 64, 96, 96, 128, 128, "avg"),
    "4b": ModuleSpec(192, 96, 128, 96, 128, 128, "avg"),
    "4c": ModuleSpec(160, 128, 160, 128, 160, 128, "avg"),
    "4d": ModuleSpec(96, 128, 192, 160, 192, 128, "avg"),
    "4e": ModuleSpec(0, 128, 192, 192, 256, 0, "max", strides=2),
    "5a": ModuleSpec(352, 192, 320, 160, 224, 128, "avg"),
    "5b": ModuleSpec(352, 192, 320, 192, 224, 128, "max"),
}


def avg_pool(x: Array, window: int, stride: int, pad: int = 0) -> Array:
  """Average pooling, NHWC, zero padding counted in the average (Caffe; PyTorch's
  ``count_include_pad=True``), floor mode."""
  summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, window, window, 1),
                                 (1, stride, stride, 1), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  return summed / (window * window)


class ConvBlock(nn.Module):
  """Convolution, BatchNorm if ``batch_norm``, ReLU (torchvision's ``BasicConv2d``)."""

  features: int
  kernel_size: int
  strides: int = 1
  padding: int = 0
  batch_norm: bool = True
  use_bias: bool = False
  bn_epsilon: float = 1e-3
  kernel_init: Any = nn.initializers.normal(0.01)
  bias_init: Any = nn.initializers.zeros
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    k, p = self.kernel_size, self.padding
    x = Conv(self.features, (k, k), self.strides, padding=((p, p), (p, p)),
             use_bias=self.use_bias, kernel_init=self.kernel_init,
             bias_init=self.bias_init, dtype=self.dtype, param_dtype=jnp.float32,
             name="conv")(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                       epsilon=self.bn_epsilon, dtype=self.dtype,
                       param_dtype=jnp.float32, name="bn")(x)
    return nn.relu(x)


class Inception(nn.Module):
  """An Inception module: four towers on the same input, concatenated along channels.

  GoogLeNet's towers: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max-pool -> 1x1. With
  ``double_3x3`` (BN-Inception) the 5x5 conv becomes two 3x3 convs. With ``strides=2``
  the last conv of each tower and the (max-)pool have stride 2. With ``towers='naive'``
  (Figure 2(a)) the reduce convs and the pool projection are left out: the 3x3 and 5x5
  convs read the input, and the pooled input is concatenated as it is.
  """

  spec: ModuleSpec
  conv: ModuleDef  # a ConvBlock partial: conv(features, kernel, strides, padding)
  kernel_5x5: int = 5
  double_3x3: bool = False
  towers: str = "reduced"  # reduced (Figure 2(b)) | naive (Figure 2(a))

  def __post_init__(self) -> None:
    super().__post_init__()
    check_choice(self, "towers", self.towers, TOWERS)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    s = self.spec
    naive = self.towers == "naive"

    def reduce(features, name):  # the 1x1 "reduce" conv in front of a tower
      return x if naive else self.conv(features, 1, name=name)(x, train)

    towers = []
    if s.n1x1:
      towers.append(self.conv(s.n1x1, 1, name="branch1x1")(x, train))

    y = reduce(s.n3x3_reduce, "branch3x3_reduce")
    towers.append(self.conv(s.n3x3, 3, s.strides, 1, name="branch3x3")(y, train))

    if self.double_3x3:
      y = reduce(s.n5x5_reduce, "double3x3_reduce")
      y = self.conv(s.n5x5, 3, 1, 1, name="double3x3_1")(y, train)
      towers.append(self.conv(s.n5x5, 3, s.strides, 1, name="double3x3_2")(y, train))
    else:
      k = self.kernel_5x5
      y = reduce(s.n5x5_reduce, "branch5x5_reduce")
      towers.append(self.conv(s.n5x5, k, s.strides, k // 2, name="branch5x5")(y, train))

    if s.pool not in ("max", "avg") or (s.strides > 1 and s.pool != "max"):
      raise ValueError(f"{self.name}: pool {s.pool!r} at stride {s.strides}; valid: 'max', "
                       "or 'avg' at stride 1")
    if s.strides > 1:
      y = max_pool(x, 3, s.strides, ceil_mode=True)
    else:
      y = max_pool(x, 3, 1, pad=1) if s.pool == "max" else avg_pool(x, 3, 1, pad=1)
    if s.pool_proj and not naive:
      y = self.conv(s.pool_proj, 1, name="pool_proj")(y, train)
    towers.append(y)

    sizes = {t.shape[1:3] for t in towers}
    if len(sizes) > 1:
      raise ValueError(
          f"{self.name}: towers give maps of sizes {sorted(sizes)}; a stride-2 module's "
          "input must have even height and width (use 224x224 or a multiple of 32)")
    return jnp.concatenate(towers, axis=-1)


class AuxClassifier(nn.Module):
  """GoogLeNet's auxiliary classifier (Sec. 5), on the output of module 4a or 4d."""

  num_classes: int
  conv: ModuleDef
  pool: str = "adaptive"  # torchvision: adaptive 4x4 | paper: 5x5/3 average
  dropout: float = 0.7
  dense_init: Any = nn.initializers.normal(0.01)
  fc1_bias_init: Any = nn.initializers.zeros
  conv_features: int = 128
  hidden: int = 1024
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_choice(self, "pool", self.pool, AUX_POOLS)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    if self.pool == "adaptive":
      x = adaptive_avg_pool(x, (4, 4))
    else:  # 5x5_s3
      if min(x.shape[1:3]) < 5:
        raise ValueError(f"the paper's 5x5/3 auxiliary pool needs a map of at least 5x5, "
                         f"got {x.shape[1:3]}; use inputs of 79x79 or more")
      x = avg_pool(x, 5, 3)
    x = self.conv(self.conv_features, 1, name="conv")(x, train)
    x = x.reshape(x.shape[0], -1)
    dense = functools.partial(nn.Dense, kernel_init=self.dense_init, dtype=self.dtype,
                              param_dtype=jnp.float32)
    x = nn.relu(dense(self.hidden, bias_init=self.fc1_bias_init, name="fc1")(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return dense(self.num_classes, name="fc2")(x)


class GoogLeNet(nn.Module):
  """GoogLeNet / Inception v1 (Table 1). Defaults: torchvision's ``googlenet``."""

  num_classes: int = 1000
  batch_norm: bool = True  # torchvision; the paper has none
  conv_bias: bool = False  # paper: True
  lrn: bool = False  # paper: LRN after the first max-pool and after conv2
  kernel_5x5: int = 3  # torchvision's slip; the paper: 5
  pool4_window: int = 2  # max-pool before 5a: torchvision 2x2/2; the paper 3x3/2
  dropout: float = 0.2  # before fc: torchvision 0.2; the paper 0.4
  aux_logits: bool = True
  aux_pool: str = "adaptive"  # torchvision; the paper: "5x5_s3"
  aux_dropout: float = 0.7
  weight_init: str = "torchvision"  # or "caffe"
  towers: str = "reduced"  # Figure 2: reduced (b) | naive (a), every module
  width: float = 1.0  # multiplies every conv's filters and the aux heads' widths
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_choice(self, "towers", self.towers, TOWERS)
    check_positive(self, "width", self.width)
    check_option(self.kernel_5x5 > 0 and self.kernel_5x5 % 2 == 1, self, "kernel_5x5",
                 self.kernel_5x5, "odd sizes > 0 (the paper 5, torchvision 3)")
    check_positive(self, "pool4_window", self.pool4_window)
    check_dropout(self, "dropout", self.dropout)
    check_choice(self, "aux_pool", self.aux_pool, AUX_POOLS)
    check_dropout(self, "aux_dropout", self.aux_dropout)
    check_choice(self, "weight_init", self.weight_init, INITS)

  @nn.compact
  def __call__(self, x: Array, train: bool):
    caffe = self.weight_init == "caffe"
    kernel_init = caffe_xavier if caffe else nn.initializers.normal(0.01)
    bias_init = nn.initializers.constant(0.2) if caffe else nn.initializers.zeros
    conv = functools.partial(ConvBlock, batch_norm=self.batch_norm, use_bias=self.conv_bias,
                             bn_epsilon=1e-3, kernel_init=kernel_init, bias_init=bias_init,
                             dtype=self.dtype)
    lrn = functools.partial(local_response_norm, size=5, k=1.0, alpha=1e-4, beta=0.75,
                            alpha_per_size=True)

    scaled = lambda n: max(1, int(round(n * self.width))) if n else 0

    def inception(name, x):
      spec = GOOGLENET_MODULES[name]
      spec = spec._replace(**{f: scaled(getattr(spec, f)) for f in spec._fields[:6]})
      return Inception(spec, conv, kernel_5x5=self.kernel_5x5, towers=self.towers,
                       name=f"inception{name}")(x, train)

    def aux_head(name, x):
      return AuxClassifier(self.num_classes, conv, pool=self.aux_pool,
                           dropout=self.aux_dropout, dense_init=kernel_init,
                           fc1_bias_init=bias_init, conv_features=scaled(128),
                           hidden=scaled(1024), dtype=self.dtype, name=name)(x, train)

    x = x.astype(self.dtype)
    x = conv(scaled(64), 7, 2, 3, name="conv1")(x, train)
    x = max_pool(x, 3, 2, ceil_mode=True)
    if self.lrn:
      x = lrn(x)
    x = conv(scaled(64), 1, name="conv2_reduce")(x, train)
    x = conv(scaled(192), 3, 1, 1, name="conv2")(x, train)
    if self.lrn:
      x = lrn(x)
    x = max_pool(x, 3, 2, ceil_mode=True)

    x = inception("3a", x)
    x = inception("3b", x)
    x = max_pool(x, 3, 2, ceil_mode=True)

    # The auxiliary heads run in training; at init too, so their parameters always exist.
    with_aux = self.aux_logits and (train or self.is_initializing())
    x = inception("4a", x)
    aux1 = aux_head("aux1", x) if with_aux else None
    x = inception("4b", x)
    x = inception("4c", x)
    x = inception("4d", x)
    aux2 = aux_head("aux2", x) if with_aux else None
    x = inception("4e", x)
    x = max_pool(x, self.pool4_window, 2, ceil_mode=True)

    x = inception("5a", x)
    x = inception("5b", x)
    x = jnp.mean(x, axis=(1, 2))  # the 7x7/1 average pool, for any input size
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, kernel_init=kernel_init, dtype=self.dtype,
                      param_dtype=jnp.float32, name="fc")(x)
    if train and self.aux_logits:
      return logits, (aux1, aux2)
    return logits


class BNInception(nn.Module):
  """The Inception network of the BatchNorm paper (Figure 5)."""

  num_classes: int = 1000
  conv_bias: bool = False  # the Caffe model has them (redundant before BN)
  bn_epsilon: float = 1e-5
  dropout: float = 0.0  # BN-x5 removes GoogLeNet's dropout (Sec. 4.2.1)
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_positive(self, "bn_epsilon", self.bn_epsilon)
    check_dropout(self, "dropout", self.dropout)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    conv = functools.partial(ConvBlock, batch_norm=True, use_bias=self.conv_bias,
                             bn_epsilon=self.bn_epsilon, kernel_init=he_normal,
                             dtype=self.dtype)
    x = x.astype(self.dtype)
    x = conv(64, 7, 2, 3, name="conv1")(x, train)
    x = max_pool(x, 3, 2, ceil_mode=True)
    x = conv(64, 1, name="conv2_reduce")(x, train)
    x = conv(192, 3, 1, 1, name="conv2")(x, train)
    x = max_pool(x, 3, 2, ceil_mode=True)
    for name, spec in BN_INCEPTION_MODULES.items():
      x = Inception(spec, conv, double_3x3=True, name=f"inception{name}")(x, train)
    x = jnp.mean(x, axis=(1, 2))  # 7x7/1 average pool at 224
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                    name="fc")(x)


register("googlenet", GoogLeNet)
register("googlenet_paper", functools.partial(
    GoogLeNet, batch_norm=False, conv_bias=True, lrn=True, kernel_5x5=5, pool4_window=3,
    dropout=0.4, aux_pool="5x5_s3", weight_init="caffe"))
register("bn_inception", BNInception)


# ----------------------------------------------------------------------------- torchvision

# Our tower names <- torchvision's Inception submodules.
_TORCHVISION_TOWERS = {"branch1x1": "branch1", "branch3x3_reduce": "branch2.0",
                       "branch3x3": "branch2.1", "branch5x5_reduce": "branch3.0",
                       "branch5x5": "branch3.1", "pool_proj": "branch4.1"}


@tc.register_converter("googlenet")
def convert_torchvision_googlenet(sd: tc.StateDict, model=None) -> dict:
  """torchvision's ``GoogLeNet`` state dict -> variables of ``create_model('googlenet')``.

  Auxiliary heads are converted when ``model.aux_logits`` (or, without a model, when
  the checkpoint has them). A checkpoint's auxiliary heads are dropped for a model with
  ``aux_logits=False``, as torchvision does when it loads its weights without them.
  """
  if model is not None and not (isinstance(model, GoogLeNet) and model.batch_norm
                                and not model.conv_bias and model.kernel_5x5 == 3
                                and model.pool4_window == 2 and not model.lrn
                                and model.aux_pool == "adaptive"
                                and model.towers == "reduced" and model.width == 1.0):
    raise tc.ConversionError("torchvision's GoogLeNet converts into create_model("
                             "'googlenet') (BatchNorm, 3x3 '5x5' tower, no LRN, reduced "
                             "towers, width 1), not into a model with other options")
  with_aux = ("aux1.fc1.weight" in sd) if model is None else model.aux_logits
  params: dict[str, Any] = {}
  stats: dict[str, Any] = {}

  def block(theirs: str) -> tuple[dict, dict]:
    bn_params, bn_stats = tc.batch_norm(sd, f"{theirs}.bn")
    return {"conv": tc.conv(sd, f"{theirs}.conv"), "bn": bn_params}, {"bn": bn_stats}

  for ours, theirs in (("conv1", "conv1"), ("conv2_reduce", "conv2"), ("conv2", "conv3")):
    params[ours], stats[ours] = block(theirs)
  for name in GOOGLENET_MODULES:
    p, s = params.setdefault(f"inception{name}", {}), stats.setdefault(f"inception{name}", {})
    for ours, theirs in _TORCHVISION_TOWERS.items():
      p[ours], s[ours] = block(f"inception{name}.{theirs}")
  for head in ("aux1", "aux2"):
    if with_aux:
      conv_p, conv_s = block(f"{head}.conv")
      params[head] = {"conv": conv_p,
                      "fc1": tc.dense_after_flatten(sd, f"{head}.fc1", (128, 4, 4)),
                      "fc2": tc.dense(sd, f"{head}.fc2")}
      stats[head] = {"conv": conv_s}
    else:  # the model has no auxiliary heads: drop the checkpoint's
      for key in [k for k in sd.keys() if k.startswith(f"{head}.")]:
        sd.get(key)
  params["fc"] = tc.dense(sd, "fc")
  # Copies: a state dict's arrays may share memory with the torch tensors, which a torch
  # forward pass in training mode updates in place.
  return {"params": jax.tree.map(np.array, params), "batch_stats": jax.tree.map(np.array, stats)}
