"""VGG: Simonyan & Zisserman 2014, "Very Deep Convolutional Networks for Large-Scale Image
Recognition" (ICLR 2015, arXiv 1409.1556).

The paper showed that depth matters: stacks of small 3x3 convolutions (two of them see a
5x5 region, three a 7x7 one, with fewer parameters and more non-linearities than one
large kernel) take a plain ConvNet from 11 to 19 weight layers and ILSVRC-2014 top-5
error to 7.3% (2nd in classification, 1st in localisation). Its uniform design became the
default backbone of the following years.

Architecture (Table 1): five stages of 3x3 convolutions (stride 1, padding 1, ReLU) with
64, 128, 256, 512, 512 filters, each stage closed by a 2x2 max-pool of stride 2; then fc6
4096, fc7 4096 (ReLU and dropout 0.5 after each) and fc8 with one unit per class. The
configurations differ in the convs per stage (``CFGS``; 'M' is a max-pool):

| variant | config | weight layers | params      | with BN (`_bn`) |
|---------|--------|---------------|-------------|-----------------|
| vgg11   | A      | 11            | 132,863,336 | 132,868,840     |
| vgg13   | B      | 13            | 133,047,848 | 133,053,736     |
| vgg16   | D      | 16            | 138,357,544 | 138,365,992     |
| vgg19   | E      | 19            | 143,667,240 | 143,678,248     |

(1000 classes; BN adds a scale and a shift per conv channel, and as many running
statistics in ``batch_stats``, not counted.) Configs A-LRN and C (with 1x1 convs) of the
paper are not registered; C's 1x1 convs do not fit a list of widths.

Choices, following torchvision (whose ImageNet weights load with
``torch_convert.convert('vgg16', ...)``):

* Adaptive average pool to 7x7 before fc6. At 224 input the last pool gives 7x7 and it is
  the identity, as in the paper; on smaller inputs it repeats cells, so the same weights
  run at any size from 32x32 (the smallest: five 2x2 pools) upwards. The paper instead
  applied the FC layers convolutionally at test time ("dense evaluation", Sec. 3.2):
  that is ``VGG.dense``, ``model.apply(variables, x, method="dense")``, with the same
  parameters (fc6 as a 7x7 conv, fc7 and fc8 as 1x1 convs, the class score map averaged
  over space; equal to the normal logits at 224x224).
* Dropout after the ReLUs of fc6 and fc7, i.e. on the inputs of fc7 and fc8, as in the
  paper ("dropout regularisation for the first two fully-connected layers").
* BN variants (``batch_norm=True``; not in the paper, from Ioffe & Szegedy 2015): BN
  (epsilon 1e-5) after every conv, before its ReLU. The convs keep their biases there, as
  in torchvision, so its checkpoints load and the counts above hold.
* Init. The paper trained net A from N(0, 0.01) weights and initialised the deeper nets'
  first four convs and FC layers from it, then noted that Glorot & Bengio's init works
  without that pre-training (``weight_init='glorot'``). The default ``'torchvision'`` is
  He normal (fan-out) for convs, N(0, 0.01) for the FC layers and zero biases; torchvision
  trained its VGG weights of every depth from scratch with it at lr 0.01.
* Scale jittering of training images (S in [256, 512]) and multi-scale, multi-crop
  testing live in the input pipeline (``configs/vgg.py``); its ``dense`` eval mode runs
  ``VGG.dense`` at each test scale Q.

Sec. 2.3's argument and Sec. 4.1's test of it: ``stack='single'`` replaces each stage's
stack of n 3x3 convs by one (2n+1)x(2n+1) conv of the stage's width (n=2: one 5x5, n=3:
one 7x7), the same receptive field with one ReLU instead of n. On net B (``vgg13``) that
is the paper's "shallow net with five 5x5 conv. layers", whose top-1 error was 7% higher
than B's. The paper says no more about that net; we keep everything else of B (pools,
fc layers, init). A stage of one conv (net A's first two) keeps its 3x3. The conv is
named ``conv{stage}_1``. Default ``'3x3'``: the paper's nets.

Layers are named as in the paper's released Caffe models (conv1_1 ... conv5_4, fc6-fc8).
``width`` scales every conv and the hidden FC layers (1.0 is the paper's); tests and the
``tiny`` config use 1/8.
"""

from __future__ import annotations

import collections
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
from flax.linen.dtypes import promote_dtype
import jax
import jax.numpy as jnp

from models import register
from models import torch_convert as tc
from models.layers import (Conv, adaptive_avg_pool, check_choice, check_dropout, check_option,
                           check_positive, conv_general_dilated, max_pool)

Array = jax.Array
Initializer = Callable[..., Array]

# Table 1 of the paper: filters of each 3x3 conv, 'M' for a 2x2 max-pool.
CFGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"),
}
DEPTHS = {11: "A", 13: "B", 16: "D", 19: "E"}
INITS = ("torchvision", "glorot")
# "3x3": the paper's stacks; "single": each stage's n stacked 3x3 convs as one
# (2n+1)x(2n+1) conv (Sec. 4.1's 5x5 net derived from B).
STACKS = ("3x3", "single")

# torchvision's VGG init: kaiming_normal_(mode="fan_out", nonlinearity="relu") for convs.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class VGG(nn.Module):
  """A VGG net given by ``cfg``, its conv widths and pools; see the module docstring."""

  num_classes: int = 1000
  cfg: Sequence[int | str] = CFGS["D"]
  batch_norm: bool = False
  hidden_units: int = 4096
  dropout_rate: float = 0.5
  weight_init: str = "torchvision"  # torchvision | glorot (not `init`: Module.init)
  width: float = 1.0  # multiplies the filters and hidden units (tests use 1/8)
  stack: str = "3x3"  # 3x3 | single: one (2n+1)x(2n+1) conv per stage of n 3x3 convs
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_option(len(self.cfg) > 0 and all(v == "M" or (isinstance(v, int) and v > 0)
                                           for v in self.cfg),
                 self, "cfg", tuple(self.cfg), "a non-empty sequence of filters > 0 and 'M'")
    check_positive(self, "hidden_units", self.hidden_units)
    check_dropout(self, "dropout_rate", self.dropout_rate)
    check_choice(self, "weight_init", self.weight_init, INITS)
    check_positive(self, "width", self.width)
    check_choice(self, "stack", self.stack, STACKS)

  def _inits(self, conv: bool) -> dict[str, Initializer]:
    if self.weight_init == "torchvision":
      kernel = he_normal_fan_out if conv else nn.initializers.normal(0.01)
    else:  # glorot
      kernel = nn.initializers.glorot_uniform()
    return dict(kernel_init=kernel, bias_init=nn.initializers.zeros)

  def _scaled(self, n: int) -> int:
    return max(1, int(round(n * self.width)))

  @nn.compact
  def __call__(self, x: Array, train: bool, dense: bool = False) -> Array:
    """Logits ``(B, num_classes)``. ``dense=True`` (eval only) is :meth:`dense`."""
    if dense and train:
      raise ValueError("VGG dense evaluation is a test-time protocol: use train=False")
    common = dict(dtype=self.dtype, param_dtype=jnp.float32)
    x = x.astype(self.dtype)
    convs_in_stage = collections.Counter(
        stage for stage, _, features in _conv_layers(self.cfg) if features != "M")
    for stage, i, features in _conv_layers(self.cfg):
      if features == "M":
        x = max_pool(x, 2, 2)
        continue
      k, name = 3, f"{stage}_{i}"
      if self.stack == "single":
        n = convs_in_stage[stage]
        if i < n:  # the stage's last conv stands for its whole stack
          continue
        k, name = 2 * n + 1, f"{stage}_1"
      x = Conv(self._scaled(features), (k, k), padding=((k // 2, k // 2),) * 2,
               name=f"conv{name}", **self._inits(conv=True), **common)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         name=f"bn{name}", **common)(x)
      x = nn.relu(x)

    if 0 in x.shape[1:3]:
      raise ValueError(f"input {tuple(x.shape[1:3])} is too small: VGG's five pools need at "
                       "least 32x32 (224x224 in the paper)")
    hidden = self._scaled(self.hidden_units)
    if dense:  # fc6 as a 7x7 VALID conv; a side under 7 is stretched as below (< 224 input)
      x = adaptive_avg_pool(x, (max(x.shape[1], 7), max(x.shape[2], 7)))
      x = _DenseAsConv(hidden, (7, 7), name="fc6", **self._inits(conv=False), **common)(x)
    else:
      x = adaptive_avg_pool(x, (7, 7))
      x = x.reshape(x.shape[0], -1)  # (h, w, c) order; see dense_after_flatten
      x = nn.Dense(hidden, name="fc6", **self._inits(conv=False), **common)(x)
    x = nn.relu(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    # On a (B, H, W, C) map a Dense is a 1x1 conv: fc7 and fc8 need no change.
    x = nn.Dense(hidden, name="fc7", **self._inits(conv=False), **common)(x)
    x = nn.relu(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, name="fc8", **self._inits(conv=False), **common)(x)
    if dense:  # the class score map, spatially averaged
      x = jnp.mean(x, axis=(1, 2))
    return x

  def dense(self, x: Array) -> Array:
    """Dense evaluation (Sec. 3.2): logits ``(B, num_classes)`` of the fully
    convolutional net, with the parameters of ``__call__``.

    ``model.apply(variables, x, method="dense")`` (the same as ``model.apply(variables,
    x, train=False, dense=True)``; always eval: BN running statistics, no dropout). The
    adaptive pool is skipped; fc6 runs as a 7x7 VALID conv whose kernel is its dense
    kernel read as (7, 7, C, hidden), the (h, w, c) order in which ``__call__`` flattens
    the 7x7xC map; fc7 and fc8 run as 1x1 convs; the class score map
    (``H//32 - 6`` x ``W//32 - 6`` at an H x W input) is averaged over
    space. Any input of 224x224 or more (at any ``width``) gives the paper's net; at
    exactly 224 (a 7x7 map) it equals ``__call__``. Smaller inputs, down to 32x32, have
    the sides of their map under 7 stretched to 7 by the adaptive pool first, as in
    ``__call__``.
    """
    return self(x, train=False, dense=True)


class _DenseAsConv(nn.Module):
  """A dense layer's parameters (``kernel`` (kh*kw*C, features), ``bias``: the names,
  shapes and init of ``nn.Dense`` on a flattened kh x kw x C map) run as a VALID
  convolution: the kernel's rows are read in (kh, kw, C) order, the row-major order of
  ``x.reshape(B, -1)`` on an NHWC map, so on a kh x kw map it is that dense layer."""

  features: int
  window: tuple[int, int]
  kernel_init: Initializer
  bias_init: Initializer
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    (kh, kw), c = self.window, x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (kh * kw * c, self.features),
                        self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv_general_dilated(x, kernel.reshape(kh, kw, c, self.features), (1, 1),
                             "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


def _conv_layers(cfg: Sequence[int | str]):
  """Yields ``(stage, index_in_stage, features or 'M')``; stages end at each pool."""
  stage, i = 1, 0
  for v in cfg:
    if v == "M":
      yield stage, i, v
      stage, i = stage + 1, 0
    else:
      i += 1
      yield stage, i, v


for _depth, _name in DEPTHS.items():
  register(f"vgg{_depth}", functools.partial(VGG, cfg=CFGS[_name]))
  register(f"vgg{_depth}_bn", functools.partial(VGG, cfg=CFGS[_name], batch_norm=True))


# ---------------------------------------------------------------------------- converter


def convert_torchvision_vgg(sd: tc.StateDict, model: Any = None, *,
                            cfg: Sequence[int | str], batch_norm: bool) -> dict:
  """torchvision ``vgg*`` / ``vgg*_bn`` state dict -> our variables.

  torchvision numbers the layers of ``features`` in order (conv, [BN,] ReLU per conv; one
  index per pool) and of ``classifier`` as Linear, ReLU, Dropout, Linear, ReLU, Dropout,
  Linear.
  """
  del model  # the layout is fixed by cfg; convert() checks the shapes against the model
  params, stats = {}, {}
  index, channels = 0, 0
  for stage, i, features in _conv_layers(cfg):
    if features == "M":
      index += 1
      continue
    params[f"conv{stage}_{i}"] = tc.conv(sd, f"features.{index}", bias=True)
    channels = params[f"conv{stage}_{i}"]["kernel"].shape[-1]
    if batch_norm:
      params[f"bn{stage}_{i}"], stats[f"bn{stage}_{i}"] = tc.batch_norm(
          sd, f"features.{index + 1}")
    index += 3 if batch_norm else 2
  params["fc6"] = tc.dense_after_flatten(sd, "classifier.0", (channels, 7, 7))
  params["fc7"] = tc.dense(sd, "classifier.3")
  params["fc8"] = tc.dense(sd, "classifier.6")
  variables = {"params": params}
  if batch_norm:
    variables["batch_stats"] = stats
  return variables


for _depth, _name in DEPTHS.items():
  for _bn in (False, True):
    tc.register_converter(f"vgg{_depth}" + ("_bn" if _bn else ""))(
        functools.partial(convert_torchvision_vgg, cfg=CFGS[_name], batch_norm=_bn))
