"""RandAugment as timm defines it, on batches inside the compiled train step.

ConvNeXt (and DeiT before it) train with timm's ``rand-m9-mstd0.5-inc1``: per
image, two ops drawn uniformly with replacement from 15, each applied with
probability 0.5 at a magnitude drawn from N(9, 0.5) and clipped to [0, 10],
with a random sign for the signed ops. timm runs it in PIL on the host, so the
recipe's numbers are PIL's; this module reproduces PIL's integer arithmetic op
by op (tests/test_randaugment.py checks every op against PIL), so that a
reproduction differs from the paper's augmentation by as little as we can
make it. It is the only implementation: batches streamed by the host pipeline
get it in the step as well, so the host CPUs only decode, crop and flip.

Why it is shaped like this: on an accelerator, per-example control flow
(``lax.switch`` under ``vmap``) runs every branch and selects, i.e. 15 ops per
layer. Instead, the ops fall into three kinds, and each kind is applied once
per layer to the whole batch with per-example parameters that are the identity
for the examples that drew an op of another kind (or no op):

- table ops (AutoContrast, Equalize, Invert, Posterize, Solarize, SolarizeAdd):
  a 256-entry table per example and channel, one gather;
- blends (Color, Contrast, Brightness, Sharpness: PIL's ImageEnhance): a
  "degenerate" image per example (grey, mean grey, black, 3x3-smoothed) and a
  factor, ``degenerate + factor * (image - degenerate)``, factor 1 = identity;
- affine resampling (Rotate, ShearX/Y, TranslateX/YRel): a 2x3 matrix per
  example, one 4-tap bilinear gather, the identity matrix reads each pixel
  exactly.

Per layer that is one histogram (a scatter-add), five gathers (one table
lookup, four bilinear taps) and a few dozen element-wise operations over the
batch, which XLA fuses: a few ops' worth of memory traffic where computing all
15 ops and selecting would cost 15; ``num_layers=2`` doubles it. It has not
been timed on an accelerator yet; at 224x224 it should be small next to a
ConvNeXt forward and backward pass.

Images are (B, H, W, C), C in {1, 3}, integer-valued in raw 0..255 units
(uint8, or float32 holding integers); every op returns integers in [0, 255],
as PIL's uint8 images do. Rounding follows PIL: blends and bilinear samples
are truncated, the smoothing filter rounds, the tables are exact integers.

Deviations from timm, each the smallest we found:

- Geometric ops interpolate bilinearly; timm's ConvNeXt transform asks PIL for
  bicubic. (A TF twin for the host pipeline once tied it to what TF's
  ImageProjectiveTransformV3 has; it is gone, so bicubic is a possible
  refinement.) Borders follow PIL: samples within half a
  pixel of the image are clamped to the edge, others are the fill colour (the
  ImageNet mean (124, 116, 104), timm's ``img_mean``). Neither dm-pix's nor
  TF's 'constant' mode does that (dm-pix cuts at [0, size - 1], TF blends the
  fill into the border pixels), so the resampler is written out here (four
  gathers for all channels at once, where dm-pix's 3-D affine_transform
  interpolates over the channel axis as well, eight gathers).
- Coordinates and bilinear samples are float32 (PIL: float64), and samples
  are truncated after adding 1e-3, so that rounding error (which differs
  between kernels) cannot drop an exact integer to the level
  below: one level from PIL on a few percent of pixels at most.
- AutoContrast's table is exact, ``255 * (v - lo) // (hi - lo)``; PIL computes
  ``int(v * scale + offset)`` in float64, which is one level lower for about
  0.4% of (lo, hi, v) triples (those where the exact value is an integer).
- PosterizeIncreasing at magnitude 10 keeps 0 bits, a black image, as older
  Pillow did; recent Pillow (13 here) rejects ``posterize(img, 0)``, which
  timm's code passes on unchanged.
- timm reads ``inc0`` as ``inc1`` (``bool('0')`` is True); ``parse`` refuses
  it rather than guess.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import jax
import jax.numpy as jnp

# timm's _RAND_INCREASING_TRANSFORMS (``inc1``): severity grows with magnitude.
OPS: tuple[str, ...] = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
    "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing",
    "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
    "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")

# timm's _RAND_TRANSFORMS, its default when the spec has no ``inc``: Posterize
# and Solarize weaken as magnitude grows, the enhance factors go 0.1..1.9.
OPS_NON_INCREASING: tuple[str, ...] = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
    "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX",
    "ShearY", "TranslateXRel", "TranslateYRel")

# timm's img_mean for ImageNet: round(255 * (0.485, 0.456, 0.406)).
IMAGENET_FILL: tuple[int, int, int] = (124, 116, 104)

_LEVEL_DENOM = 10.0  # timm: magnitude 10 is the full range of every op.
_GEOMETRIC_EPS = 1e-3


# ---------------------------------------------------------------------------
# Specs: timm's "rand-m9-mstd0.5-inc1" strings.

_SPEC_KEYS = ("m", "n", "mstd", "mmax", "p", "inc")


def parse(spec: str) -> dict:
  """Reads a timm RandAugment string into ``rand_augment``'s keyword arguments.

  Sections after ``rand``, in any order: ``m`` magnitude (default 10), ``n``
  ops per image (2), ``mstd`` magnitude std (0; above 100 means uniform in
  [0, m], as in timm), ``mmax`` magnitude clip (10), ``p`` probability of
  applying each op (0.5), ``inc1`` the "increasing" op set (default: timm's
  original set). ``rand_augment(key, x, **parse("rand-m9-mstd0.5-inc1"))``
  is the ConvNeXt recipe.

  Args:
    spec: e.g. "rand-m9-mstd0.5-inc1" or "rand-m7-n3-mstd0.5-inc1-p0.8".

  Returns:
    dict with num_layers, magnitude, magnitude_std, magnitude_max, prob,
    increasing.

  Raises:
    ValueError: for a string not starting with "rand", an unknown or repeated
      section, a bad value, or ``inc0`` (which timm reads as ``inc1``).
  """
  parts = spec.split("-")
  if parts[0] != "rand":
    raise ValueError(
        f"RandAugment spec {spec!r} must start with 'rand' (timm's form, e.g. "
        "'rand-m9-mstd0.5-inc1'); AutoAugment and AugMix specs are not "
        "supported")
  params = dict(num_layers=2, magnitude=_LEVEL_DENOM, magnitude_std=0.0,
                magnitude_max=_LEVEL_DENOM, prob=0.5, increasing=False)
  seen = set()
  for section in parts[1:]:
    match = re.fullmatch(r"([a-z]+)(\d.*)", section)
    if match is None or match.group(1) not in _SPEC_KEYS:
      raise ValueError(
          f"unknown section {section!r} in RandAugment spec {spec!r}; known "
          f"sections are a key from {_SPEC_KEYS} followed by a number, e.g. "
          "'m9' (timm's op-choice weights 'w' are not supported)")
    key, value = match.groups()
    if key in seen:
      raise ValueError(f"section {key!r} given twice in {spec!r}")
    seen.add(key)
    try:
      number = float(value)
    except ValueError:
      raise ValueError(
          f"section {section!r} of {spec!r}: {value!r} is not a number"
      ) from None
    if key == "inc":
      if value != "1":
        raise ValueError(
            f"{section!r} in {spec!r}: write 'inc1' for the increasing ops or "
            "leave 'inc' out for timm's original set (timm reads any 'inc' "
            "value, even 'inc0', as inc1)")
      params["increasing"] = True
    elif key == "n":
      if number != int(number) or number < 0:
        raise ValueError(f"{section!r} in {spec!r}: n must be an integer >= 0")
      params["num_layers"] = int(number)
    elif key == "p":
      if not 0 <= number <= 1:
        raise ValueError(f"{section!r} in {spec!r}: p must be in [0, 1]")
      params["prob"] = number
    elif key == "mstd":
      params["magnitude_std"] = math.inf if number > 100 else number
    elif key == "mmax":
      params["magnitude_max"] = number
    else:
      params["magnitude"] = number
  return params


def _number(x: float) -> str:
  return str(int(x)) if x == int(x) else repr(float(x))


def to_spec(num_layers: int = 2, magnitude: float = 10.0,
            magnitude_std: float = 0.0, magnitude_max: float = 10.0,
            prob: float = 0.5, increasing: bool = False) -> str:
  """The timm string for ``parse``'s output: ``parse(to_spec(**p)) == p``."""
  mstd = 101 if math.isinf(magnitude_std) else magnitude_std
  spec = (f"rand-m{_number(magnitude)}-n{num_layers}-mstd{_number(mstd)}"
          f"-mmax{_number(magnitude_max)}-p{_number(prob)}")
  return spec + ("-inc1" if increasing else "")


# ---------------------------------------------------------------------------
# Per-op parameters. `m` and `s` are (B,) magnitudes and signs; the formulas
# are timm's _*_level_to_arg, in float32.


def _level(m: jax.Array, scale: float) -> jax.Array:
  return (m / _LEVEL_DENOM) * scale


def _values() -> jax.Array:
  """0..255, a table's entries (made per call: no device arrays at import)."""
  return jnp.arange(256, dtype=jnp.int32)


def _solarize_lut(threshold):
  v = _values()
  return jnp.where(v < threshold[:, None, None], v, 255 - v)


def _posterize_lut(bits):
  # ImageOps.posterize keeps the top `bits` bits; 8 or more is the identity.
  low = jnp.left_shift(1, jnp.clip(8 - bits, 0, 8)) - 1
  return jnp.bitwise_and(_values(), 255 - low[:, None, None])


def _autocontrast_lut(hist, m, s):
  """ImageOps.autocontrast per channel: stretch [lo, hi] to [0, 255]."""
  del m, s
  v, present = _values(), hist > 0
  lo = jnp.min(jnp.where(present, v, 256), axis=-1, keepdims=True)
  hi = jnp.max(jnp.where(present, v, -1), axis=-1, keepdims=True)
  span = hi - lo
  lut = jnp.clip((255 * (v - lo)) // jnp.maximum(span, 1), 0, 255)
  return jnp.where(span > 0, lut, v)


def _equalize_lut(hist, m, s):
  """ImageOps.equalize per channel, PIL's integer algorithm."""
  del m, s
  v = _values()
  hi = jnp.max(jnp.where(hist > 0, v, -1), axis=-1, keepdims=True)
  last = jnp.sum(jnp.where(v == hi, hist, 0), axis=-1, keepdims=True)
  step = (jnp.sum(hist, axis=-1, keepdims=True) - last) // 255
  safe = jnp.maximum(step, 1)
  below = jnp.cumsum(hist, axis=-1) - hist  # pixels below each value
  lut = jnp.minimum((safe // 2 + below) // safe, 255)
  return jnp.where(step > 0, lut, v)


def _solarize_add_lut(m):
  add = jnp.floor(_level(m, 110.0)).astype(jnp.int32)[:, None, None]
  v = _values()
  return jnp.where(v < 128, jnp.minimum(v + add, 255), v)


_LUT_OPS = {
    "AutoContrast": _autocontrast_lut,
    "Equalize": _equalize_lut,
    "Invert": lambda h, m, s: jnp.broadcast_to(255 - _values(),
                                               (m.shape[0], 1, 256)),
    "Posterize": lambda h, m, s: _posterize_lut(
        jnp.floor(_level(m, 4.0)).astype(jnp.int32)),
    "PosterizeIncreasing": lambda h, m, s: _posterize_lut(
        4 - jnp.floor(_level(m, 4.0)).astype(jnp.int32)),
    "Solarize": lambda h, m, s: _solarize_lut(
        jnp.floor(_level(m, 256.0)).astype(jnp.int32)),
    "SolarizeIncreasing": lambda h, m, s: _solarize_lut(
        256 - jnp.floor(_level(m, 256.0)).astype(jnp.int32)),
    "SolarizeAdd": lambda h, m, s: _solarize_add_lut(m),
}


def _enhance_factor(m, s):
  return _level(m, 1.8) + 0.1


def _enhance_increasing_factor(m, s):
  return jnp.maximum(0.1, 1.0 + s * _level(m, 0.9))


def _grayscale(xi: jax.Array) -> jax.Array:
  """PIL's convert('L'): ITU-R 601-2 luma in 16-bit fixed point."""
  if xi.shape[-1] == 1:
    return xi
  r, g, b = xi[..., 0:1], xi[..., 1:2], xi[..., 2:3]
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


def _color_degenerate(x):
  return _grayscale(x.astype(jnp.int32)).astype(jnp.float32)


def _contrast_degenerate(x):
  """ImageEnhance.Contrast: the mean grey level, int(mean + 0.5)."""
  gray = _grayscale(x.astype(jnp.int32))
  n = gray.shape[1] * gray.shape[2]
  total = jnp.sum(gray, axis=(1, 2, 3), keepdims=True)
  return ((total + n // 2) // n).astype(jnp.float32)


def _brightness_degenerate(x):
  return jnp.zeros((x.shape[0], 1, 1, 1), jnp.float32)


def _sharpness_degenerate(x):
  """ImageFilter.SMOOTH (3x3 [1 1 1; 1 5 1; 1 1 1] / 13, rounded).

  PIL leaves the one-pixel border unfiltered.
  """
  _, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  total = 4 * x
  for dy in range(3):
    for dx in range(3):
      total = total + padded[:, dy:dy + h, dx:dx + w]
  rows = (jnp.arange(h) >= 1) & (jnp.arange(h) <= h - 2)
  cols = (jnp.arange(w) >= 1) & (jnp.arange(w) <= w - 2)
  interior = rows[:, None, None] & cols[None, :, None]
  return jnp.where(interior, jnp.floor((total + 6.0) / 13.0), x)


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


def _rotate_coeffs(m, s, h, w):
  # Image.rotate: counter-clockwise by `degrees` about the centre (w/2, h/2).
  theta = -(s * _level(m, 30.0)) * (math.pi / 180.0)
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  cx, cy = w / 2.0, h / 2.0
  return (cos, sin, cos * -cx + sin * -cy + cx,
          -sin, cos, -sin * -cx + cos * -cy + cy)


def _shear_coeffs(m, s, axis):
  k = s * _level(m, 0.3)
  one, zero = jnp.ones_like(k), jnp.zeros_like(k)
  if axis == "x":
    return one, k, zero, zero, one, zero
  return one, zero, zero, k, one, zero


def _translate_coeffs(m, s, pixels, axis):
  t = s * _level(m, 0.45) * pixels
  one, zero = jnp.ones_like(t), jnp.zeros_like(t)
  if axis == "x":
    return one, zero, t, zero, one, zero
  return one, zero, zero, zero, one, t


# PIL's affine data (a, b, c, d, e, f): the output pixel centred at (x, y)
# samples the input at (a x + b y + c, d x + e y + f), in pixel-edge units.
_AFFINE_OPS = {
    "Rotate": _rotate_coeffs,
    "ShearX": lambda m, s, h, w: _shear_coeffs(m, s, "x"),
    "ShearY": lambda m, s, h, w: _shear_coeffs(m, s, "y"),
    "TranslateXRel": lambda m, s, h, w: _translate_coeffs(m, s, w, "x"),
    "TranslateYRel": lambda m, s, h, w: _translate_coeffs(m, s, h, "y"),
}

ALL_OPS: tuple[str, ...] = tuple(_LUT_OPS) + tuple(_BLEND_OPS) + tuple(
    _AFFINE_OPS)


# ---------------------------------------------------------------------------
# The three kinds, each applied once to a batch. `op` (B,) holds each
# example's index into `candidates` ((index, name) pairs); other values
# (-1: not applied, or an op of another kind) leave the example unchanged.


def _histogram(xi: jax.Array) -> jax.Array:
  """Per-example, per-channel histogram: (B, H, W, C) int -> (B, C, 256)."""
  b, _, _, c = xi.shape
  bins = (jnp.arange(b)[:, None, None, None] * c + jnp.arange(c)) * 256 + xi
  counts = jnp.zeros(b * c * 256, jnp.int32).at[bins.reshape(-1)].add(1)
  return counts.reshape(b, c, 256)


def _table_ops(x, op, m, s, candidates):
  b, _, _, c = x.shape
  xi = x.astype(jnp.int32)
  needs_hist = any(n in ("AutoContrast", "Equalize") for _, n in candidates)
  hist = _histogram(xi) if needs_hist else None
  lut = jnp.broadcast_to(_values(), (b, c, 256))
  for i, name in candidates:
    lut = jnp.where((op == i)[:, None, None], _LUT_OPS[name](hist, m, s), lut)
  flat = (jnp.arange(b)[:, None, None, None] * c + jnp.arange(c)) * 256 + xi
  return lut.reshape(-1)[flat].astype(jnp.float32)


def _blend_ops(x, op, m, s, candidates):
  degenerate = jnp.zeros((x.shape[0], 1, 1, 1), jnp.float32)
  factor = jnp.ones_like(m)
  for i, name in candidates:
    degenerate_fn, factor_fn = _BLEND_OPS[name]
    chosen = op == i
    degenerate = jnp.where(chosen[:, None, None, None], degenerate_fn(x),
                           degenerate)
    factor = jnp.where(chosen, factor_fn(m, s), factor)
  # Image.blend in float32, truncated; factor 1 returns x exactly.
  out = degenerate + factor[:, None, None, None] * (x - degenerate)
  return jnp.clip(jnp.floor(out), 0.0, 255.0)


def _affine_ops(x, op, m, s, candidates, fill):
  b, h, w, c = x.shape
  coeffs = [jnp.full_like(m, v) for v in (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)]
  for i, name in candidates:
    chosen = op == i
    new = _AFFINE_OPS[name](m, s, h, w)
    coeffs = [jnp.where(chosen, n, o) for n, o in zip(new, coeffs)]
  return _warp(x, jnp.stack(coeffs, axis=-1), fill)


def _warp(x: jax.Array, coeffs: jax.Array, fill: jax.Array) -> jax.Array:
  """PIL's Image.transform(AFFINE, BILINEAR, fillcolor) per example.

  Args:
    x: (B, H, W, C) float32.
    coeffs: (B, 6) PIL affine data per example.
    fill: (C,) fill colour.

  Returns:
    (B, H, W, C) float32, integers in [0, 255].
  """
  b, h, w, _ = x.shape
  a, bb, c, d, e, f = (coeffs[:, i, None, None] for i in range(6))
  xo = jnp.arange(w, dtype=jnp.float32)[None, None, :] + 0.5
  yo = jnp.arange(h, dtype=jnp.float32)[None, :, None] + 0.5
  xs = a * xo + bb * yo + c  # (B, H, W), pixel-edge units
  ys = d * xo + e * yo + f
  inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
  xs, ys = xs - 0.5, ys - 0.5  # pixel-centre units
  x0, y0 = jnp.floor(xs), jnp.floor(ys)
  dx, dy = (xs - x0)[..., None], (ys - y0)[..., None]
  x0 = x0.astype(jnp.int32)
  y0 = y0.astype(jnp.int32)
  x0c, x1c = jnp.clip(x0, 0, w - 1), jnp.clip(x0 + 1, 0, w - 1)
  y0c, y1c = jnp.clip(y0, 0, h - 1), jnp.clip(y0 + 1, 0, h - 1)
  batch = jnp.arange(b)[:, None, None]
  p00, p01 = x[batch, y0c, x0c], x[batch, y0c, x1c]
  p10, p11 = x[batch, y1c, x0c], x[batch, y1c, x1c]
  top = p00 + (p01 - p00) * dx
  bottom = p10 + (p11 - p10) * dx
  value = jnp.floor(top + (bottom - top) * dy + _GEOMETRIC_EPS)
  return jnp.where(inside[..., None], jnp.clip(value, 0.0, 255.0), fill)


def _fill_values(fill: float | Sequence[float], channels: int) -> tuple:
  """The fill colour for `channels` channels (the first value for grey)."""
  values = (tuple(float(v) for v in fill) if isinstance(fill, Sequence)
            else (float(fill),))
  if len(values) == channels:
    return values
  if len(values) == 1:
    return values * channels
  if channels == 1:
    return values[:1]
  raise ValueError(f"fill {fill} has {len(values)} values for an image with "
                   f"{channels} channels")


def _apply(names, op, x, m, s, fill):
  """Applies names[op[i]] to example i (none where op[i] < 0)."""
  indexed = list(enumerate(names))
  table = [(i, n) for i, n in indexed if n in _LUT_OPS]
  blend = [(i, n) for i, n in indexed if n in _BLEND_OPS]
  affine = [(i, n) for i, n in indexed if n in _AFFINE_OPS]
  if table:
    x = _table_ops(x, op, m, s, table)
  if blend:
    x = _blend_ops(x, op, m, s, blend)
  if affine:
    fill = jnp.asarray(_fill_values(fill, x.shape[-1]), jnp.float32)
    x = _affine_ops(x, op, m, s, affine, fill)
  return x


def _check_images(images):
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(
        f"images must be (B, H, W, C) with C in (1, 3), got {images.shape}")


def apply_op(name: str, images: jax.Array, magnitude: float | jax.Array,
             sign: float | jax.Array = 1.0,
             fill: float | Sequence[float] = IMAGENET_FILL) -> jax.Array:
  """Applies one timm op, deterministically, to every image of a batch.

  Args:
    name: one of ``ALL_OPS`` (``OPS``, ``OPS_NON_INCREASING``).
    images: (B, H, W, C), C in {1, 3}, integer-valued in 0..255.
    magnitude: timm level, scalar or (B,); 10 is the full range.
    sign: +1 or -1, scalar or (B,), for the signed ops (Rotate, Shear,
      Translate, the Increasing enhance ops); positive rotates
      counter-clockwise and shears/translates content towards -x/-y, as PIL.
    fill: colour of the area that geometric ops uncover.

  Returns:
    (B, H, W, C), the dtype of `images`.
  """
  if name not in ALL_OPS:
    raise ValueError(f"unknown op {name!r}; expected one of {ALL_OPS}")
  _check_images(images)
  b = images.shape[0]
  m = jnp.broadcast_to(jnp.asarray(magnitude, jnp.float32), (b,))
  s = jnp.broadcast_to(jnp.asarray(sign, jnp.float32), (b,))
  x = images.astype(jnp.float32)
  out = _apply((name,), jnp.zeros((b,), jnp.int32), x, m, s, fill)
  return out.astype(images.dtype)


def _sample_layer(key, batch_size, num_ops, magnitude, magnitude_std,
                  magnitude_max, prob):
  """One layer's per-example draws: (op index or -1, magnitude, sign)."""
  k_op, k_mag, k_sign, k_apply = jax.random.split(key, 4)
  op = jax.random.randint(k_op, (batch_size,), 0, num_ops)
  if magnitude_std == math.inf:  # timm: uniform in [0, magnitude]
    m = jax.random.uniform(k_mag, (batch_size,), maxval=magnitude)
  else:
    m = magnitude + magnitude_std * jax.random.normal(k_mag, (batch_size,))
  m = jnp.clip(m, 0.0, magnitude_max)
  sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (batch_size,)), -1.0, 1.0)
  applied = jax.random.bernoulli(k_apply, prob, (batch_size,))
  return jnp.where(applied, op, -1), m, sign


def rand_augment(key: jax.Array, images: jax.Array, *, num_layers: int = 2,
                 magnitude: float = 9.0, magnitude_std: float = 0.5,
                 magnitude_max: float = 10.0, prob: float = 0.5,
                 increasing: bool = True,
                 fill: float | Sequence[float] = IMAGENET_FILL) -> jax.Array:
  """timm's RandAugment with independent draws per example.

  Defaults are ``rand-m9-mstd0.5-inc1``; ``**parse(spec)`` gives any other.
  For each of `num_layers` layers, every example draws an op uniformly from
  the 15 (with replacement across layers), applies it with probability
  `prob`, at a magnitude from N(`magnitude`, `magnitude_std`) clipped to
  [0, `magnitude_max`] (uniform in [0, `magnitude`] if the std is inf), with a
  random sign.

  Args:
    key: PRNG key for the whole batch.
    images: (B, H, W, C), C in {1, 3}, integer-valued in 0..255 (uint8 or
      float32 in raw units, before normalisation).
    num_layers: ops per image; static.
    magnitude: mean magnitude, on timm's 0..10 scale.
    magnitude_std: magnitude std; static (0 and inf select other samplers).
    magnitude_max: upper clip of the magnitude.
    prob: probability of applying each drawn op (may be traced).
    increasing: timm's ``inc1`` op set (``OPS``), else ``OPS_NON_INCREASING``.
    fill: colour of the area that geometric ops uncover.

  Returns:
    (B, H, W, C), the dtype of `images`.
  """
  _check_images(images)
  names = OPS if increasing else OPS_NON_INCREASING
  x = images.astype(jnp.float32)
  for layer_key in jax.random.split(key, num_layers):
    op, m, s = _sample_layer(layer_key, x.shape[0], len(names), magnitude,
                             magnitude_std, magnitude_max, prob)
    x = _apply(names, op, x, m, s, fill)
  return x.astype(images.dtype)
