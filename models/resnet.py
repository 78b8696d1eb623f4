"""ResNet: He et al. 2015, "Deep Residual Learning for Image Recognition" (CVPR 2016,
arXiv 1512.03385).

Residual learning: each block learns a residual F(x) that is added to an identity
shortcut, y = relu(F(x) + x), so very deep networks train as easily as shallow ones
(a 110-layer CIFAR net beats a 20-layer one instead of degrading).

CIFAR ResNets (Sec. 4.2): a 3x3 conv with 16 filters, then three stages of n basic
blocks (two 3x3 convs each) on 32x32, 16x16 and 8x8 maps with 16, 32 and 64 filters,
stride 2 in the first conv of stages 2 and 3, global average pooling and a dense
classifier: 6n + 2 weighted layers. Every conv is followed by BatchNorm, then ReLU
(after the addition in a block). Parameter counts for 3-channel input, 10 classes:

| variant   | n  | params (shortcut A) | paper | shortcut B | CIFAR-10 error (paper) |
|-----------|----|---------------------|-------|------------|------------------------|
| resnet20  | 3  | 269,722             | 0.27M | 272,474    | 8.75%                  |
| resnet32  | 5  | 464,154             | 0.46M | 466,906    | 7.51%                  |
| resnet44  | 7  | 658,586             | 0.66M | 661,338    | 7.17%                  |
| resnet56  | 9  | 853,018             | 0.85M | 855,770    | 6.97%                  |
| resnet110 | 18 | 1,727,962           | 1.7M  | 1,730,714  | 6.43%                  |

Choices:

* Shortcuts. On CIFAR the paper uses option A everywhere: identity shortcuts, and
  where the shape changes, the input subsampled by 2 and its new channels zero-padded,
  adding no parameters. We append the zero channels after the identity ones (the paper
  does not say where; any placement is the same network up to a channel permutation).
  Option B (a 1x1 conv + BN projection where the shape changes) is ``shortcut='B'``.
* Padding. 3x3 convs pad by 1 on each side, also at stride 2 (as in the original
  Torch/Caffe code), not Flax's asymmetric 'SAME'.
* Init. Convs use He normal init in fan-out mode (He et al. 2015 [13], as torchvision);
  the classifier keeps Flax's default. ``zero_init_residual`` starts the last BN scale
  of each block at zero (Goyal et al. 2017), so each block starts as the identity; off
  by default, as in the paper.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import register

Array = jax.Array
ModuleDef = Any

# He et al. 2015 ("Delving deep into rectifiers"), fan-out mode as in torchvision.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

_PAD_1 = ((1, 1), (1, 1))
SHORTCUTS = ("A", "B")


def shortcut_a(x: Array, features: int, strides: int) -> Array:
  """Option A: subsample spatially by ``strides`` and zero-pad channels to ``features``."""
  x = x[:, ::strides, ::strides, :]
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))


class BasicBlock(nn.Module):
  """Two 3x3 convs with a shortcut (the paper's Fig. 2; used by ResNet-18/34 too).

  ``conv`` and ``norm`` are factories (partials of nn.Conv and nn.BatchNorm) supplied
  by the network, which fixes dtype, init and train/eval mode in one place.
  """

  features: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  shortcut: str = "B"
  zero_init_residual: bool = False
  act: Callable[[Array], Array] = nn.relu

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if self.shortcut not in SHORTCUTS:
      raise ValueError(f"unknown shortcut {self.shortcut!r}; valid: {SHORTCUTS}")
    y = self.conv(self.features, (3, 3), self.strides, padding=_PAD_1, name="conv1")(x)
    y = self.norm(name="bn1")(y)
    y = self.act(y)
    y = self.conv(self.features, (3, 3), padding=_PAD_1, name="conv2")(y)
    scale_init = nn.initializers.zeros if self.zero_init_residual else nn.initializers.ones
    y = self.norm(scale_init=scale_init, name="bn2")(y)

    residual = x
    if x.shape[-1] != self.features or self.strides != 1:
      if self.shortcut == "A":
        residual = shortcut_a(x, self.features, self.strides)
      else:
        residual = self.conv(self.features, (1, 1), self.strides, padding="VALID",
                             name="proj_conv")(x)
        residual = self.norm(name="proj_bn")(residual)
    return self.act(y + residual)


class CifarResNet(nn.Module):
  """The 6n+2-layer CIFAR ResNet of Sec. 4.2 (n = ``blocks_per_stage``)."""

  num_classes: int = 10
  blocks_per_stage: int = 3
  width: int = 16  # filters in stage 1; stages 2 and 3 use 2x and 4x.
  shortcut: str = "A"
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    conv = functools.partial(nn.Conv, use_bias=False, kernel_init=he_normal_fan_out,
                             dtype=self.dtype, param_dtype=jnp.float32)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32)
    x = x.astype(self.dtype)
    x = conv(self.width, (3, 3), padding=_PAD_1, name="conv1")(x)
    x = norm(name="bn1")(x)
    x = nn.relu(x)
    for stage in range(3):
      for block in range(self.blocks_per_stage):
        x = BasicBlock(
            features=self.width * 2**stage,
            conv=conv,
            norm=norm,
            strides=2 if stage > 0 and block == 0 else 1,
            shortcut=self.shortcut,
            zero_init_residual=self.zero_init_residual,
            name=f"stage{stage + 1}_block{block + 1}")(x)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                    name="fc")(x)


for _depth, _n in ((20, 3), (32, 5), (44, 7), (56, 9), (110, 18)):
  register(f"resnet{_depth}", functools.partial(CifarResNet, blocks_per_stage=_n))
