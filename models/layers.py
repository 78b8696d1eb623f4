"""Building blocks shared by more than one model family.

A block lives here once two families need it (timm's rule: reused, never copied).
Family-specific layers stay in their family's file.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Collection, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

import kernels
from kernels import onednn
from models import ModelOptionError

Array = jax.Array
ModuleDef = Any


# ---------------------------------------------------------------------------------------
# Checks of module options. A family's module runs them when it is built (in its
# ``__post_init__``, after ``super().__post_init__()``), so ``create_model`` with a bad
# option fails at once, before any tracing, with one line: what is wrong and what is valid.


def option_error(owner: Any, field: str, value: Any, valid: str,
                 problem: str = "invalid") -> ModelOptionError:
  """``'{problem} {Owner} {field} {value!r}; valid values: {valid}'`` as an error.

  ``owner``: the module whose field it is (its class names it), a name, or None.
  """
  who = "" if owner is None else f"{owner if isinstance(owner, str) else type(owner).__name__} "
  return ModelOptionError(f"{problem} {who}{field} {value!r}; valid values: {valid}")


def check_option(ok: bool, owner: Any, field: str, value: Any, valid: str) -> None:
  """Raises :func:`option_error` unless ``ok``."""
  if not ok:
    raise option_error(owner, field, value, valid)


def _holds(test: Callable[[], bool]) -> bool:
  try:
    return bool(test())
  except TypeError:  # a value of the wrong type: not valid either
    return False


def check_choice(owner: Any, field: str, value: Any, choices: Collection[Any]) -> None:
  """``value`` is one of ``choices`` (a version, norm, activation, init name...)."""
  if not _holds(lambda: value in choices):
    raise option_error(owner, field, value, ", ".join(map(repr, choices)), "unknown")


def check_positive(owner: Any, field: str, value: Any, *, optional: bool = False,
                   off: str | None = None) -> None:
  """``value > 0`` (a width, multiplier, count). None also passes when ``optional``; None
  and 0 when the field turns something ``off`` (a phrase: what None or 0 means)."""
  if (optional and value is None) or (off and (value is None or _holds(lambda: value == 0))):
    return
  valid = f"{field} > 0" + (" or None" if optional else "")
  check_option(_holds(lambda: value > 0), owner, field, value,
               valid + (f", or None or 0 ({off})" if off else ""))


def check_positive_entries(owner: Any, field: str, value: Any) -> None:
  """A non-empty sequence of numbers > 0 (blocks per stage, widths per stage)."""
  check_option(_holds(lambda: len(value) > 0 and all(v > 0 for v in value)), owner, field,
               value, "a non-empty sequence of numbers > 0")


def check_dropout(owner: Any, field: str, value: Any) -> None:
  """A dropout probability: ``0 <= value <= 1`` (Flax's nn.Dropout; 1 drops everything)."""
  check_option(_holds(lambda: 0.0 <= value <= 1.0), owner, field, value, f"0 <= {field} <= 1")


def check_drop_path_rate(owner: Any, field: str, value: Any) -> None:
  """A stochastic-depth probability: ``0 <= value < 1`` (kept branches scale by
  1 / (1 - rate))."""
  check_option(_holds(lambda: 0.0 <= value < 1.0), owner, field, value, f"0 <= {field} < 1")


def check_same_length(owner: Any, field: str, value: Sequence[Any], other: str,
                      other_value: Sequence[Any]) -> None:
  """``value`` has one entry per entry of the field ``other`` (e.g. ConvNeXt's dims per
  depth)."""
  check_option(_holds(lambda: len(value) == len(other_value)), owner, field, value,
               f"{len(other_value)} entries, one per entry of {other} {other_value!r}")


# ---------------------------------------------------------------------------------------
# Layer groups for layer-wise learning-rate decay (models.register(layer_groups=...)).

# The top-level name of block B of stage S (ResNet, ConvNeXt, the roadmap), 1-based.
STAGE_BLOCK = re.compile(r"^stage(\d+)_block(\d+)$")


def layer_ids_in_block_order(names: Sequence[str], blocks: re.Pattern[str],
                             stem: Collection[str]) -> tuple[dict[str, int], int]:
  """Layer ids when a network's blocks are its layers (BEiT's rule for ViT, in order for
  the ResNets, ...): the ``stem`` names (stem, embeddings) are layer 0; the names that
  ``blocks`` matches are layers 1..L in the order of their numbers (the pattern's groups,
  compared as integer tuples; names with equal numbers share a layer); everything else
  (final norm, classifier) is L + 1. Returns ``(ids, L)``.
  """
  keys = {}
  for n in names:
    m = blocks.match(n)
    keys[n] = tuple(int(g) for g in m.groups() if g is not None) if m else None
  order = {k: i + 1 for i, k in enumerate(sorted({k for k in keys.values() if k is not None}))}
  num_layers = len(order)
  return {n: order[k] if k is not None else 0 if n in stem else num_layers + 1
          for n, k in keys.items()}, num_layers


def scaled_tanh(x: Array) -> Array:
  """LeCun's scaled hyperbolic tangent, ``1.7159 * tanh(2x / 3)``.

  The constants make f(+-1) = +-1 and put the maximum of the second derivative at
  +-1, so +-1 targets sit in the well-behaved part of the curve (LeCun et al. 1989;
  "Efficient BackProp", 1998).
  """
  return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


def _identity(x: Array) -> Array:
  return x


_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "scaled_tanh": scaled_tanh,
    "relu": jax.nn.relu,
    # Exact (erf) GELU, as PyTorch's nn.GELU default that the reference models use.
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu6": jax.nn.relu6,
    "silu": jax.nn.silu,  # = swish
    "hard_sigmoid": jax.nn.hard_sigmoid,
    "hard_swish": jax.nn.hard_swish,
    "sigmoid": jax.nn.sigmoid,
    "identity": _identity,
}
ACTIVATIONS = tuple(sorted(_ACTIVATIONS))  # the valid activation names


def get_activation(name: str) -> Callable[[Array], Array]:
  """Returns the elementwise activation called ``name``.

  Models take activations by name so that an ablation (tanh -> relu) is a config
  change rather than a code change.
  """
  check_choice(None, "activation", name, ACTIVATIONS)
  return _ACTIVATIONS[name]


def local_response_norm(x: Array, size: int = 5, k: float = 2.0, alpha: float = 1e-4,
                        beta: float = 0.75, alpha_per_size: bool = False) -> Array:
  """Local response normalisation across channels (Krizhevsky et al. 2012, Sec. 3.3).

      b[c] = a[c] / (k + alpha' * sum_{c' in window(c)} a[c']^2) ** beta

  over the ``size`` channels centred on ``c`` (clipped at the first and last channel),
  NHWC. AlexNet's paper writes ``alpha' = alpha`` (k=2, n=5, alpha=1e-4, beta=0.75).
  Caffe and PyTorch's ``nn.LocalResponseNorm`` divide alpha by ``size``
  (``alpha_per_size=True``); GoogLeNet's Caffe model uses that convention.
  """
  sq = jnp.square(x.astype(jnp.float32))
  window_sum = jax.lax.reduce_window(
      sq, 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1),
      ((0, 0), (0, 0), (0, 0), (size // 2, (size - 1) // 2)))
  scale = alpha / size if alpha_per_size else alpha
  return (x / jnp.power(k + scale * window_sum, beta)).astype(x.dtype)


def adaptive_avg_pool(x: Array, output_size: tuple[int, int]) -> Array:
  """PyTorch's ``AdaptiveAvgPool2d`` on NHWC: output cell i averages input rows
  ``floor(i*H/out) .. ceil((i+1)*H/out) - 1`` (same for columns).

  torchvision's AlexNet and VGG put one before the classifier, so the same weights run
  at any input size; at 224 it is the identity (AlexNet 6x6, VGG 7x7). Below that size
  it repeats cells, which keeps our logits equal to torchvision's on small inputs too.
  """
  h, w = x.shape[1:3]
  oh, ow = output_size
  if (h, w) == (oh, ow):
    return x
  if h % oh == 0 and w % ow == 0:
    return avg_pool(x, (h // oh, w // ow))

  def bounds(n, out):
    return [((i * n) // out, -(-((i + 1) * n) // out)) for i in range(out)]

  rows = [jnp.mean(x[:, a:b], axis=1, keepdims=True) for a, b in bounds(h, oh)]
  x = jnp.concatenate(rows, axis=1)
  cols = [jnp.mean(x[:, :, a:b], axis=2, keepdims=True) for a, b in bounds(w, ow)]
  return jnp.concatenate(cols, axis=2)


def avg_pool(x: Array, window: tuple[int, int]) -> Array:
  """Non-overlapping average pooling (stride = window), NHWC, no padding."""
  return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, *window, 1), (1, *window, 1),
                               "VALID") / (window[0] * window[1])


def ceil_mode_padding(size: int, window: int, stride: int, pad: int = 0) -> tuple[int, int]:
  """(low, high) padding that makes a VALID pool equal PyTorch's ``ceil_mode=True``.

  PyTorch's ceil mode adds one output when the last window starts inside the input (or
  its left padding); the extra cells are padded with -inf for max-pooling.
  """
  out = -(-(size + 2 * pad - window) // stride) + 1
  if (out - 1) * stride >= size + pad:  # the last window would start in the right padding
    out -= 1
  return pad, max(0, (out - 1) * stride + window - size - pad)


def pool_padding(shape: Sequence[int], window: int, stride: int, pad: int = 0,
                 ceil_mode: bool = False) -> tuple[tuple[int, int], tuple[int, int]]:
  """(low, high) padding of H and W for a pool over NHWC ``shape``, PyTorch's way."""
  if ceil_mode:
    return (ceil_mode_padding(shape[1], window, stride, pad),
            ceil_mode_padding(shape[2], window, stride, pad))
  return ((pad, pad), (pad, pad))


def _window_views(x: Array, window: int, stride: int, padding: tuple) -> list[Array]:
  """One strided view of NHWC ``x`` (padded with -inf) per position in the pooling window,
  in PyTorch's scan order: view (i, j) holds the (i, j) element of every window."""
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-jnp.inf)
  oh = (x.shape[1] - window) // stride + 1
  ow = (x.shape[2] - window) // stride + 1
  return [x[:, i:i + (oh - 1) * stride + 1:stride, j:j + (ow - 1) * stride + 1:stride]
          for i in range(window) for j in range(window)]


def _reduce_max(x: Array, window: int, stride: int, padding: tuple) -> Array:
  """XLA's max pool (its gradient: select-and-scatter)."""
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, stride, stride, 1), ((0, 0), *padding, (0, 0)))


# The same forward, with the gradient below.
_max_pool = jax.custom_vjp(_reduce_max, nondiff_argnums=(1, 2, 3))


def _max_pool_fwd(x: Array, window: int, stride: int,
                  padding: tuple) -> tuple[Array, tuple[Array, Array]]:
  y = _reduce_max(x, window, stride, padding)
  return y, (x, y)


def _max_pool_bwd(window: int, stride: int, padding: tuple, residuals: tuple[Array, Array],
                  g: Array) -> tuple[Array]:
  # Each window's gradient to its first maximum in scan order, as PyTorch's max_pool2d
  # and XLA's select-and-scatter give it (ties are common: a blank background), put back
  # by the transpose of the strided views (interior padding, which XLA fuses).
  x, y = residuals
  taken = jnp.zeros(y.shape, bool)
  parts = []
  for view in _window_views(x, window, stride, padding):
    first = (view == y) & ~taken
    taken = taken | first
    parts.append(jnp.where(first, g, jnp.zeros_like(g)))
  return jax.vjp(lambda x: _window_views(x, window, stride, padding), x)[1](parts)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x: Array, window: int, stride: int, pad: int = 0,
             ceil_mode: bool = False) -> Array:
  """Max pooling on NHWC with PyTorch's padding semantics (padding never wins).

  XLA's ``reduce_window``. Where windows do not overlap (``stride >= window``: VGG's,
  airbench's and the modern LeNet-5's 2x2), its gradient is written out (each window's
  first maximum, found from the window's strided views) in place of XLA's
  select-and-scatter, with the same values: with select-and-scatter, the speedrun's
  training step on XLA:CPU ran at 333 images/s, against 422-431 written out (README,
  "Speed"). Overlapping windows keep it: there the written-out gradient was 4% slower
  (AlexNet's 3x3/2).
  """
  pool = _max_pool if stride >= window else _reduce_max
  return pool(x, window, stride, pool_padding(x.shape, window, stride, pad, ceil_mode))


# ---------------------------------------------------------------------------------------
# Convolutions. Every convolution of the zoo goes through here, so that one switch
# (``config.conv_backend``, held by ``kernels.conv_backend``) picks the library that runs
# them all: XLA's own (the default, any device) or oneDNN's on a CPU (kernels/onednn.py).
# Locally connected layers (lecun1989_nets) are not convolutions and stay XLA's.


def conv_general_dilated(*args, **kwargs) -> Array:
  """``jax.lax.conv_general_dilated``, or oneDNN's when ``kernels.current()`` is
  ``'onednn'`` at trace time (the same signature, values equal at float32 rounding)."""
  if kernels.current() == "onednn":
    return onednn.conv_general_dilated(*args, **kwargs)
  return jax.lax.conv_general_dilated(*args, **kwargs)


class Conv(nn.Conv):
  """``flax.linen.Conv`` through :func:`conv_general_dilated`. The same fields,
  parameters and names (``Conv_0``...): a drop-in for ``nn.Conv``."""
  conv_general_dilated: Callable[..., Array] = conv_general_dilated


# ---------------------------------------------------------------------------------------
# Blocks of the modern families (ResNet, SE, DenseNet, MobileNet, ViT, ConvNeXt).
# ---------------------------------------------------------------------------------------

# trunc_normal(std=0.02), the init of ViT and ConvNeXt linear and conv weights. PyTorch's
# ``trunc_normal_(std=.02)`` cuts at +-2 absolute (i.e. +-100 std, so no truncation in
# effect); Flax's truncated_normal cuts at +-2 std. The difference is immaterial for
# training and we keep Flax's.
trunc_normal_02 = nn.initializers.truncated_normal(0.02)
NORMS = ("batch", "layer", "group")  # the kinds of make_norm


def make_norm(kind: str, *, train: bool, dtype: Any = jnp.float32, epsilon: float | None = None,
              momentum: float = 0.9) -> ModuleDef:
  """A norm-layer factory, so a block takes ``norm`` by name and an ablation swaps it.

  ``batch``: BatchNorm over N, H, W in the 'batch_stats' collection (running statistics
  in eval, PyTorch's default eps 1e-5). ``layer``: LayerNorm over the channel axis only
  (ConvNeXt's channels-last LayerNorm, eps 1e-6). ``group``: GroupNorm with 32 groups.
  Parameters are float32 whatever the compute ``dtype``.
  """
  check_choice(None, "norm", kind, NORMS)
  if kind == "batch":
    return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=momentum,
                             epsilon=1e-5 if epsilon is None else epsilon, dtype=dtype,
                             param_dtype=jnp.float32)
  if kind == "layer":
    return functools.partial(nn.LayerNorm, epsilon=1e-6 if epsilon is None else epsilon,
                             dtype=dtype, param_dtype=jnp.float32)
  return functools.partial(nn.GroupNorm, num_groups=32,  # "group"
                           epsilon=1e-5 if epsilon is None else epsilon, dtype=dtype,
                           param_dtype=jnp.float32)


def drop_path(x: Array, rate: float, rng: Array) -> Array:
  """Stochastic depth (Huang et al. 2016) on a residual branch ``x`` (batch-major).

  Each example's whole branch is dropped with probability ``rate``; kept branches are
  scaled by 1 / (1 - rate) so the expected output is unchanged (the "inverted" form of
  timm and torchvision, which makes evaluation the identity).
  """
  if rate == 0.0:
    return x
  check_drop_path_rate("drop_path", "rate", rate)
  keep = jax.random.bernoulli(rng, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


class DropPath(nn.Module):
  """Stochastic depth as a layer: identity in evaluation or at rate 0; in training it
  draws from the 'dropout' rng stream (which the train step supplies)."""

  rate: float = 0.0

  def __post_init__(self) -> None:
    super().__post_init__()
    check_drop_path_rate(self, "rate", self.rate)

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    if deterministic or self.rate == 0.0:
      return x
    return drop_path(x, self.rate, self.make_rng("dropout"))


def drop_path_rates(max_rate: float, depths: tuple[int, ...] | list[int]) -> list[list[float]]:
  """Per-block rates rising linearly from 0 to ``max_rate`` over all blocks (the rule of
  Huang et al. 2016 used by ConvNeXt and DeiT), grouped by stage."""
  total = sum(depths)
  flat = [max_rate * i / max(total - 1, 1) for i in range(total)]
  out, start = [], 0
  for d in depths:
    out.append(flat[start:start + d])
    start += d
  return out


class LayerScale(nn.Module):
  """Per-channel learnable scale of a residual branch (CaiT, Touvron et al. 2021; used by
  ConvNeXt with init 1e-6). The parameter is named ``gamma`` as in ConvNeXt's code; it
  is a vector, so weight decay (which applies to leaves named ``kernel``) skips it."""

  init_value: float = 1e-6

  @nn.compact
  def __call__(self, x: Array) -> Array:
    gamma = self.param("gamma", nn.initializers.constant(self.init_value), (x.shape[-1],),
                       jnp.float32)
    return x * gamma.astype(x.dtype)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
  """Rounds a channel count to a multiple of ``divisor``, never below 90% of ``v``
  (the rule of the MobileNet / EfficientNet reference code and torchvision)."""
  min_value = divisor if min_value is None else min_value
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


class SqueezeExcite(nn.Module):
  """Squeeze-and-Excitation (Hu et al. 2017, arXiv 1709.01507, Fig. 3).

  Squeeze: global average pooling to one value per channel. Excitation: a bottleneck of
  two 1x1 convolutions (C -> C/r -> C, with biases), ReLU between, then a sigmoid gate
  that rescales the input's channels. ``reduction`` r = 16 in the paper. ``hidden``
  overrides C/r (MobileNetV3 and timm round it). 1x1 convs rather than dense layers, so
  the parameter names match timm's ``fc1``/``fc2`` and the maths is the same.
  """

  reduction: int = 16
  hidden: int | None = None
  act: Callable[[Array], Array] = nn.relu
  gate: Callable[[Array], Array] = nn.sigmoid
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    channels = x.shape[-1]
    hidden = self.hidden or channels // self.reduction
    s = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(x.dtype)
    s = Conv(hidden, (1, 1), dtype=self.dtype, param_dtype=jnp.float32, name="fc1")(s)
    s = self.act(s)
    s = Conv(channels, (1, 1), dtype=self.dtype, param_dtype=jnp.float32, name="fc2")(s)
    return x * self.gate(s)
