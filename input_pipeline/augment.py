"""Batch augmentation that runs inside the compiled train step.

Every function takes one key for the whole batch and draws per-example
randomness from it. Images are in raw 0..255 units (float32 or uint8) so that
constant padding is 0 = background; normalise afterwards:

    x, _ = apply_ops(key, x, plan.train_device)   # ops placed by recipe.plan

The ImageNet recipe of timm (ConvNeXt, DeiT) is built from the same kind of
pieces: ``random_resized_crop``, ``random_flip``, ``color_jitter``,
``random_erasing(mode='pixel')`` per example, and ``mixup_cutmix`` over the
batch; ``center_crop`` is its evaluation transform. They follow timm's and
torchvision's sampling; the differences are noted in each docstring.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp

from input_pipeline import randaugment
from input_pipeline import recipe as recipe_lib

_PAD_MODES = ("constant", "reflect", "edge", "wrap")
_RESIZE_METHODS = ("bilinear", "bicubic")
_ERASE_MODES = ("uniform", "pixel")
# ITU-R 601-2 luma, as PIL's convert("L") (torchvision's tensor path uses 0.2989).
_LUMA = (0.299, 0.587, 0.114)


def random_crop(key: jax.Array, images: jax.Array, padding: int,
                mode: str = "constant") -> jax.Array:
  """Pads each side by `padding`, then takes a random HxW crop per example.

  This is a random translation by up to `padding` pixels in each direction;
  with mode='constant' the uncovered border is 0 (background); mode='wrap' is a
  circular shift, ``torch.roll`` (the modern LeNet-1989 reproduction's 1-pixel shift):
  what leaves one side comes back on the other.

  Args:
    key: PRNG key for the whole batch.
    images: (B, H, W, C).
    padding: static, >= 0; 0 returns `images` unchanged.
    mode: 'constant' (zeros), 'reflect', 'edge' or 'wrap', as in ``jnp.pad``.

  Returns:
    (B, H, W, C), same dtype.
  """
  if mode not in _PAD_MODES:
    raise ValueError(f"crop mode {mode!r} is not one of {_PAD_MODES}")
  if padding < 0:
    raise ValueError(f"crop padding must be >= 0, got {padding}")
  if padding == 0:
    return images
  b, h, w, c = images.shape
  p = padding
  padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode=mode)
  offsets = jax.random.randint(key, (b, 2), 0, 2 * p + 1)

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

  return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
  """Flips each example left-right with probability 0.5, independently."""
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def alternating_flip(key: jax.Array, images: jax.Array, example_ids: jax.Array,
                     epoch: jax.Array | int) -> jax.Array:
  """airbench's alternating flip: example ``i`` is mirrored in even epochs if a fixed
  coin, ``bernoulli(fold_in(key, i))``, says so, and in odd epochs if it does not, so
  every two consecutive epochs show each image once each way (where random flips leave
  a quarter of the images unmirrored, and a quarter mirrored, over two epochs). ``key``
  is the run's, the same at every step."""
  coins = jax.vmap(lambda i: jax.random.bernoulli(jax.random.fold_in(key, i)))(example_ids)
  flip = coins != (jnp.asarray(epoch) % 2 == 1)
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def distortion_matrices(key: jax.Array, batch: int, translate: float = 2.0,
                        scale: float = 0.15, squeeze: float = 0.15,
                        shear: float = 0.3) -> tuple[jax.Array, jax.Array]:
  """Random planar affine maps of LeCun et al. (1998, Sec. III.C), one per example.

  The paper lists "horizontal and vertical translations, scaling, squeezing
  (simultaneous horizontal compression and vertical elongation, or the reverse), and
  horizontal shearing" without ranges. Each example gets all of them at once, every
  magnitude drawn independently and uniformly (so any may be near zero):

    scale      a in [1 - scale, 1 + scale]         (y, x) -> (a y, a x)
    squeeze    k in [1 - squeeze, 1 + squeeze]     (y, x) -> (k y, x / k): area kept
    shear      h in [-shear, shear]                (y, x) -> (y, x + h y)
    translate  (ty, tx), each in [-translate, translate] pixels

  composed as ``A = scale @ squeeze @ shear`` (shear first), so ``det A = a**2``.
  Coordinates are (row, column) about the image centre; the map sends an input point
  p to ``A p + t``.

  Returns:
    (A, t): (batch, 2, 2) and (batch, 2) float32, (row, column) order.
  """
  u = 2.0 * jax.random.uniform(key, (batch, 5)) - 1.0  # one sampler, in [-1, 1)
  a = 1.0 + scale * u[:, 0]
  k = 1.0 + squeeze * u[:, 1]
  h = shear * u[:, 2]
  zero = jnp.zeros_like(a)
  # scale @ squeeze @ shear = [[a k, 0], [a h / k, a / k]]
  matrices = jnp.stack([jnp.stack([a * k, zero], -1),
                        jnp.stack([a * h / k, a / k], -1)], -2)
  return matrices, translate * u[:, 3:]


def affine_warp(images: jax.Array, matrices: jax.Array,
                translations: jax.Array) -> jax.Array:
  """Moves each image's content by its affine map, about the image centre.

  Output pixel q takes the input at ``A^-1 (q - c - t) + c``, c = ((H-1)/2, (W-1)/2),
  by bilinear interpolation; points outside the image read 0, the background in raw
  units (as constant padding does), so the border blends into the background.

  Args:
    images: (B, H, W, C) in raw 0..255 units.
    matrices: (B, 2, 2), (row, column) order; translations: (B, 2) pixels.

  Returns:
    Same shape, float (integer images become float32), in [0, 255].
  """
  x = _as_float(images)
  _, h, w, _ = x.shape
  centre = jnp.asarray([(h - 1) / 2, (w - 1) / 2], jnp.float32)
  grid = jnp.stack(jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij"), -1)
  grid = grid.reshape(-1, 2).astype(jnp.float32)  # (H W, 2) output pixels

  def warp(image, matrix, t):
    source = (grid - centre - t) @ jnp.linalg.inv(matrix).T + centre
    coords = source.T.reshape(2, h, w)
    channel = lambda im: jax.scipy.ndimage.map_coordinates(
        im, list(coords), order=1, mode="constant", cval=0.0)
    return jax.vmap(channel, in_axes=2, out_axes=2)(image)

  # Clipped: float rounding can put a blend of 255s a hair above 255.
  return jnp.clip(jax.vmap(warp)(x, matrices, translations), 0, 255).astype(x.dtype)


def distort(key: jax.Array, images: jax.Array, prob: float, translate: float = 2.0,
            scale: float = 0.15, squeeze: float = 0.15, shear: float = 0.3) -> jax.Array:
  """LeNet-5's distorted training set (LeCun et al. 1998, Sec. III.C), drawn on the fly.

  With probability ``prob`` per example, the image is moved by a random affine map
  (``distortion_matrices``) and resampled bilinearly (``affine_warp``); the other
  examples pass through bitwise unchanged. The paper added 540,000 distorted copies
  to the 60,000 originals, fixed once (9 per original), so 90% of what it saw was
  distorted: ``prob=0.9`` is that mix, with a fresh distortion at every visit instead
  of nine fixed ones.

  The paper gives no ranges; the defaults (shifts up to 2 pixels, scale and squeeze
  factors within 15% of 1, shear up to 0.3) are our reading of its Fig. 13 and
  similar to common reproductions. On MNIST padded to 32x32 (LeNet-5's input) they
  keep the 20x20 digit box inside the frame.

  Args:
    key: PRNG key for the whole batch.
    images: (B, H, W, C) in raw 0..255 units, background 0.
    prob: probability of distorting each example; 0 returns ``images``.
    translate, scale, squeeze, shear: the ranges (see ``distortion_matrices``).

  Returns:
    Same shape, float (integer images become float32); ``images`` when prob is 0.
  """
  if not 0.0 <= prob <= 1.0:
    raise ValueError(f"distortion probability must be in [0, 1], got {prob}")
  for name, value in (("translate", translate), ("scale", scale),
                      ("squeeze", squeeze), ("shear", shear)):
    if value < 0 or (name in ("scale", "squeeze") and value >= 1):
      raise ValueError(f"distortion {name} must be >= 0"
                       + (" and < 1" if name in ("scale", "squeeze") else "")
                       + f", got {value}")
  if prob == 0.0:
    return images
  x = _as_float(images)
  k_apply, k_maps = jax.random.split(key)
  matrices, translations = distortion_matrices(k_maps, x.shape[0], translate, scale,
                                               squeeze, shear)
  apply = jax.random.bernoulli(k_apply, prob, (x.shape[0],))
  return jnp.where(apply[:, None, None, None],
                   affine_warp(x, matrices, translations), x)


def random_erasing(key: jax.Array, images: jax.Array, prob: float,
                   area: tuple[float, float] = (0.02, 1 / 3),
                   aspect: tuple[float, float] = (0.3, 1 / 0.3),
                   mode: str = "uniform",
                   mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> jax.Array:
  """Random erasing (Zhong et al. 2017, arXiv 1708.04896, Alg. 1).

  With probability ``prob`` per example, a rectangle covering a fraction of the image
  drawn from U(``area``), with aspect ratio log-uniform in ``aspect``, is filled with
  random values uniform in 0..255 (the paper's choice; images are in raw units here).
  mode='pixel' is timm's ``re_mode='pixel'`` (ConvNeXt, DeiT): timm erases after
  normalisation with N(0, 1) values; here erasing comes before ``normalize``, so the
  fill is 255 * (mean + std * N(0, 1)) per pixel and channel, which ``normalize`` with
  the same mean and std turns into N(0, 1). It is not clipped to 0..255 (except for
  integer images), so that it stays exactly timm's after normalisation.
  The paper redraws a rectangle that does not fit until one does; we draw once and
  clip it to the image, which keeps the step branch-free.

  Args:
    key: PRNG key for the whole batch.
    images: (B, H, W, C) in raw 0..255 units.
    prob: probability of erasing each example; 0 returns ``images``.
    area: (min, max) fraction of the image erased; paper (0.02, 0.4), timm (0.02, 1/3).
    aspect: (min, max) of height / width.
    mode: 'uniform' (U(0, 255) fill, the paper's) or 'pixel' (timm's, see above).
    mean: per-channel mean in 0..1 units, as given to ``normalize``; mode='pixel' only.
    std: per-channel standard deviation in 0..1 units; mode='pixel' only.

  Returns:
    (B, H, W, C), same dtype.
  """
  if not 0.0 <= prob <= 1.0:
    raise ValueError(f"random-erasing probability must be in [0, 1], got {prob}")
  if mode not in _ERASE_MODES:
    raise ValueError(f"random-erasing mode {mode!r} is not one of {_ERASE_MODES}")
  if mode == "pixel" and (mean is None or std is None):
    raise ValueError("random erasing with mode='pixel' needs the normalisation "
                     "mean and std")
  if prob == 0.0:
    return images
  b, h, w, c = images.shape
  k_apply, k_area, k_aspect, k_top, k_left, k_fill = jax.random.split(key, 6)
  erase = jax.random.bernoulli(k_apply, prob, (b,))
  target = jax.random.uniform(k_area, (b,), minval=area[0], maxval=area[1]) * h * w
  ratio = jnp.exp(jax.random.uniform(k_aspect, (b,), minval=jnp.log(aspect[0]),
                                     maxval=jnp.log(aspect[1])))
  eh = jnp.clip(jnp.round(jnp.sqrt(target * ratio)), 1, h).astype(jnp.int32)
  ew = jnp.clip(jnp.round(jnp.sqrt(target / ratio)), 1, w).astype(jnp.int32)
  top = (jax.random.uniform(k_top, (b,)) * (h - eh + 1)).astype(jnp.int32)
  left = (jax.random.uniform(k_left, (b,)) * (w - ew + 1)).astype(jnp.int32)
  rows = jnp.arange(h)[None, :]
  cols = jnp.arange(w)[None, :]
  in_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
  in_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
  mask = in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None]
  if mode == "uniform":
    fill = jax.random.uniform(k_fill, images.shape, minval=0.0, maxval=255.0)
  else:
    noise = jax.random.normal(k_fill, images.shape)
    mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
    fill = 255.0 * (mean + std * noise)
    if jnp.issubdtype(images.dtype, jnp.integer):
      fill = jnp.clip(jnp.round(fill), 0.0, 255.0)
  return jnp.where(mask[..., None], fill.astype(images.dtype), images)


def _as_float(images: jax.Array) -> jax.Array:
  """Floating images keep their dtype; integer ones become float32."""
  if jnp.issubdtype(images.dtype, jnp.floating):
    return images
  return images.astype(jnp.float32)


def _check_resize_method(method: str) -> None:
  if method not in _RESIZE_METHODS:
    raise ValueError(f"resize method {method!r} is not one of {_RESIZE_METHODS}")


def _crop_boxes(key: jax.Array, batch: int, height: int, width: int,
                scale: tuple[float, float], ratio: tuple[float, float],
                attempts: int = 10) -> tuple[jax.Array, ...]:
  """torchvision's ``RandomResizedCrop.get_params`` for a batch, branch-free.

  Draws all ``attempts`` (area, ratio) pairs at once and keeps the first whose
  rounded box fits; examples with none fall back to the central crop with the
  aspect ratio clamped to ``ratio`` (the whole image when it is in range).

  Returns:
    (top, left, crop_height, crop_width), each (batch,) int32.
  """
  # One uniform draw for everything: each separate sampler costs compile time.
  u = jax.random.uniform(key, (batch, 2 * attempts + 2))
  u_area, u_ratio, u_top, u_left = (u[:, :attempts], u[:, attempts:-2], u[:, -2],
                                    u[:, -1])
  area = height * width * (scale[0] + (scale[1] - scale[0]) * u_area)
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  aspect = jnp.exp(log_lo + (log_hi - log_lo) * u_ratio)  # width / height
  # jnp.round, like Python's round, rounds halves to even.
  w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
  first = jnp.argmax(fits, axis=1)[:, None]  # 0 where nothing fits (masked below)
  found = fits.any(axis=1)
  w = jnp.take_along_axis(w, first, axis=1)[:, 0]
  h = jnp.take_along_axis(h, first, axis=1)[:, 0]
  # Uniform integers in [0, height - h] and [0, width - w] (u < 1).
  top = jnp.floor(u_top * (height - h + 1)).astype(jnp.int32)
  left = jnp.floor(u_left * (width - w + 1)).astype(jnp.int32)
  # The fallback depends only on static shapes: plain Python, as in torchvision.
  in_ratio = width / height
  if in_ratio < min(ratio):
    fw, fh = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    fw, fh = int(round(height * max(ratio))), height
  else:
    fw, fh = width, height
  return (jnp.where(found, top, (height - fh) // 2),
          jnp.where(found, left, (width - fw) // 2),
          jnp.where(found, h, fh), jnp.where(found, w, fw))


def random_resized_crop(key: jax.Array, images: jax.Array, size: int,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        method: str = "bilinear",
                        antialias: bool = True) -> jax.Array:
  """The Inception crop (Szegedy et al. 2015), as torchvision's RandomResizedCrop.

  Per example, a box covering a fraction U(``scale``) of the image with aspect
  ratio (width / height) log-uniform in ``ratio`` is placed uniformly at random
  and resized to ``size`` x ``size``. Sampling is torchvision's/timm's: ten
  attempts, the first box that fits wins, else the central crop (see
  ``_crop_boxes``).

  The resize is ``jax.image.scale_and_translate`` on the whole image, mapping the
  box's edges onto the output's edges. Unlike torchvision's crop-then-resize, the
  kernel may reach up to its radius (about one pixel, scaled by the downsampling
  factor with antialiasing) past the box's edges into the rest of the image, as
  PIL's ``resize(box=...)`` does. Bicubic is the Keys kernel with a = -0.5
  (PIL's; torch's tensor kernel uses -0.75), and its overshoot is clipped.

  Args:
    key: PRNG key for the whole batch.
    images: (B, H, W, C) in raw 0..255 units.
    size: static side of the square output.
    scale: (min, max) fraction of the image area covered by the box.
    ratio: (min, max) aspect ratio, width / height.
    method: 'bilinear' or 'bicubic' (timm's ConvNeXt recipe trains with bicubic).
    antialias: widen the kernel when downsampling, as PIL and torchvision do.

  Returns:
    (B, size, size, C), float (integer images become float32), in [0, 255].
  """
  _check_resize_method(method)
  if not 0 < scale[0] <= scale[1]:
    raise ValueError(f"crop scale must satisfy 0 < min <= max, got {scale}")
  if not 0 < ratio[0] <= ratio[1]:
    raise ValueError(f"crop ratio must satisfy 0 < min <= max, got {ratio}")
  images = _as_float(images)
  b, h, w, c = images.shape
  top, left, ch, cw = _crop_boxes(key, b, h, w, scale, ratio)
  # Output pixel o (centre o + 0.5) samples input coordinate top + (o + 0.5) * ch / size,
  # i.e. the box [top, top + ch) fills the output [0, size) exactly.
  s = jnp.stack([size / ch, size / cw], axis=1).astype(jnp.float32)
  t = -jnp.stack([top, left], axis=1).astype(jnp.float32) * s

  def resize(image, s, t):
    return jax.image.scale_and_translate(image, (size, size, c), (0, 1), s, t,
                                         method=method, antialias=antialias)

  return jnp.clip(jax.vmap(resize)(images, s, t), 0, 255).astype(images.dtype)


def center_crop(images: jax.Array, size: int, crop_pct: float = 0.875,
                method: str = "bilinear") -> jax.Array:
  """timm's evaluation transform: Resize(floor(size / crop_pct)), CenterCrop(size).

  The shorter side is resized to floor(size / crop_pct) (the longer one in
  proportion, truncated, as torchvision does) and the central ``size`` x ``size``
  crop is kept; both steps are one ``scale_and_translate`` with the crop as a
  translation, which computes exactly the kept pixels of the resized image.
  Antialiased, like PIL.

  Args:
    images: (B, H, W, C) in raw 0..255 units.
    size: static side of the square output.
    crop_pct: fraction of the resized shorter side that is kept, in (0, 1];
      0.875 is 224 of 256, what the ConvNeXt repository evaluates with at 224.
    method: 'bilinear' or 'bicubic'.

  Returns:
    (B, size, size, C), float (integer images become float32), in [0, 255].
  """
  _check_resize_method(method)
  if not 0.0 < crop_pct <= 1.0:
    raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
  images = _as_float(images)
  b, h, w, c = images.shape
  short = math.floor(size / crop_pct)
  if h <= w:
    rh, rw = short, int(short * w / h)
  else:
    rh, rw = int(short * h / w), short
  top, left = int(round((rh - size) / 2)), int(round((rw - size) / 2))
  if (rh, rw) == (h, w) == (size, size):
    return images
  out = jax.image.scale_and_translate(
      images, (b, size, size, c), (1, 2),
      jnp.array([rh / h, rw / w], jnp.float32),
      jnp.array([-top, -left], jnp.float32), method=method, antialias=True)
  return jnp.clip(out, 0, 255).astype(images.dtype)


def _grayscale(images: jax.Array) -> jax.Array:
  """(B, H, W, 1) luma of RGB images; 1-channel images are their own."""
  if images.shape[-1] == 1:
    return images
  return images @ jnp.asarray(_LUMA, images.dtype)[:, None]


def _adjust_brightness(images, factor):
  return images * factor  # a blend with black


def _adjust_contrast(images, factor):
  mean = _grayscale(images).mean(axis=(1, 2, 3), keepdims=True)
  return factor * images + (1 - factor) * mean


def _adjust_saturation(images, factor):
  return factor * images + (1 - factor) * _grayscale(images)


def color_jitter(key: jax.Array, images: jax.Array, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4) -> jax.Array:
  """torchvision's ColorJitter (without hue), per example.

  Each example draws a factor uniform in [max(0, 1 - s), 1 + s] per operation and
  applies the operations in its own random order, clipping to [0, 255] after each:
  brightness blends with black, contrast with the mean of the example's grayscale
  image, saturation with its grayscale image (luma 0.299/0.587/0.114). Without
  clipping the three commute; the order matters only through the clipping.
  Unlike PIL's ImageEnhance, the contrast mean is not rounded to an integer and
  nothing is quantised to uint8 between operations.

  timm's ``create_transform`` disables colour jitter when RandAugment is on (the
  ConvNeXt and DeiT recipes), so those recipes do not use it.

  Args:
    key: PRNG key for the whole batch.
    images: (B, H, W, C) in raw 0..255 units, C = 1 or 3.
    brightness: strength s >= 0; 0 skips the operation.
    contrast: strength s >= 0; 0 skips the operation.
    saturation: strength s >= 0; 0 skips it; it is a no-op on 1-channel images.

  Returns:
    Same shape, float (integer images become float32), in [0, 255]; ``images``
    itself when every operation is skipped.
  """
  strengths = {"brightness": brightness, "contrast": contrast,
               "saturation": saturation}
  for name, s in strengths.items():
    if s < 0:
      raise ValueError(f"color-jitter {name} must be >= 0, got {s}")
  c = images.shape[-1]
  if c not in (1, 3):
    raise ValueError(f"color jitter needs 1 or 3 channels, got {c}")
  ops = [(op, s) for op, s in ((_adjust_brightness, brightness),
                               (_adjust_contrast, contrast),
                               (_adjust_saturation, saturation if c == 3 else 0.0))
         if s > 0]
  if not ops:
    return images
  x = _as_float(images)
  b, n = x.shape[0], len(ops)
  u = jax.random.uniform(key, (b, 2 * n))  # one sampler for the orders and factors
  # argsort of i.i.d. uniforms: a uniformly random permutation per example.
  order = jnp.argsort(u[:, :n], axis=1)
  lo = jnp.asarray([max(0.0, 1 - s) for _, s in ops])
  hi = jnp.asarray([1 + s for _, s in ops])
  factors = (lo + (hi - lo) * u[:, n:]).astype(x.dtype)[:, :, None, None, None]
  for step in range(n):
    # Every operation on every example, then each example keeps the one its order
    # puts at this step: a few elementwise passes instead of per-example branches.
    results = [jnp.clip(op(x, factors[:, i]), 0, 255) for i, (op, _) in enumerate(ops)]
    chosen = order[:, step, None, None, None]
    x = results[0]
    for i in range(1, n):
      x = jnp.where(chosen == i, results[i], x)
  return x


def mixup_cutmix(key: jax.Array, images: jax.Array, labels: jax.Array,
                 num_classes: int, *, mixup_alpha: float = 0.8,
                 cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5,
                 label_smoothing: float = 0.1) -> tuple[jax.Array, jax.Array]:
  """Mixup (Zhang et al. 2017) or CutMix (Yun et al. 2019), as timm's Mixup.

  timm's default mode='batch': one draw for the whole batch. With probability
  ``prob`` the batch is mixed with its reverse (example i with example B-1-i):
  by CutMix with probability ``switch_prob`` when both alphas are > 0 (else by
  whichever is > 0). Mixup blends the images, lam * x + (1 - lam) * x[::-1], with
  lam ~ Beta(mixup_alpha, mixup_alpha); CutMix pastes the partner's pixels into one
  box shared by the batch, timm's ``rand_bbox`` for lam ~ Beta(cutmix_alpha,
  cutmix_alpha) (sides int(H sqrt(1 - lam)), centre uniform, clipped at the
  borders), and lam becomes the fraction of the image outside the box (timm's
  correct_lam=True). The targets are lam * t(y) + (1 - lam) * t(y[::-1]) with t
  the smoothed one-hot (off = smoothing / num_classes, on = 1 - smoothing + off).

  Everything is drawn and selected with ``jnp.where``, so it jits with static
  shapes; unlike timm, an odd batch size is allowed (its middle example mixes
  with itself).

  Args:
    key: PRNG key for the whole batch.
    images: (B, H, W, C), after the per-example augmentations.
    labels: (B,) integer class labels.
    num_classes: static number of classes.
    mixup_alpha: Beta parameter of mixup; 0 disables mixup.
    cutmix_alpha: Beta parameter of CutMix; 0 disables CutMix.
    prob: probability that the batch is mixed at all.
    switch_prob: probability of CutMix rather than mixup when both are enabled.
    label_smoothing: smoothing of the one-hot targets, in [0, 1).

  Returns:
    (images, targets): images as float (integer images become float32; unchanged
    when ``prob`` is 0 or both alphas are 0), targets (B, num_classes) float32
    rows summing to 1.
  """
  if mixup_alpha < 0 or cutmix_alpha < 0:
    raise ValueError(f"mixup/cutmix alphas must be >= 0, got {mixup_alpha}, "
                     f"{cutmix_alpha}")
  for name, p in (("prob", prob), ("switch_prob", switch_prob)):
    if not 0.0 <= p <= 1.0:
      raise ValueError(f"mixup_cutmix {name} must be in [0, 1], got {p}")
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
  off = label_smoothing / num_classes
  on = 1.0 - label_smoothing + off
  onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * (on - off) + off
  if prob == 0.0 or (mixup_alpha == 0 and cutmix_alpha == 0):
    return images, onehot

  x = _as_float(images)
  _, h, w, _ = x.shape
  # Few samplers, each drawing several values: every sampler costs compile time.
  k_uniform, k_lam = jax.random.split(key)
  u_apply, u_switch, u_cy, u_cx = jax.random.uniform(k_uniform, (4,))
  apply = u_apply < prob
  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = u_switch < switch_prob
  else:
    use_cutmix = jnp.asarray(cutmix_alpha > 0)
  # Both lambdas in one Beta draw (a disabled one gets alpha 1 and is unused).
  alphas = jnp.asarray([mixup_alpha or 1.0, cutmix_alpha or 1.0], jnp.float32)
  lam_mix, lam_cut = jax.random.beta(k_lam, alphas, alphas)
  # timm's rand_bbox: half-sides cut // 2 around a uniform centre, clipped.
  cut = jnp.sqrt(jnp.clip(1.0 - lam_cut, 0.0, 1.0))
  half_h = jnp.floor(h * cut).astype(jnp.int32) // 2
  half_w = jnp.floor(w * cut).astype(jnp.int32) // 2
  cy = jnp.floor(u_cy * h).astype(jnp.int32)  # uniform in 0..h-1
  cx = jnp.floor(u_cx * w).astype(jnp.int32)
  y0, y1 = jnp.clip(cy - half_h, 0, h), jnp.clip(cy + half_h, 0, h)
  x0, x1 = jnp.clip(cx - half_w, 0, w), jnp.clip(cx + half_w, 0, w)
  rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
  in_box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
  lam_box = 1.0 - ((y1 - y0) * (x1 - x0)) / (h * w)
  # Weight of each example's own image per pixel (H, W): one formula for all cases.
  keep = jnp.where(use_cutmix, jnp.where(in_box, 0.0, 1.0), lam_mix)
  keep = jnp.where(apply, keep, 1.0).astype(x.dtype)[None, :, :, None]
  lam = jnp.where(apply, jnp.where(use_cutmix, lam_box, lam_mix), 1.0)
  mixed = keep * x + (1 - keep) * x[::-1]
  targets = lam * onehot + (1 - lam) * onehot[::-1]
  return mixed, targets.astype(jnp.float32)


def scale_jitter_crop(key: jax.Array, images: jax.Array, size: int,
                      sides: tuple[int, int], method: str = "bilinear") -> jax.Array:
  """Scale augmentation (Simonyan & Zisserman 2014; He et al. 2015): per example, the
  shorter side is resized to S drawn uniformly from the integers in ``sides`` (the
  longer side in proportion, truncated, as torchvision's ``Resize(S)``), then a
  ``size`` x ``size`` crop is taken at a uniformly random position.

  One ``scale_and_translate`` per example computes just the crop's pixels of the
  resized image (antialiased when downsampling, like PIL).

  Args:
    key: PRNG key for the whole batch.
    images: (B, H, W, C) in raw 0..255 units.
    size: static side of the square output, at most ``sides[0]``.
    sides: (min, max) shorter side after resizing, inclusive.
    method: 'bilinear' or 'bicubic'.

  Returns:
    (B, size, size, C), float (integer images become float32), in [0, 255].
  """
  _check_resize_method(method)
  lo, hi = int(sides[0]), int(sides[1])
  if not size <= lo <= hi:
    raise ValueError(f"scale jitter sides {sides} must satisfy {size} <= min <= max")
  images = _as_float(images)
  b, h, w, c = images.shape
  u = jax.random.uniform(key, (b, 3))
  side = jnp.floor(lo + u[:, 0] * (hi - lo + 1)).astype(jnp.int32)  # uniform in lo..hi
  short = min(h, w)
  rh = jnp.where(h <= w, side, side * h // short)
  rw = jnp.where(h <= w, side * w // short, side)
  top = jnp.floor(u[:, 1] * (rh - size + 1)).astype(jnp.float32)
  left = jnp.floor(u[:, 2] * (rw - size + 1)).astype(jnp.float32)
  s = jnp.stack([rh / h, rw / w], axis=1).astype(jnp.float32)
  t = -jnp.stack([top, left], axis=1)

  def resize(image, s, t):
    return jax.image.scale_and_translate(image, (size, size, c), (0, 1), s, t,
                                         method=method, antialias=True)

  return jnp.clip(jax.vmap(resize)(images, s, t), 0, 255).astype(images.dtype)


def lighting(key: jax.Array, images: jax.Array, std: float = 0.1,
             eigval: Sequence[float] = recipe_lib.IMAGENET_EIGVAL,
             eigvec: Sequence[Sequence[float]] = recipe_lib.IMAGENET_EIGVEC) -> jax.Array:
  """AlexNet's PCA colour augmentation ("fancy PCA", Krizhevsky et al. 2012, Sec. 4.1).

  Per example, alpha ~ N(0, std) for each of the three principal components of
  ImageNet's RGB pixels, and every pixel gets ``sum_j eigvec[:, j] alpha_j eigval_j``
  (in [0, 1] units, here times 255), as fb.resnet.torch's ``Lighting(0.1)``. Not
  clipped, as there.

  Args:
    key: PRNG key for the whole batch.
    images: (B, H, W, 3) in raw 0..255 units.
    std: standard deviation of alpha (the paper: 0.1).
    eigval: the three eigenvalues.
    eigvec: 3x3, eigenvectors as columns (rows are R, G, B).

  Returns:
    Same shape, float.
  """
  if images.shape[-1] != 3:
    raise ValueError(f"PCA lighting needs RGB images, got {images.shape[-1]} channels")
  x = _as_float(images)
  alpha = std * jax.random.normal(key, (x.shape[0], 3))
  vec, val = jnp.asarray(eigvec, jnp.float32), jnp.asarray(eigval, jnp.float32)
  rgb = (alpha * val) @ vec.T  # (B, 3): rgb[c] = sum_j vec[c, j] alpha_j val_j
  return x + (255.0 * rgb).astype(x.dtype)[:, None, None, :]


def resize_square(images: jax.Array, size: int, method: str = "bilinear") -> jax.Array:
  """Resizes square images to ``size`` x ``size`` (antialiased)."""
  _check_resize_method(method)
  images = _as_float(images)
  b, h, w, c = images.shape
  if (h, w) == (size, size):
    return images
  out = jax.image.resize(images, (b, size, size, c), method=method, antialias=True)
  return jnp.clip(out, 0, 255).astype(images.dtype)


def ten_crop(images: jax.Array, size: int) -> jax.Array:
  """The four corner crops, the centre crop, and the same of the flipped image
  (Krizhevsky et al. 2012; torchvision's ``TenCrop``), as a view axis.

  Returns:
    (B, 10, size, size, C).
  """
  b, h, w, c = images.shape
  if size > min(h, w):
    raise ValueError(f"ten_crop of {size} from {h}x{w} images")
  top, left = int(round((h - size) / 2)), int(round((w - size) / 2))
  corners = ((0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (top, left))
  views = [images[:, i:i + size, j:j + size] for i, j in corners]
  views += [v[:, :, ::-1] for v in views]
  return jnp.stack(views, axis=1)


def flip_views(images: jax.Array) -> jax.Array:
  """The image and its mirror image as a view axis: (B, H, W, C) -> (B, 2, H, W, C)."""
  return jnp.stack([images, images[:, :, ::-1]], axis=1)


def _shifted_views(images: jax.Array, offsets: Sequence[tuple[int, int]],
                   mode: str) -> jax.Array:
  """(B, H, W, C) -> (B, len(offsets), H, W, C): the image padded by one pixel on each side
  (``jnp.pad`` ``mode``), then the H x W window at each (row, column) offset in 0..2; (1, 1)
  is the image itself, (0, 0) the image shifted one pixel down-right."""
  if mode not in _PAD_MODES:
    raise ValueError(f"crop mode {mode!r} is not one of {_PAD_MODES}")
  padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=mode)
  h, w = images.shape[1:3]
  return jnp.stack([padded[:, i:i + h, j:j + w] for i, j in offsets], axis=1)


def flip_translate_views(images: jax.Array) -> jax.Array:
  """Six views as a view axis, (B, H, W, C) -> (B, 6, H, W, C): the image, the image
  shifted one pixel down-right and one pixel up-left (reflect padding fills the edge),
  then the mirror of each (airbench's test-time augmentation, ``tta_level=2``)."""
  views = _shifted_views(images, ((1, 1), (0, 0), (2, 2)), "reflect")
  return jnp.concatenate([views, views[:, :, :, ::-1]], axis=1)


def translate_views(images: jax.Array, mode: str = "constant") -> jax.Array:
  """Nine views as a view axis, (B, H, W, C) -> (B, 9, H, W, C): the image shifted by
  every offset in {-1, 0, 1}^2 (the image itself in the middle, view 4), the uncovered
  border filled as ``random_crop``'s ``mode`` fills it (the config's ``crop_mode``: zero
  background, reflect, edge or wrap). Test-time augmentation for what must not be
  mirrored (digits)."""
  return _shifted_views(images, [(i, j) for i in range(3) for j in range(3)], mode)


def apply_ops(key: jax.Array | None, images: jax.Array, ops: Sequence[Any],
              labels: jax.Array | None = None, *, example_ids: jax.Array | None = None,
              epoch: jax.Array | int | None = None,
              run_key: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
  """Runs a plan's device ops (``recipe.plan``) on a batch, in order.

  Each op draws from ``fold_in(key, its index)``. ``mixup_cutmix`` turns ``labels``
  into soft targets; otherwise the labels come back unchanged. Evaluation chains
  (``key`` None) are deterministic; ``ten_crop``, ``flip_views``,
  ``flip_translate_views`` and ``translate_views`` add a view axis after the batch.
  ``alternate_flip`` needs the batch's ``example_ids`` (indices into the training set),
  the ``epoch`` and a ``run_key`` that stays the same over the run.

  Returns:
    (images, targets).
  """
  ops = list(ops)
  i = 0
  while i < len(ops):
    op, kw = ops[i].name, ops[i].kwargs
    k = jax.random.fold_in(key, i) if key is not None else None
    if op == "translate":
      images = random_crop(k, images, kw["padding"], kw["mode"])
    elif op == "random_resized_crop":
      images = random_resized_crop(k, images, kw["size"], scale=kw["scale"],
                                   ratio=kw["ratio"], method=kw["method"])
    elif op == "resize_shorter":  # with the random_crop that follows: static shapes
      if i + 1 >= len(ops) or ops[i + 1].name != "random_crop":
        raise ValueError("resize_shorter on the device must be followed by random_crop")
      images = scale_jitter_crop(k, images, ops[i + 1].kwargs["size"], kw["sides"],
                                 kw["method"])
      i += 1
    elif op == "flip":
      images = random_flip(k, images)
    elif op == "alternate_flip":
      if example_ids is None or epoch is None or run_key is None:
        raise ValueError("alternate_flip needs the examples' indices, the epoch and the "
                         "run's key (the device pipeline's training step passes them)")
      images = alternating_flip(run_key, images, example_ids, epoch)
    elif op == "distort":
      images = distort(k, images, kw["prob"], kw["translate"], kw["scale"],
                       kw["squeeze"], kw["shear"])
    elif op == "rand_augment":
      images = randaugment.rand_augment(k, images, **randaugment.parse(kw["spec"]))
    elif op == "color_jitter":
      s = kw["strength"]
      images = color_jitter(k, images, brightness=s, contrast=s, saturation=s)
    elif op == "lighting":
      images = lighting(k, images, kw["std"])
    elif op == "random_erasing":
      extra = {} if kw["mode"] == "uniform" else dict(mean=kw["mean"], std=kw["std"])
      images = random_erasing(k, images, kw["prob"], mode=kw["mode"], **extra)
    elif op == "normalize":
      images = normalize(images, kw["mean"], kw["std"])
    elif op == "mixup_cutmix":
      images, labels = mixup_cutmix(
          k, images, labels, kw["num_classes"], mixup_alpha=kw["mixup"],
          cutmix_alpha=kw["cutmix"], prob=kw["prob"], switch_prob=kw["switch_prob"],
          label_smoothing=kw["label_smoothing"])
    elif op == "center_crop":
      images = center_crop(images, kw["size"], kw["crop_pct"], method=kw["method"])
    elif op == "resize_square":
      images = resize_square(images, kw["size"], kw["method"])
    elif op == "ten_crop":
      images = ten_crop(images, kw["size"])
    elif op == "flip_views":
      images = flip_views(images)
    elif op == "flip_translate_views":
      images = flip_translate_views(images)
    elif op == "translate_views":
      images = translate_views(images, kw["mode"])
    else:
      raise ValueError(f"{op!r} is not a device op")
    i += 1
  return images, labels


def normalize(images: jax.Array, mean: Sequence[float],
              std: Sequence[float]) -> jax.Array:
  """(images / 255 - mean) / std per channel, as float32."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return (images.astype(jnp.float32) / 255.0 - mean) / std

