"""Tests for input_pipeline/augment.py."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from input_pipeline import alternating_flip
from input_pipeline import apply_ops
from input_pipeline import center_crop
from input_pipeline import color_jitter
from input_pipeline import distort
from input_pipeline import mixup_cutmix
from input_pipeline import normalize
from input_pipeline import random_crop
from input_pipeline import random_erasing
from input_pipeline import random_flip
from input_pipeline import random_resized_crop
from input_pipeline import lighting
from input_pipeline import scale_jitter_crop
from input_pipeline import ten_crop
from input_pipeline.augment import _crop_boxes
from input_pipeline.augment import affine_warp
from input_pipeline.augment import distortion_matrices
from input_pipeline.recipe import IMAGENET_EIGVAL
from input_pipeline.recipe import IMAGENET_EIGVEC
from input_pipeline.recipe import op


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


CROP_FLIP = (op("translate", padding=2, mode="constant"), op("flip"))


def _augment(key, x, ops):
  return apply_ops(key, x, ops)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_shapes_and_dtype_preserved(dtype):
  x = jnp.asarray(_images(dtype=dtype))
  fn = jax.jit(lambda k, x: _augment(k, x, CROP_FLIP))
  y = fn(jax.random.key(0), x)
  assert y.shape == x.shape and y.dtype == x.dtype


def test_deterministic_per_key():
  x = jnp.asarray(_images(b=16))
  fn = jax.jit(lambda k: _augment(k, x, CROP_FLIP))
  a, b, c = fn(jax.random.key(1)), fn(jax.random.key(1)), fn(jax.random.key(2))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_padding_zero_and_no_flip_is_identity():
  x = jnp.asarray(_images())
  np.testing.assert_array_equal(random_crop(jax.random.key(0), x, 0), x)
  np.testing.assert_array_equal(jax.jit(lambda k, x: _augment(k, x, ()))(jax.random.key(0), x), x)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
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


def test_wrap_crop_is_torch_roll():
  # The modern LeNet-1989 reproduction's shift: torch.roll by (dy, dx) in [-1, 1]^2,
  # which keeps every pixel (the sum too) and brings back what leaves one side.
  x = _images(b=64, h=6, w=6, c=1)
  y = np.asarray(random_crop(jax.random.key(7), jnp.asarray(x), 1, "wrap"))
  shifts = set()
  for i in range(len(x)):
    rolls = [(dy, dx) for dy, dx in itertools.product((-1, 0, 1), repeat=2)
             if np.array_equal(np.roll(x[i], (dy, dx), axis=(0, 1)), y[i])]
    assert len(rolls) == 1, rolls
    shifts.add(rolls[0])
  assert shifts == set(itertools.product((-1, 0, 1), repeat=2))


def test_crop_rejects_unknown_mode():
  with pytest.raises(ValueError, match="mirror"):
    random_crop(jax.random.key(0), jnp.zeros((1, 4, 4, 1)), 1, "mirror")


def test_flip_is_per_example_and_involutive():
  x = jnp.asarray(_images(b=64))
  key = jax.random.key(5)
  y = np.asarray(jax.jit(random_flip)(key, x))
  flipped = np.array([np.array_equal(y[i], np.asarray(x)[i, :, ::-1]) for i in range(64)])
  kept = np.array([np.array_equal(y[i], np.asarray(x)[i]) for i in range(64)])
  assert (flipped ^ kept).all()  # Each example is one or the other...
  assert 10 < flipped.sum() < 54  # ...and both happen within one batch.
  np.testing.assert_array_equal(random_flip(key, jnp.asarray(y)), x)


def test_alternating_flip_shows_each_image_both_ways_in_two_epochs():
  x = jnp.asarray(_images(b=64))
  ids = jnp.arange(100, 164)
  key = jax.random.key(5)

  def mirrored(epoch, ids=ids, key=key):
    y = np.asarray(jax.jit(alternating_flip)(key, x, ids, epoch))
    out = np.array([np.array_equal(y[i], np.asarray(x)[i, :, ::-1]) for i in range(64)])
    kept = np.array([np.array_equal(y[i], np.asarray(x)[i]) for i in range(64)])
    assert (out ^ kept).all()
    return out

  first = mirrored(0)
  assert 10 < first.sum() < 54  # a random half, fixed per example...
  np.testing.assert_array_equal(mirrored(1), ~first)  # ...the other way the next epoch
  np.testing.assert_array_equal(mirrored(6), first)
  # The coin is the example's (its index), not its place in the batch; another run's key
  # draws other coins.
  np.testing.assert_array_equal(mirrored(0, ids=ids[::-1])[::-1], first)  # ids reversed
  assert (mirrored(0, key=jax.random.key(6)) != first).any()
  with pytest.raises(ValueError, match="alternate_flip needs the examples' indices"):
    apply_ops(key, x, (op("alternate_flip"),))


def test_augment_flip_without_crop_only_flips():
  x = np.asarray(_images(b=32))
  y = np.asarray(_augment(jax.random.key(6), jnp.asarray(x), (op("flip"),)))
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


# --- timm's ImageNet augmentations: random_resized_crop, center_crop, color_jitter,
# --- mixup_cutmix, random_erasing(mode='pixel').


def _coordinate_images(b, h, w):
  """Channel 0 holds each pixel's row index, channel 1 its column index."""
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  return np.broadcast_to(np.stack([rows, cols], -1), (b, h, w, 2)).astype(np.float32)


def test_random_resized_crop_whole_image_is_identity():
  x = jnp.asarray(_images(b=4, h=16, w=16, c=3, dtype=np.uint8))
  fn = jax.jit(lambda k: [
      random_resized_crop(k, x, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0), method=m)
      for m in ("bilinear", "bicubic")])
  for y in fn(jax.random.key(0)):
    assert y.shape == x.shape and y.dtype == jnp.float32
    np.testing.assert_allclose(y, x, atol=1e-3)


def test_random_resized_crop_quarter_area_is_a_random_half_size_slice():
  x = _images(b=16, h=32, w=32, c=1)
  fn = jax.jit(lambda k, x: random_resized_crop(k, x, 16, scale=(0.25, 0.25),
                                                ratio=(1.0, 1.0)))
  y = np.asarray(fn(jax.random.key(1), jnp.asarray(x)))
  assert y.shape == (16, 16, 16, 1)
  # Same size out as the 16x16 box: no resampling, an exact slice at some offset.
  offsets = []
  for i in range(16):
    found = [(t, l) for t, l in itertools.product(range(17), repeat=2)
             if np.allclose(x[i, t:t + 16, l:l + 16], y[i], atol=1e-3)]
    assert len(found) == 1, found
    offsets += found
  assert len(set(offsets)) > 8  # offsets are drawn per example
  np.testing.assert_array_equal(fn(jax.random.key(1), jnp.asarray(x)), y)
  assert not np.array_equal(fn(jax.random.key(2), jnp.asarray(x)), y)


def test_random_resized_crop_impossible_scale_falls_back_to_center_crop():
  # 16x32 has ratio 2 > 4/3: the fallback is the central 16 x round(16 * 4/3) = 21 box
  # at left (32 - 21) // 2 = 5, squeezed to 16x16.
  x = jnp.asarray(_coordinate_images(3, 16, 32))
  # Without antialiasing, linear interpolation reproduces the linear coordinates.
  fn = jax.jit(lambda k: random_resized_crop(k, x, 16, scale=(2.0, 3.0), antialias=False))
  y = np.asarray(fn(jax.random.key(4)))
  o = np.arange(16)
  np.testing.assert_allclose(y[..., 0], np.broadcast_to(o[None, :, None], (3, 16, 16)),
                             atol=1e-3)
  expected_cols = 5 + (o + 0.5) * 21 / 16 - 0.5
  np.testing.assert_allclose(y[..., 1], np.broadcast_to(expected_cols, (3, 16, 16)),
                             atol=1e-3)


def _torchvision_box_size(rng, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """(h, w) of torchvision's RandomResizedCrop.get_params (fallback for square images)."""
  for _ in range(10):
    area = height * width * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
    w, h = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
    if 0 < w <= width and 0 < h <= height:
      return h, w
  return height, width


def test_crop_boxes_follow_torchvision_sampling():
  boxes = jax.jit(_crop_boxes, static_argnums=range(1, 6))
  top, left, h, w = (np.asarray(a) for a in boxes(
      jax.random.key(5), 4000, 32, 32, (0.08, 1.0), (3 / 4, 4 / 3)))
  assert ((top >= 0) & (left >= 0) & (h > 0) & (w > 0)).all()
  assert ((top + h <= 32) & (left + w <= 32)).all()
  # Area in U(0.08, 1) and width / height in [3/4, 4/3], up to rounding each side.
  assert ((w + 0.5) * (h + 0.5) >= 0.08 * 1024).all()
  assert ((w - 0.5) / (h + 0.5) <= 4 / 3).all() and ((w + 0.5) / (h - 0.5) >= 3 / 4).all()
  assert len(set(zip(top, left))) > 200
  # The same distribution as torchvision's loop (rejections skew it to small boxes).
  rng = np.random.default_rng(0)
  ref = np.array([_torchvision_box_size(rng, 32, 32) for _ in range(4000)])
  for ours, theirs in ((h * w / 1024, ref[:, 0] * ref[:, 1] / 1024),
                       (np.log(w / h), np.log(ref[:, 1] / ref[:, 0]))):
    assert abs(ours.mean() - theirs.mean()) < 0.02  # about 4 sigma
    assert abs(ours.std() - theirs.std()) < 0.02


def _pil_resize_center_crop(x, size, crop_pct, method):
  """torchvision's PIL path: Resize(floor(size / crop_pct)) then CenterCrop(size)."""
  from PIL import Image
  h, w = x.shape[1:3]
  short = int(np.floor(size / crop_pct))
  rh, rw = (short, int(short * w / h)) if h <= w else (int(short * h / w), short)
  top, left = int(round((rh - size) / 2.0)), int(round((rw - size) / 2.0))
  resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}[method]
  out = np.empty((x.shape[0], size, size, x.shape[3]), np.float32)
  for i, ch in itertools.product(range(x.shape[0]), range(x.shape[3])):
    img = Image.fromarray(x[i, :, :, ch], mode="F").resize((rw, rh), resample)
    out[i, :, :, ch] = np.asarray(img)[top:top + size, left:left + size]
  return np.clip(out, 0, 255)


@pytest.mark.parametrize("shape,size,method", [
    ((32, 32), 24, "bilinear"), ((24, 40), 20, "bilinear"), ((32, 32), 24, "bicubic")])
def test_center_crop_matches_pil_resize_and_crop(shape, size, method):
  x = _images(b=2, h=shape[0], w=shape[1], c=3, dtype=np.float32)
  y = np.asarray(jax.jit(lambda x: center_crop(x, size, method=method))(jnp.asarray(x)))
  assert y.shape == (2, size, size, 3) and y.dtype == np.float32
  np.testing.assert_allclose(y, _pil_resize_center_crop(x, size, 0.875, method),
                             atol=0.05)


def test_center_crop_whole_image_is_identity():
  x = jnp.asarray(_images(b=2, h=16, w=16, c=3))
  np.testing.assert_array_equal(center_crop(x, 16, crop_pct=1.0), x)
  with pytest.raises(ValueError, match="method"):
    center_crop(x, 16, method="nearest")


def test_color_jitter_zero_strength_is_identity():
  x = jnp.asarray(_images(b=2, h=4, w=4, c=3))
  assert color_jitter(jax.random.key(0), x, 0.0, 0.0, 0.0) is x
  gray = jnp.asarray(_images(b=2, h=4, w=4, c=1))
  assert color_jitter(jax.random.key(0), gray, 0.0, 0.0, 0.4) is gray


def test_color_jitter_brightness_and_contrast_factors():
  x = np.random.default_rng(0).uniform(60, 180, (256, 4, 4, 3)).astype(np.float32)
  fn = jax.jit(lambda k, b, c: color_jitter(k, jnp.asarray(x), b, c, 0.0),
               static_argnums=(1, 2))
  # Brightness alone multiplies each example by one factor in [0.6, 1.4].
  y = np.asarray(fn(jax.random.key(1), 0.4, 0.0))
  ratio = y / x
  np.testing.assert_allclose(ratio, ratio[:, :1, :1, :1] * np.ones_like(ratio), rtol=1e-5)
  f = ratio[:, 0, 0, 0]
  assert f.min() >= 0.6 - 1e-6 and f.max() <= 1.4 + 1e-6
  assert f.min() < 0.7 and f.max() > 1.3
  # Contrast alone scales the deviations from the grayscale mean, which stays.
  y = np.asarray(fn(jax.random.key(2), 0.0, 0.4))
  luma = np.asarray([0.299, 0.587, 0.114])
  m = (x @ luma).mean(axis=(1, 2))[:, None, None, None]
  np.testing.assert_allclose((y @ luma).mean(axis=(1, 2)), m[:, 0, 0, 0], rtol=1e-5)
  f = ((y - m) / (x - m))
  f = np.median(f.reshape(256, -1), axis=1)
  assert f.min() >= 0.6 - 1e-4 and f.max() <= 1.4 + 1e-4
  np.testing.assert_allclose(y, m + f[:, None, None, None] * (x - m), atol=1e-3)


def test_color_jitter_saturation_leaves_gray_images_alone():
  v = _images(b=4, h=4, w=4, c=1)
  gray_rgb = jnp.asarray(np.repeat(v, 3, axis=-1))
  y = jax.jit(lambda k: color_jitter(k, gray_rgb, 0.0, 0.0, 0.4))(jax.random.key(3))
  np.testing.assert_allclose(y, gray_rgb, rtol=1e-5)


def test_color_jitter_range_determinism_and_keys():
  x = jnp.asarray(np.random.default_rng(1).uniform(0, 255, (16, 8, 8, 3)), jnp.float32)
  fn = jax.jit(lambda k: color_jitter(k, x))
  a, b, c = fn(jax.random.key(4)), fn(jax.random.key(4)), fn(jax.random.key(5))
  assert a.shape == x.shape and a.dtype == jnp.float32
  assert float(a.min()) >= 0 and float(a.max()) <= 255
  assert float(a.max()) == 255  # brightened bright pixels are clipped
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_mixup_cutmix_disabled_gives_smoothed_one_hot():
  x = jnp.asarray(_images(b=4, h=4, w=4, c=3))
  labels = jnp.asarray([0, 3, 9, 3])
  for kwargs in ({"prob": 0.0}, {"mixup_alpha": 0.0, "cutmix_alpha": 0.0}):
    y, t = mixup_cutmix(jax.random.key(0), x, labels, 10, **kwargs)
    np.testing.assert_array_equal(y, x)
    expected = np.full((4, 10), 0.01, np.float32)
    expected[np.arange(4), labels] = 0.91
    np.testing.assert_allclose(t, expected, rtol=1e-6)


_MIX_B, _MIX_CLASSES, _MIX_KEYS = 8, 10, 2000


@pytest.fixture(scope="module")
def mixed_batches():
  """One compiled mixup_cutmix over 2000 keys (prob 0.8, switch_prob 0.3), classified.

  Example i is the constant i + 1 and has label i, so every pixel tells where it came
  from and each target row tells lam.
  """
  b = _MIX_B
  x = np.broadcast_to(np.arange(1, b + 1, dtype=np.float32)[:, None, None, None],
                      (b, 16, 16, 1))
  fn = jax.jit(jax.vmap(lambda k: mixup_cutmix(
      k, jnp.asarray(x), jnp.arange(b), _MIX_CLASSES, prob=0.8, switch_prob=0.3)))
  y, t = (np.asarray(a) for a in fn(jax.random.split(jax.random.key(6), _MIX_KEYS)))
  off, on = 0.1 / _MIX_CLASSES, 0.9 + 0.1 / _MIX_CLASSES
  lam = (t[:, np.arange(b), np.arange(b)] - off) / (on - off)  # (keys, b)
  own = y == x[None]
  partner = y == x[None, ::-1]
  copies = (own | partner).all(axis=(1, 2, 3, 4))
  plain = np.isclose(lam, 1.0, atol=1e-6).all(axis=1)
  return {"x": x, "y": y, "t": t, "lam": lam, "partner": partner, "copies": copies,
          "plain": plain}


def test_mixup_cutmix_targets_are_distributions_with_one_lam_per_batch(mixed_batches):
  t, lam = mixed_batches["t"], mixed_batches["lam"]
  np.testing.assert_allclose(t.sum(axis=-1), 1.0, rtol=1e-5)
  assert t.min() >= 0 and t.max() <= 1
  np.testing.assert_allclose(lam, lam[:, :1] * np.ones_like(lam), atol=1e-5)
  # Row i mixes label i with label B-1-i only; the rest is the smoothing floor.
  rows = np.arange(_MIX_B)
  floor = t.copy()
  floor[:, rows, rows] = floor[:, rows, rows[::-1]] = 0.01
  np.testing.assert_allclose(floor[:, :, :_MIX_B], 0.01, atol=1e-6)
  np.testing.assert_allclose(t[:, :, _MIX_B:], 0.01, atol=1e-6)


def test_cutmix_pastes_one_box_and_lam_is_its_complement(mixed_batches):
  cut = mixed_batches["copies"] & ~mixed_batches["plain"]
  partner, lam = mixed_batches["partner"][cut], mixed_batches["lam"][cut]
  assert len(lam) > 100
  np.testing.assert_allclose(partner.mean(axis=(2, 3, 4)), 1 - lam, atol=1e-5)
  assert (partner[:, :1] == partner).all()  # the same box for the whole batch
  for mask in partner[:, 0, :, :, 0]:  # one filled rectangle
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    assert mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].sum() == mask.sum()
  # Beta(1, 1) has mean 0.5; boxes clipped at the border raise the corrected lam.
  assert 0.55 < lam.mean() < 0.85 and lam.std() > 0.15


def test_mixup_blends_with_the_reversed_batch(mixed_batches):
  mix = ~mixed_batches["copies"]
  y, lam, x = mixed_batches["y"][mix], mixed_batches["lam"][mix], mixed_batches["x"]
  lam = lam[:, :, None, None, None]
  np.testing.assert_allclose(y, lam * x + (1 - lam) * x[::-1], rtol=1e-5, atol=1e-4)
  assert 0.3 < lam.mean() < 0.7 and lam.std() > 0.2  # Beta(0.8, 0.8)


def test_mixup_cutmix_apply_and_switch_frequencies(mixed_batches):
  plain, copies = mixed_batches["plain"], mixed_batches["copies"]
  x = mixed_batches["x"]
  np.testing.assert_array_equal(mixed_batches["y"][plain],
                                np.broadcast_to(x, (plain.sum(),) + x.shape))
  # Binomial(2000, p) has sigma <= 0.011; 0.04 is over 3.5 sigma. An empty CutMix box
  # (lam > 63/64, probability 1/64) also leaves a batch plain.
  applied = ~plain
  assert abs(applied.mean() - 0.8 * (1 - 0.3 / 64)) < 0.04
  assert abs((applied & copies).sum() / applied.sum() - 0.3) < 0.04


def test_random_erasing_pixel_mode_is_normal_after_normalize():
  mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  images = jnp.full((64, 16, 16, 3), -1.0)
  fn = jax.jit(lambda k: random_erasing(k, images, 1.0, mode="pixel", mean=mean, std=std))
  out = np.asarray(fn(jax.random.key(9)))
  erased = (out != -1.0).any(axis=-1)
  z = np.asarray(normalize(out, mean, std))[erased]
  assert z.size > 5000
  assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05
  with pytest.raises(ValueError, match="mean and std"):
    random_erasing(jax.random.key(0), images, 0.5, mode="pixel")


# ---------------------------------------------------------------- the papers' protocols


def test_scale_jitter_crop_at_the_minimum_side_is_a_translation_of_the_resized_image():
  """sides=(n, n) on n x n images: no resize, so every output is an n'-crop of its input
  at some offset, and the offsets vary over the batch (uniform over the positions)."""
  x = _images(b=64, h=10, w=10, c=1)
  y = np.asarray(scale_jitter_crop(jax.random.key(0), jnp.asarray(x), 8, (10, 10)))
  assert y.shape == (64, 8, 8, 1)
  offsets = []
  for i in range(64):
    found = [(a, b) for a in range(3) for b in range(3)
             if np.allclose(x[i, a:a + 8, b:b + 8], y[i], atol=1e-3)]
    assert found, f"example {i} is not a crop of its image"
    offsets.append(found[0])
  assert len(set(offsets)) >= 7  # of the 9 possible offsets


def test_scale_jitter_crop_draws_the_scale_per_example():
  """A 2x2 checkerboard of 4-pixel cells resized to side s has cells of 4s/16 pixels:
  over a batch the cell size (run length along a row) takes several values."""
  cell = np.kron((np.indices((4, 4)).sum(0) % 2), np.ones((4, 4))) * 255.0
  x = jnp.asarray(np.repeat(cell[None, :, :, None], 32, axis=0))
  y = np.asarray(scale_jitter_crop(jax.random.key(3), x, 16, (16, 48), method="bilinear"))
  assert y.shape == (32, 16, 16, 1) and y.min() >= 0 and y.max() <= 255
  runs = set()
  for img in y:
    row = img[8, :, 0] > 127.5
    runs.add(int(np.argmax(row != row[0])) if (row != row[0]).any() else 16)
  assert len(runs) >= 3
  with pytest.raises(ValueError, match="sides"):
    scale_jitter_crop(jax.random.key(0), x, 20, (16, 48))


def test_lighting_adds_one_pca_colour_shift_per_image():
  x = jnp.full((256, 4, 4, 3), 100.0)
  y = np.asarray(lighting(jax.random.key(0), x, std=0.1))
  shift = y[:, 0, 0, :] - 100.0
  # The same shift at every pixel of an image, different between images.
  np.testing.assert_allclose(y - 100.0, np.broadcast_to(shift[:, None, None], y.shape),
                             atol=1e-4)
  assert np.std(shift[:, 0]) > 0
  # shift = 255 * V (alpha * lambda): solving for alpha gives N(0, 0.1) per component.
  vec, val = np.asarray(IMAGENET_EIGVEC), np.asarray(IMAGENET_EIGVAL)
  alpha = np.linalg.solve(vec, (shift / 255.0).T).T / val
  assert np.allclose(alpha.std(axis=0), 0.1, rtol=0.2)
  assert np.allclose(alpha.mean(axis=0), 0.0, atol=0.03)
  with pytest.raises(ValueError, match="RGB"):
    lighting(jax.random.key(0), jnp.zeros((2, 4, 4, 1)))


def test_ten_crop_corners_centre_and_flips():
  x = jnp.asarray(_images(b=2, h=6, w=7, c=1))
  v = np.asarray(ten_crop(x, 4))
  assert v.shape == (2, 10, 4, 4, 1)
  xn = np.asarray(x)
  np.testing.assert_array_equal(v[:, 0], xn[:, :4, :4])  # top left
  np.testing.assert_array_equal(v[:, 3], xn[:, 2:, 3:])  # bottom right
  np.testing.assert_array_equal(v[:, 4], xn[:, 1:5, 2:6])  # centre (round half to even)
  np.testing.assert_array_equal(v[:, 5:], v[:, :5, :, ::-1])  # the flips


def test_apply_ops_runs_the_plan_in_order():
  """Each op in turn, op i drawing from fold_in(key, i); labels pass through."""
  x = jnp.asarray(_images(b=16, h=6, w=6, c=1))
  norm = op("normalize", mean=(0.5,), std=(0.25,))
  key = jax.random.key(4)
  got, labels = apply_ops(key, x, (op("flip"), norm), jnp.arange(16))
  want = normalize(random_flip(jax.random.fold_in(key, 0), x), (0.5,), (0.25,))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert not np.allclose(got, normalize(x, (0.5,), (0.25,)))
  np.testing.assert_array_equal(labels, np.arange(16))
  with pytest.raises(ValueError, match="not a device op"):
    apply_ops(jax.random.key(0), x, (op("decode"),))


# LeNet-5's affine distortions -------------------------------------------------


def _warp(x, matrix=((1.0, 0.0), (0.0, 1.0)), t=(0.0, 0.0)):
  b = x.shape[0]
  return np.asarray(affine_warp(jnp.asarray(x), jnp.broadcast_to(jnp.asarray(matrix), (b, 2, 2)),
                                jnp.broadcast_to(jnp.asarray(t), (b, 2))))


def test_distort_with_every_range_zero_is_identity():
  x = _images(b=8, h=7, w=6, c=2, dtype=np.uint8)
  y = distort(jax.random.key(0), jnp.asarray(x), 1.0, translate=0.0, scale=0.0,
              squeeze=0.0, shear=0.0)
  np.testing.assert_array_equal(y, x.astype(np.float32))


@pytest.mark.parametrize("dy,dx", [(1, -2), (-3, 0), (0, 4)])
def test_integer_translation_is_a_shift_with_background_fill(dy, dx):
  x = _images(b=3, h=8, w=9, c=2)
  want = np.zeros_like(x)
  h, w = x.shape[1:3]
  # The content moves by (dy, dx); what enters is background 0.
  want[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
      x[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
  np.testing.assert_array_equal(_warp(x, t=(dy, dx)), want)


def test_squeeze_keeps_area_and_scale_changes_it():
  key = jax.random.key(1)
  squeeze, _ = distortion_matrices(key, 64, translate=0.0, scale=0.0, squeeze=0.15,
                                   shear=0.3)
  np.testing.assert_allclose(np.linalg.det(np.asarray(squeeze)), 1.0, rtol=1e-5)
  scaled, _ = distortion_matrices(key, 64, translate=0.0, scale=0.15, squeeze=0.0,
                                  shear=0.0)
  det = np.linalg.det(np.asarray(scaled))
  a = np.asarray(scaled)[:, 0, 0]
  np.testing.assert_allclose(det, a**2, rtol=1e-5)
  assert det.min() < 0.8 and det.max() > 1.2 and (np.abs(a - 1) <= 0.15 + 1e-6).all()
  # Squeezing a centred bar: taller and thinner (or the reverse), the ink conserved.
  x = np.zeros((1, 33, 33, 1), np.float32)
  x[0, 12:21, 12:21] = 255.0
  y = _warp(x, matrix=((1.25, 0.0), (0.0, 0.8)))
  rows, cols = (y[0, ..., 0] > 127).any(axis=1).sum(), (y[0, ..., 0] > 127).any(axis=0).sum()
  assert rows > 9 > cols
  np.testing.assert_allclose(y.sum(), x.sum(), rtol=0.02)


def test_horizontal_shear_moves_rows_in_proportion_to_their_height():
  x = np.zeros((1, 11, 11, 1), np.float32)
  x[0, :, 5] = 255.0  # a vertical line through the centre
  y = _warp(x, matrix=((1.0, 0.0), (1.0, 1.0)))  # x' = x + y
  for row in range(11):  # row r (r - 5 from the centre) moves by r - 5 columns
    col = 5 + (row - 5)
    if 0 <= col < 11:
      assert y[0, row, col, 0] == 255.0 and y[0, row].sum() == 255.0


def test_distort_probability_and_determinism():
  x = jnp.asarray(_images(b=64, h=12, w=12, c=1, dtype=np.uint8))
  fn = jax.jit(lambda k, p: distort(k, x, p), static_argnums=1)
  np.testing.assert_array_equal(fn(jax.random.key(0), 0.0), x)  # off: untouched
  y = np.asarray(fn(jax.random.key(0), 1.0))
  changed = ~np.all(y == np.asarray(x, np.float32), axis=(1, 2, 3))
  assert changed.all()
  y = np.asarray(fn(jax.random.key(0), 0.5))
  same = np.all(y == np.asarray(x, np.float32), axis=(1, 2, 3))
  assert 16 < same.sum() < 48  # the rest pass through bitwise
  np.testing.assert_array_equal(fn(jax.random.key(0), 0.5), y)
  assert not np.array_equal(fn(jax.random.key(1), 0.5), y)


def test_distort_rejects_bad_ranges():
  x = jnp.zeros((1, 4, 4, 1))
  with pytest.raises(ValueError, match="probability"):
    distort(jax.random.key(0), x, 1.5)
  with pytest.raises(ValueError, match="scale must be >= 0 and < 1"):
    distort(jax.random.key(0), x, 0.5, scale=1.0)


def test_apply_ops_runs_distort_as_planned():
  x = jnp.asarray(_images(b=4, h=10, w=10, c=1))
  kw = dict(prob=0.9, translate=2.0, scale=0.15, squeeze=0.15, shear=0.3)
  key = jax.random.key(3)
  got, _ = apply_ops(key, x, (op("distort", **kw),))
  np.testing.assert_array_equal(got, distort(jax.random.fold_in(key, 0), x, **kw))
