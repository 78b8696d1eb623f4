"""Tests for input_pipeline/augment.py."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from input_pipeline import augment
from input_pipeline import normalize
from input_pipeline import random_crop
from input_pipeline import random_erasing
from input_pipeline import random_flip


def _images(b=8, h=5, w=6, c=2, dtype=np.float32, seed=0):
  # Values 1..255 so that a zero can only come from padding.
  rng = np.random.default_rng(seed)
  return rng.integers(1, 256, (b, h, w, c)).astype(dtype)


def _crop_offsets(x, y, padding, mode):
  """For each example, every (dy, dx) whose padded crop equals the output."""
  p = padding
  padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode=mode)
  h, w = x.shape[1:3]
  found = []
  for i in range(len(x)):
    found.append([(dy - p, dx - p)
                  for dy, dx in itertools.product(range(2 * p + 1), repeat=2)
                  if np.array_equal(padded[i, dy:dy + h, dx:dx + w], y[i])])
  return found


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_shapes_and_dtype_preserved(dtype):
  x = jnp.asarray(_images(dtype=dtype))
  fn = jax.jit(lambda k, x: augment(k, x, crop_padding=2, flip=True))
  y = fn(jax.random.key(0), x)
  assert y.shape == x.shape and y.dtype == x.dtype


def test_deterministic_per_key():
  x = jnp.asarray(_images(b=16))
  fn = jax.jit(lambda k: augment(k, x, crop_padding=2, flip=True))
  a, b, c = fn(jax.random.key(1)), fn(jax.random.key(1)), fn(jax.random.key(2))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_padding_zero_and_no_flip_is_identity():
  x = jnp.asarray(_images())
  np.testing.assert_array_equal(random_crop(jax.random.key(0), x, 0), x)
  np.testing.assert_array_equal(jax.jit(augment)(jax.random.key(0), x), x)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_crop_is_translation(mode):
  p = 2
  x = _images(b=32)
  y = np.asarray(jax.jit(random_crop, static_argnums=(2, 3))(
      jax.random.key(3), jnp.asarray(x), p, mode))
  found = _crop_offsets(x, y, p, mode)
  assert all(len(f) == 1 for f in found), found
  if mode == "constant":
    # Zero fill: a shift by (dy, dx) leaves exactly that many zero rows/cols.
    for i, [(dy, dx)] in enumerate(found):
      zero_rows = (y[i] == 0).all(axis=(1, 2)).sum()
      zero_cols = (y[i] == 0).all(axis=(0, 2)).sum()
      assert (zero_rows, zero_cols) == (abs(dy), abs(dx))


def test_crop_offsets_cover_whole_range():
  p = 2
  x = _images(b=400, h=4, w=4, c=1)
  y = np.asarray(jax.jit(lambda k, x: random_crop(k, x, p))(jax.random.key(4),
                                                             jnp.asarray(x)))
  offsets = {f[0] for f in _crop_offsets(x, y, p, "constant")}
  assert offsets == set(itertools.product(range(-p, p + 1), repeat=2))


def test_crop_rejects_unknown_mode():
  with pytest.raises(ValueError, match="wrap"):
    random_crop(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), 1, "wrap")


def test_flip_is_per_example_and_involutive():
  x = jnp.asarray(_images(b=64))
  key = jax.random.key(5)
  y = np.asarray(jax.jit(random_flip)(key, x))
  flipped = np.array([np.array_equal(y[i], np.asarray(x)[i, :, ::-1]) for i in range(64)])
  kept = np.array([np.array_equal(y[i], np.asarray(x)[i]) for i in range(64)])
  assert (flipped ^ kept).all()  # Each example is one or the other...
  assert 10 < flipped.sum() < 54  # ...and both happen within one batch.
  np.testing.assert_array_equal(random_flip(key, jnp.asarray(y)), x)


def test_augment_flip_without_crop_only_flips():
  x = np.asarray(_images(b=32))
  y = np.asarray(augment(jax.random.key(6), jnp.asarray(x), flip=True))
  for i in range(32):
    assert np.array_equal(y[i], x[i]) or np.array_equal(y[i], x[i, :, ::-1])
  assert not np.array_equal(y, x)


def test_normalize_arithmetic():
  x = jnp.asarray([[[[0, 255, 51]]]], jnp.uint8)  # (1, 1, 1, 3)
  mean, std = (0.5, 0.25, 0.2), (0.5, 0.25, 0.1)
  y = normalize(x, mean, std)
  assert y.dtype == jnp.float32
  np.testing.assert_allclose(y[0, 0, 0], [-1.0, 3.0, 0.0], atol=1e-6)


def test_random_erasing_rate_and_rectangles():
  """About `prob` of the examples get one axis-aligned rectangle of random values, with
  an area fraction in the configured range; everything outside it is untouched."""
  images = jnp.full((2000, 16, 16, 1), -1.0)  # -1 is never a fill value (0..255)
  out = np.asarray(random_erasing(jax.random.key(3), images, 0.25,
                                              area=(0.05, 0.3)))
  erased = out != -1.0
  hit = erased.any(axis=(1, 2, 3))
  # Binomial(2000, 0.25): 3 sigma is 0.029.
  assert abs(hit.mean() - 0.25) < 0.03
  for mask in erased[hit][:200, :, :, 0]:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    assert box.all() and box.sum() == mask.sum()  # one filled rectangle
    assert 0.05 * 256 * 0.5 <= mask.sum() <= 0.3 * 256 * 1.5
  assert out[erased].min() >= 0 and out[erased].max() <= 255


def test_random_erasing_zero_prob_is_identity_and_rejects_bad_prob():
  images = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
  np.testing.assert_array_equal(
      random_erasing(jax.random.key(0), images, 0.0), images)
  with pytest.raises(ValueError, match="probability"):
    random_erasing(jax.random.key(0), images, 1.5)
