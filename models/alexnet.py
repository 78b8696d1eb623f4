"""AlexNet: Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep
Convolutional Neural Networks" (NIPS 2012; no arXiv version).

The network that won ILSVRC-2012 (15.3% top-5 error, ensemble; 26.2% for the runner-up)
and started the deep-learning era of computer vision. What it introduced or made work at
scale: ReLU units (Sec. 3.1), training on two GPUs with the network split into two
"towers" (Sec. 3.2), local response normalisation (Sec. 3.3), overlapping max-pooling
(Sec. 3.4), data augmentation by random crops, flips and PCA colour noise (Sec. 4.1) and
dropout in the fully-connected layers (Sec. 4.2).

Architecture of the paper (Fig. 2, Sec. 3.5), 224x224x3 input:

  conv1  96 11x11 /4 pad 2, ReLU, LRN, max-pool 3x3 /2                  55x55 -> 27x27x96
  conv2  256 5x5 pad 2, two towers (groups=2), ReLU, LRN, max-pool 3x3 /2    -> 13x13x256
  conv3  384 3x3 pad 1, connected to both towers, ReLU                        13x13x384
  conv4  384 3x3 pad 1, two towers, ReLU                                      13x13x384
  conv5  256 3x3 pad 1, two towers, ReLU, max-pool 3x3 /2                     -> 6x6x256
  fc6    4096, ReLU, dropout 0.5
  fc7    4096, ReLU, dropout 0.5
  fc8    num_classes (1000-way softmax)

| variant               | params (1000 classes)             | layout                          |
|-----------------------|-----------------------------------|---------------------------------|
| `alexnet`             | 60,965,224                        | the paper's two towers, LRN     |
| `alexnet_torchvision` | 61,100,840                        | torchvision's single tower      |
| `alexnet_bn`          | 60,966,600 (+2,752 BN statistics) | the paper's, BN in place of LRN |

``alexnet_torchvision`` is torchvision's ``alexnet`` (from Krizhevsky's 2014 "One weird
trick" single-GPU net): 64, 192, 384, 256, 256 filters, no groups, no LRN, an adaptive
average pool to 6x6 before the classifier, dropout on the inputs of fc6 and fc7, PyTorch's
default init. Its PyTorch weights load with ``torch_convert.convert('alexnet_torchvision',
...)``. ``alexnet_bn`` is the paper's network with BatchNorm (Ioffe & Szegedy 2015) after
every conv, before the ReLU, instead of LRN; those convs have no bias (BN's shift replaces
it), which takes 1,376 biases off and adds 2,752 BN scales and shifts.

Choices where the paper is ambiguous, and why:

* Input size and padding. The paper says 224x224, but 11x11 windows at stride 4 give the
  stated 55x55 maps only on 227x227 (or on 224 with padding). We pad conv1 by 2 on each
  side (``conv1_padding=2``, torchvision's choice): floor((224 + 4 - 11) / 4) + 1 = 55, so
  224 input gives 55 -> 27 -> 27 -> 13 -> 13 -> 6, i.e. 6x6x256 before fc6 as in the
  paper. ``conv1_padding=0`` with 227x227 input is the other reading; it gives the same
  shapes and parameters. conv2..conv5 pad so they keep the map size (the paper's sizes
  27 and 13 imply it). The smallest input the network accepts is 63x63 (1x1x256 before
  fc6; the pools need 3x3 maps). Without torchvision's adaptive pool (the paper has none)
  fc6's fan-in follows the input size: 9216 = 6x6x256 at 224.
* Towers. Each GPU held half the kernels of every layer; conv2, conv4 and conv5 saw only
  the maps on their own GPU, conv3 and the FC layers saw all of them (Sec. 3.5). The
  half-connected convs are grouped convolutions (``groups``), so the conv2 kernel is
  5x5x48x256. conv1 (each half sees all of the image) and the FC layers are ordinary
  layers: splitting them across GPUs did not change the function.
* LRN. ``b[c] = a[c] / (k + alpha * sum_{c'} a[c']^2)^beta`` over the n=5 maps centred on
  c, clipped at the layer's first and last map, with k=2, alpha=1e-4, beta=0.75
  (``models.layers.local_response_norm``, alpha *not* divided by n as Caffe and PyTorch
  do). The paper's window runs over all N maps of the layer; the released cuda-convnet
  model normalised each GPU's half on its own, which ``lrn_per_tower=True`` reproduces.
* Dropout. The paper sets "the output of each hidden neuron" of the first two FC layers
  to zero with probability 0.5, i.e. it drops the inputs of fc7 and fc8
  (``dropout_at=('fc7', 'fc8')``, as Caffe's reference model). torchvision drops the
  inputs of fc6 and fc7 instead (``('fc6', 'fc7')``).
* Init (``weight_init='paper'``). Weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the
  fully-connected *hidden* layers fc6 and fc7 (it "accelerates the early stages of learning
  by providing the ReLUs with positive inputs"), 0 in conv1, conv3 and fc8 (the paper's
  "remaining layers"). ``weight_init='torchvision'`` is PyTorch's default:
  U(+-1/sqrt(fan_in)) weights (variance 1/(3 fan_in)); biases start at 0 here rather than
  PyTorch's uniform, which needs the fan-in inside the bias init.
* Input scale (``input_scale``, default 1: the input as the trainer gives it). The paper
  fed raw pixels less the mean image, values of tens to 255, and LRN's k=2, alpha=1e-4
  were chosen on activations of that size. The trainer divides by the pixel std, which
  shrinks every activation about 255 x std times (58 on ImageNet, 90 on Fashion-MNIST);
  there ``alpha * sum a^2`` is negligible beside k and LRN is nearly the constant factor
  k^-beta. ``input_scale`` multiplies the normalised input back to the paper's scale
  (255 x the pixel std in [0, 1] units); with the paper's N(0, 0.01) init, conv1's outputs
  then have the paper's size too. Nothing else changes (ReLU nets are otherwise
  scale-equivariant up to the biases).
* Not modelled: the PCA colour augmentation and the mean-image subtraction (the trainer
  normalises by the per-channel mean and std), and the test-time 10-crop averaging.

``width`` scales every conv and the hidden FC layers (1.0 is the paper's); tests and the
``tiny`` configs use 1/8 so that a CPU compiles and runs the net in seconds.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import register
from models import torch_convert as tc
from models.layers import (Conv, adaptive_avg_pool, check_choice, check_dropout, check_option,
                           check_positive, check_positive_entries, local_response_norm, max_pool)

Array = jax.Array
Initializer = Callable[..., Array]

# The paper's filters and towers, conv1..conv5 (Sec. 3.5).
PAPER_FILTERS = (96, 256, 384, 384, 256)
PAPER_GROUPS = (1, 2, 1, 2, 2)
# torchvision's single-tower net.
TORCHVISION_FILTERS = (64, 192, 384, 256, 256)

_KERNELS = (11, 5, 3, 3, 3)
_POOL_AFTER = (True, True, False, False, True)  # overlapping 3x3 /2 max-pools
_LRN_AFTER = (True, True, False, False, False)
_BIAS_ONE = ("conv2", "conv4", "conv5", "fc6", "fc7")  # the paper's bias init of 1
_FC_LAYERS = ("fc6", "fc7", "fc8")
INITS = ("paper", "torchvision")

# PyTorch's default init of conv and linear weights: kaiming_uniform(a=sqrt(5)), which is
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
pytorch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class AlexNet(nn.Module):
  """AlexNet with the paper's choices as options; see the module docstring."""

  num_classes: int = 1000
  filters: Sequence[int] = PAPER_FILTERS
  groups: Sequence[int] = PAPER_GROUPS  # 2: the layer only sees its own tower's maps
  hidden_units: int = 4096
  conv1_padding: int = 2  # 224 input; 0 for 227 input
  lrn: bool = True  # after the ReLUs of conv1 and conv2
  lrn_per_tower: bool = False  # cuda-convnet: normalise each GPU's maps on their own
  batch_norm: bool = False  # BN after every conv (before the ReLU), conv biases off
  adaptive_pool: bool = False  # torchvision: average-pool to 6x6 before fc6
  dropout_rate: float = 0.5
  dropout_at: Sequence[str] = ("fc7", "fc8")  # layers whose inputs are dropped
  weight_init: str = "paper"  # paper | torchvision (not `init`: Module.init)
  width: float = 1.0  # multiplies the filters and hidden units (tests use 1/8)
  input_scale: float = 1.0  # x the normalised input: 255 x pixel std = the paper's scale
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    for field in ("filters", "groups"):  # one entry per conv layer
      value = getattr(self, field)
      check_positive_entries(self, field, value)
      check_option(len(value) == len(_KERNELS), self, field, value,
                   f"{len(_KERNELS)} entries, one per conv layer")
    check_positive(self, "hidden_units", self.hidden_units)
    check_option(self.conv1_padding >= 0, self, "conv1_padding", self.conv1_padding,
                 "conv1_padding >= 0")
    check_dropout(self, "dropout_rate", self.dropout_rate)
    check_option(set(self.dropout_at) <= set(_FC_LAYERS), self, "dropout_at",
                 tuple(self.dropout_at), f"subsets of {_FC_LAYERS}")
    check_choice(self, "weight_init", self.weight_init, INITS)
    check_positive(self, "width", self.width)
    check_positive(self, "input_scale", self.input_scale)

  def _inits(self, name: str) -> dict[str, Initializer]:
    if self.weight_init == "paper":
      bias = 1.0 if name in _BIAS_ONE else 0.0
      return dict(kernel_init=nn.initializers.normal(0.01),
                  bias_init=nn.initializers.constant(bias))
    return dict(kernel_init=pytorch_default_kernel_init, bias_init=nn.initializers.zeros)

  def _scaled(self, n: int) -> int:
    return max(1, int(round(n * self.width)))

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    common = dict(dtype=self.dtype, param_dtype=jnp.float32)
    x = x.astype(self.dtype)
    if self.input_scale != 1.0:
      x = x * self.input_scale

    for i in range(5):
      name = f"conv{i + 1}"
      features, groups = self._scaled(self.filters[i]), self.groups[i]
      if features % groups or x.shape[-1] % groups:
        raise ValueError(f"{name}: {x.shape[-1]} inputs and {features} filters do not "
                         f"split into {groups} towers (width={self.width})")
      k = _KERNELS[i]
      pad = self.conv1_padding if i == 0 else k // 2
      x = Conv(features, (k, k), strides=4 if i == 0 else 1, padding=((pad, pad),) * 2,
               feature_group_count=groups, use_bias=not self.batch_norm, name=name,
               **self._inits(name), **common)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         name=f"bn{i + 1}", **common)(x)
      x = nn.relu(x)
      if self.lrn and _LRN_AFTER[i]:
        x = self._local_response_norm(x)
      if _POOL_AFTER[i]:
        x = max_pool(x, 3, 2)

    if 0 in x.shape[1:3]:
      raise ValueError(f"input {tuple(x.shape[1:3])} is too small: AlexNet's pools need at "
                       "least 63x63 (224x224 in the paper)")
    if self.adaptive_pool:
      x = adaptive_avg_pool(x, (6, 6))
    x = x.reshape(x.shape[0], -1)  # (h, w, c) order; see dense_after_flatten
    drop = nn.Dropout(self.dropout_rate, deterministic=not train)
    for name in _FC_LAYERS:
      if name in self.dropout_at:
        x = drop(x)
      units = self.num_classes if name == "fc8" else self._scaled(self.hidden_units)
      x = nn.Dense(units, name=name, **self._inits(name), **common)(x)
      if name != "fc8":
        x = nn.relu(x)
    return x

  def _local_response_norm(self, x: Array) -> Array:
    """The paper's LRN; with ``lrn_per_tower``, within each tower's (GPU's) maps."""
    lrn = functools.partial(local_response_norm, size=5, k=2.0, alpha=1e-4, beta=0.75)
    towers = max(self.groups)
    if not self.lrn_per_tower or towers == 1:
      return lrn(x)
    return jnp.concatenate([lrn(t) for t in jnp.split(x, towers, axis=-1)], axis=-1)


register("alexnet", AlexNet)
register("alexnet_torchvision", functools.partial(
    AlexNet, filters=TORCHVISION_FILTERS, groups=(1,) * 5, lrn=False, adaptive_pool=True,
    dropout_at=("fc6", "fc7"), weight_init="torchvision"))
register("alexnet_bn", functools.partial(AlexNet, lrn=False, batch_norm=True))


# ---------------------------------------------------------------------------- converter

# torchvision.models.alexnet: indices of the convs in ``features`` and of the linear
# layers in ``classifier`` (Dropout, Linear, ReLU, Dropout, Linear, ReLU, Linear).
_TV_CONVS = (0, 3, 6, 8, 10)
_TV_FCS = (1, 4, 6)


@tc.register_converter("alexnet_torchvision")
def convert_torchvision_alexnet(sd: tc.StateDict, model: Any = None) -> dict:
  """torchvision ``alexnet`` state dict -> variables of ``alexnet_torchvision``."""
  del model  # the layout is fixed; convert() checks the shapes against the model
  params = {f"conv{i + 1}": tc.conv(sd, f"features.{j}", bias=True)
            for i, j in enumerate(_TV_CONVS)}
  channels = np.shape(sd.get("features.10.weight"))[0]
  params["fc6"] = tc.dense_after_flatten(sd, f"classifier.{_TV_FCS[0]}", (channels, 6, 6))
  params["fc7"] = tc.dense(sd, f"classifier.{_TV_FCS[1]}")
  params["fc8"] = tc.dense(sd, f"classifier.{_TV_FCS[2]}")
  return {"params": params}
