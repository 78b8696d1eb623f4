"""The All Convolutional Net: Springenberg, Dosovitskiy, Brox, Riedmiller (2015),
"Striving for Simplicity: The All Convolutional Net" (ICLR workshop, arXiv 1412.6806).

The paper asked which parts of a CNN are needed, and found that max-pooling can be
replaced by a convolution with stride 2 without loss of accuracy: a network of
convolutions only (and ReLUs), with global averaging instead of fully connected layers,
matched the state of the art on CIFAR-10. Its model C (Table 1/2), for 32x32x3 input:

  input dropout 0.2
  3x3 conv 96, 3x3 conv 96, then downsample:  3x3 max-pool stride 2  (model C)
                                               3x3 conv 96 stride 2    (All-CNN-C)
  dropout 0.5
  3x3 conv 192, 3x3 conv 192, then downsample: 3x3 max-pool stride 2 / 3x3 conv 192 stride 2
  dropout 0.5
  3x3 conv 192 (valid), 1x1 conv 192, 1x1 conv 10, global average over 6x6, softmax

Every conv is followed by a ReLU, the last one (class scores) included, as Table 2 lists.

| variant            | downsampling       | params (10 classes) |
|--------------------|--------------------|---------------------|
| allcnn_c           | 3x3 conv, stride 2 | 1,369,738           |
| allcnn_c_maxpool   | 3x3 max-pool, s. 2 | 954,730             |

(The paper's Table 3 gives "1.3M" for model C and "1.4M" for All-CNN-C; the latter is
ours exactly, and the former appears to count the pooling model with the All-CNN
convolutions. Ours counts the layers of Table 2.)

Choices:

* Padding: 3x3 convs pad by 1 ("same"), so 32 -> 16 -> 8 through the two downsampling
  layers, as in the paper's Caffe models (max-pool: 3x3 stride 2 padded by 1, with
  padding that never wins); the 3x3 conv of the last block is unpadded (8 -> 6), which is
  what makes the "6x6 spatial" averaging of Table 2.
* ``final_relu``: the ReLU on the class scores before averaging (Table 2). It is on by
  default; turn it off for the common reimplementations that average raw scores.
* Initialisation is not given in the paper; convs use He normal (fan-in), suited to ReLU.
* Dropout: 20% on the input and 50% after each downsampling layer (Sec. 3.2).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import register
from models.layers import Conv, check_choice, check_dropout, check_positive, max_pool

Array = jax.Array

DOWNSAMPLING = ("conv", "maxpool")


class AllCNN(nn.Module):
  """Model C of Springenberg et al. with strided-conv or max-pool downsampling."""

  num_classes: int = 10
  downsampling: str = "conv"  # "conv" (All-CNN-C) | "maxpool" (model C)
  width: int = 96  # filters of the first block; the later blocks use 2x
  input_dropout: float = 0.2
  dropout: float = 0.5
  final_relu: bool = True
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_choice(self, "downsampling", self.downsampling, DOWNSAMPLING)
    check_positive(self, "width", self.width)
    check_dropout(self, "input_dropout", self.input_dropout)
    check_dropout(self, "dropout", self.dropout)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    conv = functools.partial(Conv, kernel_size=(3, 3), padding=((1, 1), (1, 1)),
                             kernel_init=nn.initializers.he_normal(), dtype=self.dtype,
                             param_dtype=jnp.float32)
    x = x.astype(self.dtype)
    x = nn.Dropout(self.input_dropout, deterministic=not train)(x)
    layer = 1
    for block, features in enumerate((self.width, 2 * self.width)):
      for _ in range(2):
        x = nn.relu(conv(features, name=f"conv{layer}")(x))
        layer += 1
      if self.downsampling == "conv":
        x = nn.relu(conv(features, strides=(2, 2), name=f"conv{layer}")(x))
        layer += 1
      else:
        x = max_pool(x, window=3, stride=2, pad=1)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.relu(conv(2 * self.width, padding="VALID", name=f"conv{layer}")(x))
    x = nn.relu(conv(2 * self.width, kernel_size=(1, 1), padding="VALID",
                     name=f"conv{layer + 1}")(x))
    x = conv(self.num_classes, kernel_size=(1, 1), padding="VALID", name=f"conv{layer + 2}")(x)
    if self.final_relu:
      x = nn.relu(x)
    return jnp.mean(x, axis=(1, 2))


register("allcnn_c", functools.partial(AllCNN, downsampling="conv"))
register("allcnn_c_maxpool", functools.partial(AllCNN, downsampling="maxpool"))
