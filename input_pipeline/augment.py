"""Batch augmentation that runs inside the compiled train step.

Every function takes one key for the whole batch and draws per-example
randomness from it. Images are in raw 0..255 units (float32 or uint8) so that
constant padding is 0 = background; normalise afterwards:

    x = augment(key, x.astype(jnp.float32), crop_padding=4, flip=ds.flip)
    x = normalize(x, ds.mean, ds.std)
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

_PAD_MODES = ("constant", "reflect", "edge")


def random_crop(key: jax.Array, images: jax.Array, padding: int,
                mode: str = "constant") -> jax.Array:
  """Pads each side by `padding`, then takes a random HxW crop per example.

  This is a random translation by up to `padding` pixels in each direction;
  with mode='constant' the uncovered border is 0 (background).

  Args:
    key: PRNG key for the whole batch.
    images: (B, H, W, C).
    padding: static, >= 0; 0 returns `images` unchanged.
    mode: 'constant' (zeros), 'reflect' or 'edge', as in ``jnp.pad``.

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


def random_erasing(key: jax.Array, images: jax.Array, prob: float,
                   area: tuple[float, float] = (0.02, 1 / 3),
                   aspect: tuple[float, float] = (0.3, 1 / 0.3)) -> jax.Array:
  """Random erasing (Zhong et al. 2017, arXiv 1708.04896, Alg. 1).

  With probability ``prob`` per example, a rectangle covering a fraction of the image
  drawn from U(``area``), with aspect ratio log-uniform in ``aspect``, is filled with
  random values uniform in 0..255 (the paper's choice; images are in raw units here).
  The paper redraws a rectangle that does not fit until one does; we draw once and
  clip it to the image, which keeps the step branch-free.

  Args:
    key: PRNG key for the whole batch.
    images: (B, H, W, C) in raw 0..255 units.
    prob: probability of erasing each example; 0 returns ``images``.
    area: (min, max) fraction of the image erased; paper (0.02, 0.4), timm (0.02, 1/3).
    aspect: (min, max) of height / width.

  Returns:
    (B, H, W, C), same dtype.
  """
  if not 0.0 <= prob <= 1.0:
    raise ValueError(f"random-erasing probability must be in [0, 1], got {prob}")
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
  fill = jax.random.uniform(k_fill, images.shape, minval=0.0, maxval=255.0)
  return jnp.where(mask[..., None], fill.astype(images.dtype), images)


def augment(key: jax.Array, images: jax.Array, *, crop_padding: int = 0,
            crop_mode: str = "constant", flip: bool = False,
            erase_prob: float = 0.0) -> jax.Array:
  """Random crop (translation), random horizontal flip, then random erasing.

  Args:
    key: PRNG key for the batch; split here so callers pass one key.
    images: (B, H, W, C) in raw 0..255 units, before `normalize`.
    crop_padding: static; 0 disables the crop.
    crop_mode: padding mode of the crop ('constant', 'reflect', 'edge').
    flip: static; use ``ArrayDataset.flip`` (False for digits).
    erase_prob: static; probability of random erasing per example (0 disables).

  Returns:
    Augmented images, same shape and dtype.
  """
  crop_key, flip_key, erase_key = jax.random.split(key, 3)
  images = random_crop(crop_key, images, crop_padding, crop_mode)
  if flip:
    images = random_flip(flip_key, images)
  return random_erasing(erase_key, images, erase_prob)


def normalize(images: jax.Array, mean: Sequence[float],
              std: Sequence[float]) -> jax.Array:
  """(images / 255 - mean) / std per channel, as float32."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return (images.astype(jnp.float32) / 255.0 - mean) / std
