"""RandAugment as timm defines it, per image, for a tf.data host pipeline.

The streaming ImageNet pipeline decodes and crops each image on the host, where
timm also runs its RandAugment; augmenting there keeps the accelerator step
free of it. The ops, their parameters and their rounding are those of
``input_pipeline/randaugment.py`` (whose docstring gives the semantics and the
deviations from timm), and tests/test_randaugment.py checks that the two agree
op by op and that both match PIL.

What differs is how an op is chosen: one image at a time, ``tf.switch_case``
runs only the drawn op, where the batched JAX version has to apply every kind
of op to every example. Randomness is stateless: ``rand_augment(image, seed)``
is a pure function of the image and a shape-(2,) seed, so a pipeline that
derives seeds from a fixed root (``tf.data.Dataset.random(seed=...)`` zipped
in, or ``tf.random.experimental.stateless_split``) is reproducible under
``num_parallel_calls=tf.data.AUTOTUNE``.

Geometric ops run ``ImageProjectiveTransformV3`` (bilinear) in its NEAREST
fill mode, which clamps samples to the edge, then put the fill colour where
PIL would: its CONSTANT mode blends the fill into the border pixels instead.

This module imports TensorFlow; only host-pipeline code imports it.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import tensorflow as tf

from input_pipeline.randaugment import _fill_values
from input_pipeline.randaugment import ALL_OPS
from input_pipeline.randaugment import IMAGENET_FILL
from input_pipeline.randaugment import OPS
from input_pipeline.randaugment import OPS_NON_INCREASING

_LEVEL_DENOM = 10.0
_GEOMETRIC_EPS = 1e-3
_V = tf.range(256, dtype=tf.int32)


def _level(m, scale):
  return (m / _LEVEL_DENOM) * scale


def _floor_int(v):
  return tf.cast(tf.floor(v), tf.int32)


# ---------------------------------------------------------------------------
# Table ops: (C, 256) tables from the image's per-channel histogram.


def _histogram(xi):
  c = xi.shape[-1]
  bins = tf.reshape(xi + 256 * tf.range(c), [-1])
  counts = tf.math.bincount(bins, minlength=256 * c, maxlength=256 * c,
                            dtype=tf.int32)
  return tf.reshape(counts, [c, 256])


def _autocontrast_lut(xi, m, s):
  hist = _histogram(xi)
  present = hist > 0
  lo = tf.reduce_min(tf.where(present, _V, 256), axis=-1, keepdims=True)
  hi = tf.reduce_max(tf.where(present, _V, -1), axis=-1, keepdims=True)
  span = hi - lo
  lut = tf.clip_by_value((255 * (_V - lo)) // tf.maximum(span, 1), 0, 255)
  return tf.where(span > 0, lut, _V)


def _equalize_lut(xi, m, s):
  hist = _histogram(xi)
  hi = tf.reduce_max(tf.where(hist > 0, _V, -1), axis=-1, keepdims=True)
  last = tf.reduce_sum(tf.where(_V == hi, hist, 0), axis=-1, keepdims=True)
  step = (tf.reduce_sum(hist, axis=-1, keepdims=True) - last) // 255
  safe = tf.maximum(step, 1)
  below = tf.cumsum(hist, axis=-1, exclusive=True)
  lut = tf.minimum((safe // 2 + below) // safe, 255)
  return tf.where(step > 0, lut, _V)


def _posterize_lut(bits):
  low = tf.bitwise.left_shift(1, tf.clip_by_value(8 - bits, 0, 8)) - 1
  return tf.bitwise.bitwise_and(_V, 255 - low)


def _solarize_lut(threshold):
  return tf.where(_V < threshold, _V, 255 - _V)


def _solarize_add_lut(xi, m, s):
  add = _floor_int(_level(m, 110.0))
  return tf.where(_V < 128, tf.minimum(_V + add, 255), _V)


_LUT_OPS = {
    "AutoContrast": _autocontrast_lut,
    "Equalize": _equalize_lut,
    "Invert": lambda xi, m, s: 255 - _V,
    "Posterize": lambda xi, m, s: _posterize_lut(_floor_int(_level(m, 4.0))),
    "PosterizeIncreasing": lambda xi, m, s: _posterize_lut(
        4 - _floor_int(_level(m, 4.0))),
    "Solarize": lambda xi, m, s: _solarize_lut(_floor_int(_level(m, 256.0))),
    "SolarizeIncreasing": lambda xi, m, s: _solarize_lut(
        256 - _floor_int(_level(m, 256.0))),
    "SolarizeAdd": _solarize_add_lut,
}


def _table_op(name, x, m, s):
  xi = tf.cast(x, tf.int32)
  c = x.shape[-1]
  lut = tf.broadcast_to(_LUT_OPS[name](xi, m, s), [c, 256])
  return tf.cast(tf.gather(tf.reshape(lut, [-1]), xi + 256 * tf.range(c)),
                 tf.float32)


# ---------------------------------------------------------------------------
# Blends: Image.blend(degenerate, image, factor), truncated.


def _grayscale(xi):
  if xi.shape[-1] == 1:
    return xi
  r, g, b = xi[..., 0:1], xi[..., 1:2], xi[..., 2:3]
  return tf.bitwise.right_shift(r * 19595 + g * 38470 + b * 7471 + 0x8000, 16)


def _color_degenerate(x):
  return tf.cast(_grayscale(tf.cast(x, tf.int32)), tf.float32)


def _contrast_degenerate(x):
  gray = _grayscale(tf.cast(x, tf.int32))
  n = tf.size(gray)
  return tf.cast((tf.reduce_sum(gray) + n // 2) // n, tf.float32)


def _brightness_degenerate(x):
  return tf.zeros([], tf.float32)


def _sharpness_degenerate(x):
  h, w = tf.shape(x)[0], tf.shape(x)[1]
  padded = tf.pad(x, [[1, 1], [1, 1], [0, 0]])
  total = 4.0 * x
  for dy in range(3):
    for dx in range(3):
      total += padded[dy:dy + h, dx:dx + w]
  rows = tf.range(h)
  cols = tf.range(w)
  interior = (((rows >= 1) & (rows <= h - 2))[:, None, None]
              & ((cols >= 1) & (cols <= w - 2))[None, :, None])
  return tf.where(interior, tf.floor((total + 6.0) / 13.0), x)


def _enhance_factor(m, s):
  return _level(m, 1.8) + 0.1


def _enhance_increasing_factor(m, s):
  return tf.maximum(0.1, 1.0 + s * _level(m, 0.9))


_BLEND_OPS = {
    "Color": (_color_degenerate, _enhance_factor),
    "ColorIncreasing": (_color_degenerate, _enhance_increasing_factor),
    "Contrast": (_contrast_degenerate, _enhance_factor),
    "ContrastIncreasing": (_contrast_degenerate, _enhance_increasing_factor),
    "Brightness": (_brightness_degenerate, _enhance_factor),
    "BrightnessIncreasing": (_brightness_degenerate,
                             _enhance_increasing_factor),
    "Sharpness": (_sharpness_degenerate, _enhance_factor),
    "SharpnessIncreasing": (_sharpness_degenerate, _enhance_increasing_factor),
}


def _blend_op(name, x, m, s):
  degenerate_fn, factor_fn = _BLEND_OPS[name]
  degenerate = degenerate_fn(x)
  out = degenerate + factor_fn(m, s) * (x - degenerate)
  return tf.clip_by_value(tf.floor(out), 0.0, 255.0)


# ---------------------------------------------------------------------------
# Affine ops: PIL's affine data (a, b, c, d, e, f), pixel-edge units.


def _rotate_coeffs(m, s, h, w):
  theta = -(s * _level(m, 30.0)) * (math.pi / 180.0)
  cos, sin = tf.cos(theta), tf.sin(theta)
  cx, cy = w / 2.0, h / 2.0
  return (cos, sin, cos * -cx + sin * -cy + cx,
          -sin, cos, -sin * -cx + cos * -cy + cy)


def _shear_coeffs(m, s, axis):
  k = s * _level(m, 0.3)
  if axis == "x":
    return 1.0, k, 0.0, 0.0, 1.0, 0.0
  return 1.0, 0.0, 0.0, k, 1.0, 0.0


def _translate_coeffs(m, s, pixels, axis):
  t = s * _level(m, 0.45) * pixels
  if axis == "x":
    return 1.0, 0.0, t, 0.0, 1.0, 0.0
  return 1.0, 0.0, 0.0, 0.0, 1.0, t


_AFFINE_OPS = {
    "Rotate": _rotate_coeffs,
    "ShearX": lambda m, s, h, w: _shear_coeffs(m, s, "x"),
    "ShearY": lambda m, s, h, w: _shear_coeffs(m, s, "y"),
    "TranslateXRel": lambda m, s, h, w: _translate_coeffs(m, s, w, "x"),
    "TranslateYRel": lambda m, s, h, w: _translate_coeffs(m, s, h, "y"),
}


def _affine_op(name, x, m, s, fill):
  shape = tf.shape(x)
  h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  a, b, c, d, e, f = (tf.cast(v, tf.float32)
                      for v in _AFFINE_OPS[name](m, s, h, w))
  # The kernel maps output pixel indices to input indices (pixel centres).
  transform = tf.stack([a, b, c + 0.5 * (a + b - 1.0),
                        d, e, f + 0.5 * (d + e - 1.0), 0.0, 0.0])[None]
  value = tf.raw_ops.ImageProjectiveTransformV3(
      images=x[None], transforms=transform, output_shape=shape[:2],
      fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST")[0]
  xo = tf.range(w)[None, :] + 0.5
  yo = tf.range(h)[:, None] + 0.5
  xs = a * xo + b * yo + c
  ys = d * xo + e * yo + f
  inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
  value = tf.clip_by_value(tf.floor(value + _GEOMETRIC_EPS), 0.0, 255.0)
  return tf.where(inside[..., None], value, tf.constant(fill, tf.float32))


def _apply_float(name, x, m, s, fill):
  """One op on a float32 (H, W, C) image holding integers."""
  if name in _LUT_OPS:
    return _table_op(name, x, m, s)
  if name in _BLEND_OPS:
    return _blend_op(name, x, m, s)
  return _affine_op(name, x, m, s, _fill_values(fill, x.shape[-1]))


def _check_image(image):
  if image.shape.rank != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(
        f"image must be (H, W, C) with a static C in (1, 3), got {image.shape}")


def apply_op(name: str, image: tf.Tensor, magnitude: float | tf.Tensor,
             sign: float | tf.Tensor = 1.0,
             fill: float | Sequence[float] = IMAGENET_FILL) -> tf.Tensor:
  """Applies one timm op to one image; see ``randaugment.apply_op``.

  Args:
    name: one of ``ALL_OPS``.
    image: (H, W, C) uint8, C in {1, 3} and static; H, W may be dynamic.
    magnitude: timm level, scalar; 10 is the full range.
    sign: +1 or -1 for the signed ops.
    fill: colour of the area that geometric ops uncover.

  Returns:
    (H, W, C) uint8.
  """
  if name not in ALL_OPS:
    raise ValueError(f"unknown op {name!r}; expected one of {ALL_OPS}")
  image = tf.convert_to_tensor(image)
  _check_image(image)
  m = tf.cast(magnitude, tf.float32)
  s = tf.cast(sign, tf.float32)
  out = _apply_float(name, tf.cast(image, tf.float32), m, s, fill)
  return tf.cast(out, tf.uint8)


def rand_augment(image: tf.Tensor, seed: tf.Tensor, *, num_layers: int = 2,
                 magnitude: float = 9.0, magnitude_std: float = 0.5,
                 magnitude_max: float = 10.0, prob: float = 0.5,
                 increasing: bool = True,
                 fill: float | Sequence[float] = IMAGENET_FILL) -> tf.Tensor:
  """timm's RandAugment on one image, a pure function of (image, seed).

  Same arguments and defaults (``rand-m9-mstd0.5-inc1``) as
  ``randaugment.rand_augment``; ``**parse(spec)`` gives any other spec.

  Args:
    image: (H, W, C) uint8, C in {1, 3} and static.
    seed: shape-(2,) int32/int64 tensor, e.g. from ``Dataset.random()``
      batched by 2 or ``tf.random.experimental.stateless_split``.
    num_layers: ops per image.
    magnitude: mean magnitude, on timm's 0..10 scale.
    magnitude_std: magnitude std (inf: uniform in [0, magnitude]).
    magnitude_max: upper clip of the magnitude.
    prob: probability of applying each drawn op.
    increasing: timm's ``inc1`` op set (``OPS``), else ``OPS_NON_INCREASING``.
    fill: colour of the area that geometric ops uncover.

  Returns:
    (H, W, C) uint8.
  """
  image = tf.convert_to_tensor(image)
  _check_image(image)
  names = OPS if increasing else OPS_NON_INCREASING
  x = tf.cast(image, tf.float32)
  for layer_seed in tf.unstack(
      tf.random.experimental.stateless_split(seed, num_layers), num_layers):
    seeds = tf.random.experimental.stateless_split(layer_seed, 4)
    op = tf.random.stateless_uniform([], seeds[0], 0, len(names), tf.int32)
    if magnitude_std == math.inf:
      m = tf.random.stateless_uniform([], seeds[1], 0.0, magnitude)
    else:
      m = magnitude + magnitude_std * tf.random.stateless_normal([], seeds[1])
    m = tf.clip_by_value(m, 0.0, magnitude_max)
    s = tf.where(tf.random.stateless_uniform([], seeds[2]) < 0.5, -1.0, 1.0)
    applied = tf.random.stateless_uniform([], seeds[3]) < prob
    # The last branch, chosen when the op is not applied, is the identity.
    branches = [functools.partial(_apply_float, n, x, m, s, fill)
                for n in names] + [functools.partial(tf.identity, x)]
    x = tf.switch_case(tf.where(applied, op, len(names)), branches)
  out = tf.cast(x, tf.uint8)
  out.set_shape(image.shape)
  return out
