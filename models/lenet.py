"""LeNet-1989: LeCun et al. 1989, "Backpropagation applied to handwritten zip code
recognition" (Neural Computation 1(4)).

The paper that showed a convolutional network trained end to end by backpropagation
on a real task (USPS zip-code digits). It introduced the ideas every later CNN keeps:
local receptive fields, weights shared across positions (feature maps, i.e.
convolution), several maps per layer, and subsampling by striding, so that the network
learns its own feature extractors from pixels instead of being given hand-designed ones.

Architecture (16x16x1 input, values in [-1, 1], background -1):

  H1   12 maps 8x8, 5x5 kernels, stride 2, shared weights, untied biases
  H2   12 maps 4x4, 5x5 kernels, stride 2, each map sees 8 of the 12 H1 maps
  H3   30 units, fully connected to H2
  out  10 units, fully connected to H3

| variant   | params | H1    | H2    | H3    | out | MACs   |
|-----------|--------|-------|-------|-------|-----|--------|
| lenet1989 | 9,760  | 1,068 | 2,592 | 5,790 | 310 | 63,660 |

Choices where the paper is ambiguous or where this implementation departs from it:

* Padding. 16x16 -> 8x8 with 5x5 kernels at stride 2 needs the input padded by 2 on
  each side; so does 8x8 -> 4x4 in H2. We pad with ``pad_value`` (default -1, the
  background level, so the border looks like blank paper) as the well-known faithful
  PyTorch reproduction (karpathy/lecun1989-repro) does. -1 is also tanh's "off" level
  for H1's outputs; with ``activation='relu'`` a ``pad_value`` of 0 is the analogue.
* H2 connectivity. The paper says each H2 map combines 8 of the 12 H1 maps but does not
  give the table. We use the common choice: H2 maps 0-3 read H1 maps 0-7, maps 4-7 read
  4-11, maps 8-11 read {0-3, 8-11} (``H2_INPUT_MAPS``). It runs as one grouped
  convolution over the gathered H1 channels.
* Untied biases. The paper shares weights within a map but gives every unit its own
  bias, so H1 has a (8, 8, 12) bias and H2 a (4, 4, 12) bias.
* Activation. The paper uses a "scaled hyperbolic tangent" without giving the scale.
  The default is plain ``'tanh'`` as in the faithful reproduction, which reaches 4.09%
  USPS test error (paper: 5.0%); ``'scaled_tanh'`` (1.7159 tanh(2x/3), LeCun 1998) is
  available. Outputs are tanh too (``output_activation='tanh'``): the paper trains
  with mean-squared error on +-1 targets. Use ``output_activation=None`` for raw
  logits and softmax cross-entropy.
* Initialisation. The paper draws weights uniformly from [-2.4/F, 2.4/F], F the fan-in
  (``weight_init='fan_in'``). The reproduction found that too small to train in the
  paper's 23 passes and used 2.4/sqrt(F) (``weight_init='sqrt_fan_in'``, the default,
  since it trains to the paper's error). Biases start at zero; ``out_bias_init=-1``
  starts the outputs at the target of 9 classes out of 10, as the reproduction does.
  (The field is not called ``init``: that would shadow ``flax.linen.Module.init``.)
* Dropout (not in the paper; for the modern recipe). ``h3_dropout`` drops H3's inputs,
  the 192 H2 units: H3 is the layer with most parameters, and this is where the modern
  reproduction puts it.
* Layout. Activations are NHWC, so H3 reads H2 flattened as (h, w, c); porting weights
  from an NCHW implementation needs H3's kernel rows permuted.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import register
from models.layers import get_activation

Array = jax.Array
Initializer = Callable[..., Array]

# H1 maps read by each of the three blocks of four H2 maps (see module docstring).
H2_INPUT_MAPS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 3, 4, 5, 6, 7),
    (4, 5, 6, 7, 8, 9, 10, 11),
    (0, 1, 2, 3, 8, 9, 10, 11),
)


def lecun_uniform_init(mode: str) -> Initializer:
  """Uniform init in [-2.4/s, 2.4/s], s = F for ``'fan_in'``, sqrt(F) for ``'sqrt_fan_in'``.

  F is the fan-in of one unit: the product of all kernel dimensions but the last, which
  for a grouped conv kernel (kh, kw, in_per_group, out) counts only the maps it sees.
  """
  if mode not in ("fan_in", "sqrt_fan_in"):
    raise ValueError(f"unknown weight_init {mode!r}; valid: 'fan_in', 'sqrt_fan_in'")

  def init(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
    fan_in = math.prod(shape[:-1])
    limit = 2.4 / (fan_in if mode == "fan_in" else math.sqrt(fan_in))
    return jax.random.uniform(key, shape, dtype, -limit, limit)

  return init


class UntiedBiasConv(nn.Module):
  """Strided conv with weights shared across positions but one bias per output unit.

  Pads the input with a constant, optionally gathers input channels (``input_maps``)
  so that a partial connection table becomes one grouped conv, then adds a bias of
  shape (out_h, out_w, features). Params: ``kernel`` and ``bias``.
  """

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int]
  padding: int
  pad_value: float
  input_maps: tuple[int, ...] | None = None
  feature_group_count: int = 1
  kernel_init: Initializer = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    p = self.padding
    x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=self.pad_value)
    if self.input_maps is not None:
      x = jnp.take(x, jnp.asarray(self.input_maps), axis=-1)
    in_per_group = x.shape[-1] // self.feature_group_count
    kernel = self.param("kernel", self.kernel_init,
                        (*self.kernel_size, in_per_group, self.features), self.param_dtype)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    y = jax.lax.conv_general_dilated(
        x, kernel, window_strides=self.strides, padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=self.feature_group_count)
    bias = self.param("bias", nn.initializers.zeros, y.shape[1:], self.param_dtype)
    return y + bias.astype(y.dtype)


class LeNet1989(nn.Module):
  """LeNet-1989 for 16x16x1 digits; see the module docstring for the choices made."""

  num_classes: int = 10
  activation: str = "tanh"
  output_activation: str | None = "tanh"
  h3_dropout: float = 0.0
  pad_value: float = -1.0
  weight_init: str = "sqrt_fan_in"
  out_bias_init: float = 0.0
  dtype: Any = jnp.float32

  # setup() rather than @nn.compact so that each paper layer is an attribute that can
  # be applied on its own, e.g. ``model.apply(v, h1, method=lambda m, h: m.H2(h))``.
  def setup(self) -> None:
    init = lecun_uniform_init(self.weight_init)
    common = dict(dtype=self.dtype, param_dtype=jnp.float32, kernel_init=init)
    self.H1 = UntiedBiasConv(features=12, kernel_size=(5, 5), strides=(2, 2), padding=2,
                             pad_value=self.pad_value, **common)
    self.H2 = UntiedBiasConv(
        features=12, kernel_size=(5, 5), strides=(2, 2), padding=2,
        pad_value=self.pad_value,
        input_maps=tuple(i for maps in H2_INPUT_MAPS for i in maps),
        feature_group_count=len(H2_INPUT_MAPS), **common)
    self.H3 = nn.Dense(30, **common)
    self.H3_dropout = nn.Dropout(self.h3_dropout)
    self.out = nn.Dense(self.num_classes,
                        bias_init=nn.initializers.constant(self.out_bias_init), **common)

  def __call__(self, x: Array, train: bool) -> Array:
    act = get_activation(self.activation)
    x = x.astype(self.dtype)
    x = act(self.H1(x))
    x = act(self.H2(x))
    x = x.reshape(x.shape[0], -1)
    x = self.H3_dropout(x, deterministic=not train)  # drops H3's incoming connections
    x = act(self.H3(x))
    x = self.out(x)
    if self.output_activation is not None:
      x = get_activation(self.output_activation)(x)
    return x


register("lenet1989", LeNet1989)
