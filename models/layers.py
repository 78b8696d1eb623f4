"""Building blocks shared by more than one model family.

A block lives here once two families need it (timm's rule: reused, never copied).
Family-specific layers stay in their family's file.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


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
    "sigmoid": jax.nn.sigmoid,
    "identity": _identity,
}


def get_activation(name: str) -> Callable[[Array], Array]:
  """Returns the elementwise activation called ``name``.

  Models take activations by name so that an ablation (tanh -> relu) is a config
  change rather than a code change.
  """
  try:
    return _ACTIVATIONS[name]
  except KeyError:
    raise ValueError(
        f"unknown activation {name!r}; valid names: {', '.join(sorted(_ACTIVATIONS))}"
    ) from None


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


def max_pool(x: Array, window: int, stride: int, pad: int = 0,
             ceil_mode: bool = False) -> Array:
  """Max pooling on NHWC with PyTorch's padding semantics (padding never wins)."""
  if ceil_mode:
    padding = (ceil_mode_padding(x.shape[1], window, stride, pad),
               ceil_mode_padding(x.shape[2], window, stride, pad))
  else:
    padding = ((pad, pad), (pad, pad))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, stride, stride, 1), ((0, 0), *padding, (0, 0)))
