"""The LeNets: LeNet-1989 (zip codes) and LeNet-5 (1998). LeNet-5 is documented at
:class:`LeNet5`, further down; this docstring covers LeNet-1989.

LeNet-1989: LeCun et al. 1989, "Backpropagation applied to handwritten zip code
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

import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from models import register
from models.layers import (ACTIVATIONS, Conv, check_choice, check_dropout, conv_general_dilated,
                           get_activation, max_pool)

Array = jax.Array
Initializer = Callable[..., Array]

# H1 maps read by each of the three blocks of four H2 maps (see module docstring).
H2_INPUT_MAPS: tuple[tuple[int, ...], ...] = (
    (0, 1, 2, 3, 4, 5, 6, 7),
    (4, 5, 6, 7, 8, 9, 10, 11),
    (0, 1, 2, 3, 8, 9, 10, 11),
)


WEIGHT_INITS = ("fan_in", "sqrt_fan_in")


def lecun_uniform_init(mode: str) -> Initializer:
  """Uniform init in [-2.4/s, 2.4/s], s = F for ``'fan_in'``, sqrt(F) for ``'sqrt_fan_in'``.

  F is the fan-in of one unit: the product of all kernel dimensions but the last, which
  for a grouped conv kernel (kh, kw, in_per_group, out) counts only the maps it sees.
  """
  check_choice(None, "weight_init", mode, WEIGHT_INITS)

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
    y = conv_general_dilated(
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

  def __post_init__(self) -> None:
    super().__post_init__()
    check_choice(self, "activation", self.activation, ACTIVATIONS)
    check_choice(self, "output_activation", self.output_activation, (None, *ACTIVATIONS))
    check_dropout(self, "h3_dropout", self.h3_dropout)
    check_choice(self, "weight_init", self.weight_init, WEIGHT_INITS)

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


# ----------------------------------------------------------------------------
# LeNet-5: LeCun, Bottou, Bengio, Haffner (1998), "Gradient-based learning applied to
# document recognition", Proc. IEEE 86(11), Sec. II.B.

# C3's connections to S2 (the paper's Table I): C3 map i reads the S2 maps C3_TABLE[i].
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),  # 3 contiguous
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1),
    (5, 0, 1, 2),  # 4 contiguous
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),  # 4 discontinuous
    (0, 1, 2, 3, 4, 5),  # all six
)

# The output RBF units' fixed codes: stylised 7x12 bitmaps of the ten digits and of the
# blank ("none of the above", class 10), +1 for ink and -1 for background (the paper's
# Fig. 3 shows them as pictures; these are our drawing of them, as the paper gives no
# numbers).
RBF_BITMAPS: tuple[str, ...] = (
    """
  .......
  ..###..
  .#...#.
  #.....#
  #.....#
  #.....#
  #.....#
  #.....#
  #.....#
  .#...#.
  ..###..
  .......""", """
  .......
  ...#...
  ..##...
  .#.#...
  ...#...
  ...#...
  ...#...
  ...#...
  ...#...
  ...#...
  .#####.
  .......""", """
  .......
  .#####.
  #.....#
  ......#
  ......#
  .....#.
  ...##..
  ..#....
  .#.....
  #......
  #######
  .......""", """
  .......
  #######
  .....#.
  ....#..
  ...#...
  ..###..
  .....#.
  ......#
  ......#
  #.....#
  .#####.
  .......""", """
  .......
  .....#.
  ....##.
  ...#.#.
  ..#..#.
  .#...#.
  #....#.
  #######
  .....#.
  .....#.
  .....#.
  .......""", """
  .......
  #######
  #......
  #......
  ######.
  ......#
  ......#
  ......#
  ......#
  #.....#
  .#####.
  .......""", """
  .......
  ...###.
  ..#....
  .#.....
  #......
  ######.
  #.....#
  #.....#
  #.....#
  #.....#
  .#####.
  .......""", """
  .......
  #######
  ......#
  .....#.
  ....#..
  ...#...
  ...#...
  ..#....
  ..#....
  ..#....
  ..#....
  .......""", """
  .......
  .#####.
  #.....#
  #.....#
  #.....#
  .#####.
  #.....#
  #.....#
  #.....#
  #.....#
  .#####.
  .......""", """
  .......
  .#####.
  #.....#
  #.....#
  #.....#
  #.....#
  .######
  ......#
  .....#.
  ....#..
  .###...
  .......""",
    # Class 10, "none of the above" (configs/lenet5.py:background): the blank bitmap, the
    # space character of the paper's ASCII set, all background.
    "\n" + "\n".join(["......."] * 12),
)


def rbf_codes(num_classes: int) -> Array:
  """The (num_classes, 84) fixed RBF centres: the digit and blank bitmaps, then random
  +-1 codes.

  Classes beyond the digits and the blank (the paper's full ASCII set) get codes drawn
  at random from a fixed seed, as the paper did for its 96-class "ASCII" output layer when
  bitmaps are not wanted.
  """
  rows = []
  for bitmap in RBF_BITMAPS[:num_classes]:
    pixels = "".join(bitmap.split())
    assert len(pixels) == 84, len(pixels)
    rows.append([1.0 if p == "#" else -1.0 for p in pixels])
  if num_classes > len(RBF_BITMAPS):
    key = jax.random.key(1998)
    extra = jax.random.rademacher(key, (num_classes - len(RBF_BITMAPS), 84), jnp.float32)
    return jnp.concatenate([jnp.asarray(rows, jnp.float32), extra])
  return jnp.asarray(rows, jnp.float32)


class Subsampling(nn.Module):
  """LeNet-5's S2/S4: each unit adds its 2x2 inputs, multiplies the sum by one trainable
  coefficient per map and adds one trainable bias per map (2 parameters per map)."""

  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    maps = x.shape[-1]
    coef = self.param("coef", nn.initializers.constant(0.25), (maps,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (maps,), jnp.float32)
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return s * coef.astype(self.dtype) + bias.astype(self.dtype)


class PartialConv(nn.Module):
  """A convolution in which output map i sees only the input maps ``table[i]``.

  The parameters are one kernel per connection of the table, ``kernel`` of shape
  (kh, kw, connections), and one bias per output map: C3 has exactly the paper's
  60 x 25 + 16 = 1,516. They are scattered into a dense (kh, kw, in, out) kernel whose
  other entries are zero, and applied as one ordinary convolution: on a CPU that is
  ~30x faster to differentiate than grouped convolutions over gathered maps.
  """

  table: tuple[tuple[int, ...], ...]
  kernel_size: tuple[int, int]
  kernel_init: Initializer = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    in_idx = [i for maps in self.table for i in maps]
    out_idx = [o for o, maps in enumerate(self.table) for _ in maps]

    def init(key, shape, dtype=jnp.float32):
      # Each connection's kernel has the fan-in of its output map (len(maps) * kh * kw).
      fan = {o: len(maps) for o, maps in enumerate(self.table)}
      keys = jax.random.split(key, len(self.table))
      per_map = [self.kernel_init(keys[o], (*self.kernel_size, fan[o], 1), dtype)[..., 0]
                 for o in range(len(self.table))]
      return jnp.concatenate(per_map, axis=-1)

    kernel = self.param("kernel", init, (*self.kernel_size, len(in_idx)), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (len(self.table),), jnp.float32)
    dense = jnp.zeros((*self.kernel_size, x.shape[-1], len(self.table)), jnp.float32)
    dense = dense.at[:, :, jnp.asarray(in_idx), jnp.asarray(out_idx)].set(kernel)
    y = conv_general_dilated(
        x, dense.astype(self.dtype), (1, 1), "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias.astype(self.dtype)


class WindowDense(nn.Module):
  """A layer whose units each see a whole ``kernel_size`` window of all input maps (C5,
  fc 500): a dense layer at the training size, a sliding window (a VALID convolution)
  on a larger map. Parameters ``kernel`` (kh, kw, in, features) and ``bias`` either way;
  the dense path is the same arithmetic, and ~20x faster to differentiate on a CPU."""

  features: int
  kernel_size: tuple[int, int]
  kernel_init: Initializer = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", self.kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    kernel = kernel.astype(self.dtype)
    if x.shape[1:3] == self.kernel_size:
      y = (x.reshape(x.shape[0], -1) @ kernel.reshape(-1, self.features))[:, None, None]
    else:
      y = conv_general_dilated(x, kernel, (1, 1), "VALID",
                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias.astype(self.dtype)


class LeNet5(nn.Module):
  """LeNet-5 (LeCun et al. 1998), faithful, and the "modern" LeNet-5 of Caffe's examples.

  Faithful (``variant='1998'``; 32x32x1 input, MNIST padded by 2):

    C1   6 maps 28x28, 5x5 conv                               156 params
    S2   6 maps 14x14, trainable 2x2 subsampling                12
    C3  16 maps 10x10, 5x5 conv, partial table (C3_TABLE)    1,516
    S4  16 maps 5x5, trainable subsampling                      32
    C5 120 maps 1x1, 5x5 conv over all of S4                48,120
    F6  84 units                                            10,164
    out 10 Euclidean RBF units with fixed +-1 codes              0
                                                     total  60,000

  Every layer up to F6 is squashed by ``1.7159 tanh(2a/3)`` (the paper's eq. 6 with
  A = 1.7159, S = 2/3). Output unit i computes ``y_i = sum_j (x_j - w_ij)^2``, the
  squared distance between F6's state and class i's code (a 7x12 bitmap, ``RBF_BITMAPS``);
  the model returns ``-y`` as logits, so the argmax is the nearest code.

  Choices:

  * Loss. The paper's MAP criterion (eq. 9) is
    ``y_D + log(exp(-j) + sum_i exp(-y_i))``; with logits ``-y`` that is softmax
    cross-entropy over the ten classes plus one "rubbish" class of constant logit -j:
    the loss, not the model, adds it (``config.map_j``, training/losses.py), so the
    model's outputs stay the ten classes' ``-y``. The paper does not give j;
    configs/lenet5.py:per_pattern takes j = 5, chosen on 10,000 held-out training
    digits; its batch-16 default trains with plain cross-entropy, the ``j -> inf``
    limit, which does better there (README, Results).
  * Initialisation: uniform in ``[-2.4/F, 2.4/F]`` with F the fan-in, as in the paper
    (``weight_init='fan_in'``); subsampling coefficients start at 1/4 (an average).
  * RBF codes are fixed (not trainable) and not counted, as in the paper's 60,000.
  * Optimiser. The paper's stochastic diagonal Levenberg-Marquardt is
    ``optimizer=sdlm`` (training/sdlm.py), the default of configs/lenet5.py.

  Modern (``variant='modern'``; 28x28x1, the Caffe/PyTorch-tutorial network):
  conv 20@5x5, 2x2 max-pool, conv 50@5x5, 2x2 max-pool, fc 500, ReLU, fc 10:
  520 + 25,050 + 400,500 + 5,010 = 431,080 params. Caffe's example has no activation
  after the convolutions; we put a ReLU after each (``modern_conv_activation='relu'``,
  the common modern reading); ``'identity'`` gives Caffe's network exactly. fc 500 is
  followed by a ReLU (``modern_fc_activation``; ``'tanh'`` with a tanh
  ``modern_conv_activation`` gives the all-tanh twin of Krizhevsky et al.'s Fig. 1).

  Both are fully convolutional, as the LeNet papers' sliding-window (SDNN) demos: C5 and
  fc 500 are convolutions whose kernel covers the whole map at the training size, and
  F6/out (fc 10) act on the channel axis. On a larger input the output is a map of
  class scores, ``(N, H', W', classes)``: a 32x64 image gives a row of 9 outputs for
  the faithful net (1 x 8 for the modern one on 28x56). At the training size the output
  is ``(N, classes)``.
  """

  num_classes: int = 10
  variant: str = "1998"  # "1998" | "modern"
  weight_init: str = "fan_in"  # 1998 variant: "fan_in" (paper) | "sqrt_fan_in"
  modern_conv_activation: str = "relu"
  modern_fc_activation: str = "relu"  # after fc 500
  dropout: float = 0.0  # modern variant: before the last layer (not in either original)
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_choice(self, "variant", self.variant, ("1998", "modern"))
    check_choice(self, "weight_init", self.weight_init, WEIGHT_INITS)
    check_choice(self, "modern_conv_activation", self.modern_conv_activation, ACTIVATIONS)
    check_choice(self, "modern_fc_activation", self.modern_fc_activation, ACTIVATIONS)
    check_dropout(self, "dropout", self.dropout)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    x = x.astype(self.dtype)
    if self.variant == "1998":
      x = self._lenet5_1998(x)
    else:  # modern
      x = self._lenet5_modern(x, train)
    if x.shape[1:3] == (1, 1):
      x = x.reshape(x.shape[0], -1)
    return x

  def _lenet5_1998(self, x: Array) -> Array:
    init = lecun_uniform_init(self.weight_init)
    conv = lambda n, name: Conv(n, (5, 5), padding="VALID", kernel_init=init,
                                dtype=self.dtype, param_dtype=jnp.float32, name=name)
    act = get_activation("scaled_tanh")
    x = act(conv(6, "C1")(x))
    x = act(Subsampling(self.dtype, name="S2")(x))
    x = act(PartialConv(C3_TABLE, (5, 5), init, self.dtype, name="C3")(x))
    x = act(Subsampling(self.dtype, name="S4")(x))
    x = act(WindowDense(120, (5, 5), init, self.dtype, name="C5")(x))
    x = act(nn.Dense(84, kernel_init=init, dtype=self.dtype, param_dtype=jnp.float32,
                     name="F6")(x))
    # F6's state, for SDLM's "rbf_mle" curvature (kept only where the caller makes
    # "intermediates" mutable).
    self.sow("intermediates", "rbf_input", x)
    # Euclidean RBF output: squared distance to each fixed code, as logits -y.
    codes = rbf_codes(self.num_classes).astype(self.dtype)
    y = (jnp.sum(jnp.square(x), -1, keepdims=True) - 2.0 * x @ codes.T
         + jnp.sum(jnp.square(codes), -1))
    return -y

  def _lenet5_modern(self, x: Array, train: bool) -> Array:
    conv = lambda n, k, name: Conv(n, (k, k), padding="VALID", dtype=self.dtype,
                                   param_dtype=jnp.float32, name=name)
    act = get_activation(self.modern_conv_activation)
    pool = lambda x: max_pool(x, 2, 2)
    x = pool(act(conv(20, 5, "conv1")(x)))
    x = pool(act(conv(50, 5, "conv2")(x)))
    fc_act = get_activation(self.modern_fc_activation)
    x = fc_act(WindowDense(500, (4, 4), dtype=self.dtype, name="fc1")(x))  # 4x4x50 -> 500
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                    name="fc2")(x)


register("lenet5", functools.partial(LeNet5, variant="1998"))
register("lenet5_modern", functools.partial(LeNet5, variant="modern"))
