"""The five networks of LeCun (1989), "Generalization and network design strategies".

Y. le Cun, in Pfeifer, Schreter, Fogelman and Steels (eds), *Connectionism in Perspective*,
Elsevier 1989 (also Univ. of Toronto technical report CRG-TR-89-4, June 1989; no arXiv id).

The paper is the controlled experiment behind convolutional networks. On a small task
(16x16 handwritten digits, 320 for training and 160 for testing) it trains five networks
that differ only in how their hidden layers are wired, and shows that generalisation
improves as the number of *free parameters* falls while the number of *connections*
(the computation) rises: local receptive fields first, then weights shared across
positions ("feature maps"), at two levels. Net-5 is the direct ancestor of LeNet-1989
(models/lenet.py), which the same author scaled up to the zip codes the same year.

Architecture (16x16x1 input in [-1, 1], background -1; 10 outputs; every unit has its
own bias, also in a feature map):

  net-1  no hidden layer: 256 -> 10 fully connected
  net-2  H1: 12 units fully connected to the input
  net-3  H1: 8x8 units, each seeing a 3x3 input window, windows 2 pixels apart (stride 2);
         H2: 4x4 units, each seeing a 5x5 window of H1 at stride 2; no weight sharing
  net-4  H1: two 8x8 feature maps, each one shared 3x3 kernel at stride 2;
         H2: 4x4 locally connected units, each seeing 5x5 windows of both H1 maps
  net-5  H1 as net-4; H2: four 4x4 feature maps, shared 5x5 kernels over both H1 maps
         at stride 2
  out    10 units fully connected to the last hidden layer (to the input for net-1)

Connections count every multiply-add of one forward pass plus one per bias (a padded
input counts as a connection, so every unit of a layer has the same fan-in); free
parameters count weights once however many units share them. Per layer,
params / connections:

| net   | H1          | H2          | out       | free params | connections | paper test acc |
|-------|-------------|-------------|-----------|-------------|-------------|----------------|
| net-1 |             |             | 2570/2570 | 2,570       | 2,570       | 80.0%          |
| net-2 | 3084/3084   |             | 130/130   | 3,214       | 3,214       | 87.0%          |
| net-3 | 640/640     | 416/416     | 170/170   | 1,226       | 1,226       | 88.5%          |
| net-4 | 146/1280    | 816/816     | 170/170   | 1,132       | 2,266       | 94.0%          |
| net-5 | 146/1280    | 264/3264    | 650/650   | 1,060       | 5,194       | 98.4%          |

The totals are the counts of the paper's Table 1 (its full text was not available to us
to quote; the test accuracies are the paper's, on its own 160 test digits).
``connections(model)`` computes the per-layer counts; the tests check both columns.

Choices where the paper is ambiguous:

* Padding. 16 -> 8 with 3x3 windows at stride 2 and 8 -> 4 with 5x5 windows at stride 2
  both need padding: out = floor((n + pad_total - k) / 2) + 1 gives pad_total in {1, 2}
  for H1 and {3, 4} for H2. We pad 1 pixel on each side for H1 and 2 for H2, as
  models/lenet.py does for its 5x5 windows: window centres then fall on the even pixels
  (0, 2, ..., 14 of the input; 0, 2, 4, 6 of H1), and the last padded row and column are
  never read, so the effective padding is (1, 0) for H1 and (2, 1) for H2. (TensorFlow's
  'SAME' would pick (0, 1) and (1, 2), centring on the odd pixels instead.) The padding
  value is ``pad_value`` (default -1, blank paper for the input and tanh's "off" level for
  H1). In a locally connected layer the padded inputs only ever meet their own weights,
  so the value is absorbed by the unit's bias and changes nothing but the starting point.
* Activation. The paper's units use a symmetric squashing function (tanh-like) whose
  scale we do not have; we use ``'tanh'`` by default as models/lenet.py does, and
  ``'scaled_tanh'`` (1.7159 tanh(2x/3)) is one field away. Outputs are tanh too
  (``output_activation='tanh'``) for squared error on +-1 targets; ``None`` gives raw
  logits for cross-entropy.
* Initialisation. Uniform in [-2.4/sqrt(F), 2.4/sqrt(F)] with F the fan-in of a unit
  (``weight_init='sqrt_fan_in'``), as models/lenet.py and its faithful reproduction;
  ``'fan_in'`` is the zip-code paper's [-2.4/F, 2.4/F]. Biases start at zero,
  ``out_bias_init`` sets the output biases.
* Layout. NHWC; the fully connected layers read their input flattened as (h, w, c).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import register
from models.layers import (ACTIVATIONS, check_choice, check_option, check_positive,
                           get_activation)
from models.lenet import WEIGHT_INITS, UntiedBiasConv, lecun_uniform_init

Array = jax.Array
Initializer = Callable[..., Array]

# Receptive fields of the paper: (window, stride, padding on each side).
H1_GEOMETRY = (3, 2, 1)  # 16x16 -> 8x8
H2_GEOMETRY = (5, 2, 2)  # 8x8 -> 4x4
CONNECTIVITY = (None, "full", "local", "shared")


class LocallyConnected2D(nn.Module):
  """A 2-D layer with local receptive fields and *untied* weights: a convolution in
  which every output position has its own kernel (and its own bias).

  Params: ``kernel`` of shape (out_h, out_w, kh, kw, in_features, features) and ``bias``
  of shape (out_h, out_w, features). The input is padded with ``pad_value`` by
  ``padding`` on each side, then windows are taken at ``strides`` with no more padding.
  ``kernel_init`` is a convolution initializer: it is called once per output position
  with the kernel shape (kh, kw, in_features, features) of that unit, so its fan-in is
  the unit's.
  """

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: int = 0
  pad_value: float = 0.0
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    p = self.padding
    x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=self.pad_value)
    (kh, kw), (sh, sw) = self.kernel_size, self.strides
    out_h, out_w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    unit_shape = (kh, kw, x.shape[-1], self.features)

    def init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
      keys = jax.random.split(key, out_h * out_w)
      per_unit = jax.vmap(lambda k: self.kernel_init(k, unit_shape, dtype))(keys)
      return per_unit.reshape(shape)

    kernel = self.param("kernel", init, (out_h, out_w, *unit_shape), self.param_dtype)
    bias = self.param("bias", self.bias_init, (out_h, out_w, self.features), self.param_dtype)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    # lax wants the window and input channels fused as one "I" axis, channel-major.
    fused = kernel.transpose(0, 1, 4, 2, 3, 5).reshape(out_h, out_w, -1, self.features)
    y = jax.lax.conv_general_dilated_local(
        x, fused, window_strides=self.strides, padding="VALID", filter_shape=(kh, kw),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


def _out_size(n: int, geometry: tuple[int, int, int]) -> int:
  window, stride, pad = geometry
  return (n + 2 * pad - window) // stride + 1


class LeCun1989Net(nn.Module):
  """Net-1 ... net-5 of LeCun (1989); see the module docstring.

  ``h1`` and ``h2`` choose each hidden layer's wiring: ``None`` (no layer), ``'full'``
  (fully connected, ``h1_features`` units; H1 only), ``'local'`` (locally connected,
  ``*_features`` maps of untied units) or ``'shared'`` (``*_features`` feature maps with
  one kernel each and one bias per unit).
  """

  num_classes: int = 10
  h1: str | None = "shared"
  h1_features: int = 2
  h2: str | None = "shared"
  h2_features: int = 4
  activation: str = "tanh"
  output_activation: str | None = "tanh"
  pad_value: float = -1.0
  weight_init: str = "sqrt_fan_in"
  out_bias_init: float = 0.0
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_choice(self, "h1", self.h1, CONNECTIVITY)
    h2_choices = (None, "local", "shared") if self.h1 in ("local", "shared") else (None,)
    check_option(self.h2 in h2_choices, self, "h2", self.h2,
                 f"{', '.join(map(repr, h2_choices))} with h1={self.h1!r} (the paper's H2 is "
                 "local or shared, on a local or shared H1)")
    for field in ("h1_features", "h2_features"):
      check_positive(self, field, getattr(self, field))
    check_choice(self, "activation", self.activation, ACTIVATIONS)
    check_choice(self, "output_activation", self.output_activation, (None, *ACTIVATIONS))
    check_choice(self, "weight_init", self.weight_init, WEIGHT_INITS)

  def setup(self) -> None:
    init = lecun_uniform_init(self.weight_init)
    common = dict(dtype=self.dtype, param_dtype=jnp.float32, kernel_init=init)
    self.H1 = self._hidden(self.h1, self.h1_features, H1_GEOMETRY, common)
    self.H2 = self._hidden(self.h2, self.h2_features, H2_GEOMETRY, common)
    self.out = nn.Dense(self.num_classes,
                        bias_init=nn.initializers.constant(self.out_bias_init), **common)

  def _hidden(self, kind: str | None, features: int, geometry: tuple[int, int, int],
              common: dict[str, Any]) -> nn.Module | None:
    window, stride, pad = geometry
    spatial = dict(features=features, kernel_size=(window, window), strides=(stride, stride),
                   padding=pad, pad_value=self.pad_value, **common)
    if kind == "full":
      return nn.Dense(features, **common)
    if kind == "local":
      return LocallyConnected2D(**spatial)
    if kind == "shared":
      return UntiedBiasConv(**spatial)
    return None

  def __call__(self, x: Array, train: bool) -> Array:
    del train  # no dropout or batch norm in 1989
    act = get_activation(self.activation)
    x = x.astype(self.dtype)
    if self.h1 == "full":
      x = x.reshape(x.shape[0], -1)
    if self.H1 is not None:
      x = act(self.H1(x))
    if self.H2 is not None:
      x = act(self.H2(x))
    x = self.out(x.reshape(x.shape[0], -1))
    if self.output_activation is not None:
      x = get_activation(self.output_activation)(x)
    return x


def connections(model: LeCun1989Net,
                input_shape: tuple[int, int, int] = (16, 16, 1)) -> dict[str, int]:
  """Connections per layer (multiply-adds of one forward pass, plus one per bias).

  Every unit of a layer counts its full window, padded inputs included. Returns
  ``{'H1': ..., 'H2': ..., 'out': ..., 'total': ...}`` with absent layers left out.
  """
  h, w, c = input_shape
  counts = {}
  for name, kind, features, geometry in (("H1", model.h1, model.h1_features, H1_GEOMETRY),
                                         ("H2", model.h2, model.h2_features, H2_GEOMETRY)):
    if kind is None:
      continue
    if kind == "full":
      fan_in, (h, w, c) = h * w * c, (1, 1, features)
    else:
      fan_in = geometry[0] ** 2 * c
      h, w, c = _out_size(h, geometry), _out_size(w, geometry), features
    counts[name] = h * w * c * (fan_in + 1)
  counts["out"] = model.num_classes * (h * w * c + 1)
  counts["total"] = sum(counts.values())
  return counts


# The five networks of the paper, with one-line descriptions for tables and plots.
NETS: dict[str, dict[str, Any]] = {
    "net1": dict(h1=None, h2=None),
    "net2": dict(h1="full", h1_features=12, h2=None),
    "net3": dict(h1="local", h1_features=1, h2="local", h2_features=1),
    "net4": dict(h1="shared", h1_features=2, h2="local", h2_features=1),
    "net5": dict(h1="shared", h1_features=2, h2="shared", h2_features=4),
}
DESCRIPTIONS: dict[str, str] = {
    "net1": "no hidden layer, fully connected",
    "net2": "12 hidden units, fully connected",
    "net3": "2 locally connected layers (8x8, 4x4), no sharing",
    "net4": "2 shared 8x8 maps, then 4x4 locally connected",
    "net5": "2 shared 8x8 maps, then 4 shared 4x4 maps",
}

for _name, _kwargs in NETS.items():
  register(f"lecun1989_{_name}", functools.partial(LeCun1989Net, **_kwargs))
