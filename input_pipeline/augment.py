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


def augment(key: jax.Array, images: jax.Array, *, crop_padding: int = 0,
            crop_mode: str = "constant", flip: bool = False) -> jax.Array:
  """Random crop (translation), then random horizontal flip.

  Args:
    key: PRNG key for the batch; split here so callers pass one key.
    images: (B, H, W, C) in raw 0..255 units, before `normalize`.
    crop_padding: static; 0 disables the crop.
    crop_mode: padding mode of the crop ('constant', 'reflect', 'edge').
    flip: static; use ``ArrayDataset.flip`` (False for digits).

  Returns:
    Augmented images, same shape and dtype.
  """
  crop_key, flip_key = jax.random.split(key)
  images = random_crop(crop_key, images, crop_padding, crop_mode)
  if flip:
    images = random_flip(flip_key, images)
  return images


def normalize(images: jax.Array, mean: Sequence[float],
              std: Sequence[float]) -> jax.Array:
  """(images / 255 - mean) / std per channel, as float32."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return (images.astype(jnp.float32) / 255.0 - mean) / std
