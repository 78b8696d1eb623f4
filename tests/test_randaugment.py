"""Tests for input_pipeline/randaugment.py, the one RandAugment of both input paths
(device-resident batches and host-streamed ones both run it in the step).

timm's RandAugment runs in PIL, so PIL is the reference: every op is compared
with timm's op transcribed below (its level formulas, PIL's
ImageOps/ImageEnhance/transform). Ops are computed once per image shape in one compiled program
(``_jax_ops``) and shared by the tests through module fixtures, which keeps
this file fast on a loaded 2-core machine.
"""

import functools
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from PIL import ImageEnhance
from PIL import ImageOps

from input_pipeline import randaugment as ra

FILL = ra.IMAGENET_FILL
# (magnitude, sign) rows of every op batch: timm's m9 with both signs, an
# off-grid magnitude, and magnitude 0.
ROWS = ((9.0, 1.0), (9.0, -1.0), (6.3, -1.0), (0.0, 1.0))
# Exact integer tables: bit-identical to PIL. AutoContrast is one level apart
# where PIL's float64 table rounds an exact integer down; blends and bilinear
# samples are one level apart where float32 and float64 truncate differently.
EXACT_VS_PIL = ("Equalize", "Invert", "Posterize", "PosterizeIncreasing",
                "Solarize", "SolarizeIncreasing", "SolarizeAdd")
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
WITHOUT_MAGNITUDE = ("AutoContrast", "Equalize", "Invert")


def _image(h=20, w=24, c=3, seed=0):
  """A smooth image with noise: gradients in each channel, no saturation."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  base = np.stack([40 + 120 * yy / h + 50 * xx / w, 60 + 100 * xx / w,
                   200 - 120 * yy / h], axis=-1)[..., :c]
  return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _timm_op(name, image, m, sign):
  """timm's op `name` at level `m` with the given sign, run in PIL."""
  img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  level = m / 10
  factor = level * 1.8 + 0.1
  factor_inc = max(0.1, 1.0 + sign * level * 0.9)
  w, h = img.size
  geo = dict(resample=Image.BILINEAR,
             fillcolor=FILL if image.shape[-1] == 3 else FILL[0])

  def affine(data):
    return img.transform(img.size, Image.AFFINE, data, **geo)

  def solarize_add():
    add = int(level * 110)
    lut = [min(255, i + add) if i < 128 else i for i in range(256)]
    return img.point(lut * len(img.getbands()))

  def posterize(bits):
    # Older Pillow kept 0 bits (black), the magnitude-10 end of timm's
    # range; recent Pillow raises for bits=0.
    if bits == 0:
      return Image.new(img.mode, img.size, 0)
    return ImageOps.posterize(img, bits)

  ops = {
      "AutoContrast": lambda: ImageOps.autocontrast(img),
      "Equalize": lambda: ImageOps.equalize(img),
      "Invert": lambda: ImageOps.invert(img),
      "Rotate": lambda: img.rotate(sign * level * 30, **geo),
      "Posterize": lambda: posterize(int(level * 4)),
      "PosterizeIncreasing": lambda: posterize(4 - int(level * 4)),
      "Solarize": lambda: ImageOps.solarize(img, int(level * 256)),
      "SolarizeIncreasing": lambda: ImageOps.solarize(
          img, 256 - int(level * 256)),
      "SolarizeAdd": solarize_add,
      "Color": lambda: ImageEnhance.Color(img).enhance(factor),
      "ColorIncreasing": lambda: ImageEnhance.Color(img).enhance(factor_inc),
      "Contrast": lambda: ImageEnhance.Contrast(img).enhance(factor),
      "ContrastIncreasing": lambda: ImageEnhance.Contrast(img).enhance(
          factor_inc),
      "Brightness": lambda: ImageEnhance.Brightness(img).enhance(factor),
      "BrightnessIncreasing": lambda: ImageEnhance.Brightness(img).enhance(
          factor_inc),
      "Sharpness": lambda: ImageEnhance.Sharpness(img).enhance(factor),
      "SharpnessIncreasing": lambda: ImageEnhance.Sharpness(img).enhance(
          factor_inc),
      "ShearX": lambda: affine((1, sign * level * 0.3, 0, 0, 1, 0)),
      "ShearY": lambda: affine((1, 0, 0, sign * level * 0.3, 1, 0)),
      "TranslateXRel": lambda: affine((1, 0, sign * level * 0.45 * w, 0, 1, 0)),
      "TranslateYRel": lambda: affine((1, 0, 0, 0, 1, sign * level * 0.45 * h)),
  }
  return np.asarray(ops[name]()).reshape(image.shape)


@jax.jit
def _jax_ops(x, m, s):
  """Every op of ALL_OPS on x (B, H, W, C), per-example m, s: (K, B, ...)."""
  return jnp.stack([ra.apply_op(n, x, m, s) for n in ra.ALL_OPS])


def _jax_all(images):
  """{op: (len(ROWS), H, W, C) uint8}: each row of ROWS applied to `images`."""
  m, s = (jnp.array(v, jnp.float32) for v in zip(*ROWS))
  x = jnp.asarray(images, jnp.float32)
  out = np.asarray(_jax_ops(x, m, s))
  assert np.array_equal(out, np.round(out)) and out.min() >= 0
  assert out.max() <= 255 and out.shape == (len(ra.ALL_OPS),) + x.shape
  return dict(zip(ra.ALL_OPS, out.astype(np.uint8)))


@pytest.fixture(scope="module")
def rgb():
  return _image(c=3)


@pytest.fixture(scope="module")
def rgb_out(rgb):
  return _jax_all(np.repeat(rgb[None], len(ROWS), axis=0))


@pytest.fixture(scope="module")
def grey_out():
  return _jax_all(np.repeat(_image(c=1)[None], len(ROWS), axis=0))


def _assert_close(got, want, max_fraction, what):
  diff = np.abs(got.astype(int) - want.astype(int))
  assert diff.max() <= 1, f"{what}: off by {diff.max()} levels"
  assert np.mean(diff > 0) <= max_fraction, (
      f"{what}: {np.mean(diff > 0):.1%} of values differ")


# ---------------------------------------------------------------------------
# parse


def test_parse_convnext_recipe_is_the_default():
  params = ra.parse("rand-m9-mstd0.5-inc1")
  assert params == dict(num_layers=2, magnitude=9.0, magnitude_std=0.5,
                        magnitude_max=10.0, prob=0.5, increasing=True)
  defaults = {k: p.default for k, p in
              inspect.signature(ra.rand_augment).parameters.items()
              if k in params}
  assert defaults == params


@pytest.mark.parametrize("spec, expected", [
    ("rand-m9-n3-mstd0.5", dict(num_layers=3, magnitude=9.0,
                                magnitude_std=0.5, increasing=False)),
    ("rand-m7-n2-mstd0.5-inc1-p0.8", dict(magnitude=7.0, prob=0.8,
                                          increasing=True)),
    ("rand-mstd101-mmax12-m15", dict(magnitude=15.0, magnitude_std=math.inf,
                                     magnitude_max=12.0)),
    ("rand", dict(num_layers=2, magnitude=10.0, magnitude_std=0.0)),
])
def test_parse_round_trips(spec, expected):
  params = ra.parse(spec)
  assert {k: params[k] for k in expected} == expected
  assert ra.parse(ra.to_spec(**params)) == params


@pytest.mark.parametrize("spec, message", [
    ("augmix-m5", "must start with 'rand'"),
    ("rand-m9-inc0", "write 'inc1'"),
    ("rand-m9-w0", "'w' are not supported"),
    ("rand-m9-x3", "unknown section 'x3'"),
    ("rand-mfoo", "unknown section"),
    ("rand-m9-m8", "given twice"),
    ("rand-m9-p1.5", "p must be in"),
    ("rand-n2.5", "n must be an integer"),
    ("rand-m1.2.3", "not a number"),
])
def test_parse_rejects(spec, message):
  with pytest.raises(ValueError, match=message):
    ra.parse(spec)


# ---------------------------------------------------------------------------
# Single ops (JAX)


@pytest.mark.parametrize("name", ra.ALL_OPS)
def test_ops_match_pil(name, rgb, rgb_out, grey_out):
  grey = _image(c=1)
  for i, (m, s) in enumerate(ROWS):
    for image, out in ((rgb, rgb_out), (grey, grey_out)):
      want = _timm_op(name, image, m, s)
      what = f"{name} m={m} sign={s} C={image.shape[-1]}"
      if name in EXACT_VS_PIL:
        np.testing.assert_array_equal(out[name][i], want, err_msg=what)
      else:
        _assert_close(out[name][i], want, 0.05, what)


@pytest.mark.parametrize("name", ra.OPS)
def test_each_op_changes_the_image(name, rgb, rgb_out):
  for i in (0, 1):  # magnitude 9, both signs
    changed = np.mean(rgb_out[name][i] != rgb)
    assert changed > 0.3, f"{name} sign={ROWS[i][1]} changed {changed:.0%}"


@pytest.mark.parametrize("name", [n for n in ra.ALL_OPS
                                  if n not in WITHOUT_MAGNITUDE])
def test_magnitude_zero(name, rgb, rgb_out):
  out = rgb_out[name][ROWS.index((0.0, 1.0))]
  if name == "PosterizeIncreasing":  # keeps 4 bits
    np.testing.assert_array_equal(out, rgb & 0xF0)
  elif name == "Posterize":  # keeps 0 bits
    np.testing.assert_array_equal(out, 0)
  elif name == "Solarize":  # threshold 0: inverts everything
    np.testing.assert_array_equal(out, 255 - rgb)
  elif name in ("Color", "Contrast", "Brightness", "Sharpness"):
    assert not np.array_equal(out, rgb)  # factor 0.1
  else:  # factor 1, threshold 256, nothing added, no motion
    np.testing.assert_array_equal(out, rgb)


def test_tables_on_every_value():
  # Every value 0..255 (then 0..223 again) in each channel.
  ramp = (np.arange(20 * 24) % 256).reshape(20, 24, 1).repeat(3, -1)
  out = _jax_all(np.repeat(ramp[None], len(ROWS), axis=0))
  v = ramp
  # Row 0 is m=9: int(0.9 * 4) = 3, so 1 bit kept; the solarize threshold
  # is 256 - int(0.9 * 256) = 26; SolarizeAdd adds int(0.9 * 110) = 99.
  np.testing.assert_array_equal(out["Invert"][0], 255 - v)
  np.testing.assert_array_equal(_jax_all(out["Invert"])["Invert"][0], v)
  np.testing.assert_array_equal(out["PosterizeIncreasing"][0], v & 0x80)
  np.testing.assert_array_equal(out["SolarizeIncreasing"][0],
                                np.where(v < 26, v, 255 - v))
  np.testing.assert_array_equal(out["SolarizeAdd"][0],
                                np.where(v < 128, np.minimum(v + 99, 255), v))


def _histogram_cases():
  """Grey 20x24 images whose histograms hit equalize's special cases."""
  rng = np.random.default_rng(1)
  one_value = np.full((20, 24), 7)
  step_zero = np.where(np.arange(480).reshape(20, 24) < 300, 90, 50)
  few_values = rng.choice([0, 3, 10, 200, 255], (20, 24),
                          p=[.4, .1, .3, .1, .1])
  narrow = rng.integers(100, 104, (20, 24))  # AutoContrast: lo 100, hi 103
  return np.stack([one_value, step_zero, few_values, narrow])[..., None].astype(
      np.uint8)


def test_equalize_and_autocontrast_special_cases():
  images = _histogram_cases()
  out = _jax_all(images)
  for i, image in enumerate(images):
    pil = Image.fromarray(image[..., 0])
    np.testing.assert_array_equal(
        out["Equalize"][i], np.asarray(ImageOps.equalize(pil))[..., None])
    _assert_close(out["AutoContrast"][i],
                  np.asarray(ImageOps.autocontrast(pil))[..., None], 0.2,
                  f"AutoContrast case {i}")
  np.testing.assert_array_equal(out["Equalize"][:2], images[:2])  # identity
  np.testing.assert_array_equal(out["AutoContrast"][0], images[0])
  np.testing.assert_array_equal(np.unique(out["AutoContrast"][3]),
                                [0, 85, 170, 255])


def _rotated_shift(degrees, dy=4.5, dx=6.5):
  """(dy, dx) shift of a point at (dy, dx) from the centre, rotated by PIL."""
  t = math.radians(degrees)  # counter-clockwise on screen, y pointing down
  return (-dx * math.sin(t) + dy * math.cos(t) - dy,
          dx * math.cos(t) + dy * math.sin(t) - dx)


@pytest.mark.parametrize("name, sign, expected_shift", [
    # (dy, dx) of the blob's centroid in pixels; the blob's centre is pixel
    # (14, 18) of a 20x24 image, (4.5, 6.5) from the image centre.
    ("TranslateXRel", 1.0, (0.0, -0.405 * 24)),
    ("TranslateYRel", 1.0, (-0.405 * 20, 0.0)),
    ("ShearX", 1.0, (0.0, -0.27 * 14.5)),
    ("ShearX", -1.0, (0.0, 0.27 * 14.5)),
    ("ShearY", 1.0, (-0.27 * 18.5, 0.0)),
    ("Rotate", 1.0, _rotated_shift(27.0)),
    ("Rotate", -1.0, _rotated_shift(-27.0)),
])
def test_geometric_ops_move_content(name, sign, expected_shift):
  blob = np.zeros((len(ROWS), 20, 24, 3), np.float32)
  blob[:, 13:16, 17:20] = 255
  m = jnp.full((len(ROWS),), 9.0, jnp.float32)
  s = jnp.full((len(ROWS),), sign, jnp.float32)
  out = np.asarray(_jax_ops(jnp.asarray(blob), m, s))[
      ra.ALL_OPS.index(name), 0]
  content = np.where(out[..., 0] == out[..., 1], out[..., 0], 0)  # not fill
  yy, xx = np.mgrid[0:20, 0:24]

  def centroid(a):
    return np.array([(a * yy).sum(), (a * xx).sum()]) / a.sum()

  shift = centroid(content) - centroid(blob[0, ..., 0])
  np.testing.assert_allclose(shift, expected_shift, atol=0.3)


def test_apply_op_checks_arguments(rgb):
  with pytest.raises(ValueError, match="unknown op"):
    ra.apply_op("Cutout", jnp.asarray(rgb[None]), 9.0)
  with pytest.raises(ValueError, match="C in"):
    ra.apply_op("Invert", jnp.zeros((1, 4, 4, 2)), 9.0)


# ---------------------------------------------------------------------------
# rand_augment (JAX)


@functools.partial(jax.jit, static_argnames="names")
def _route(x, op, m, s, names):
  return ra._apply(names, op, x, m, s, FILL)


def test_each_example_gets_its_own_op(rgb, rgb_out):
  # One call routes example i to OPS[i] (the last example to none), as
  # rand_augment does; each must equal apply_op of that op alone.
  n = len(ra.OPS)
  x = jnp.asarray(np.repeat(rgb[None], n + 1, axis=0), jnp.float32)
  op = jnp.arange(n + 1).at[n].set(-1)
  m = jnp.full((n + 1,), 9.0)
  s = jnp.ones((n + 1,))
  out = np.asarray(_route(x, op, m, s, names=ra.OPS))
  for i, name in enumerate(ra.OPS):
    np.testing.assert_array_equal(out[i], rgb_out[name][0], err_msg=name)
  np.testing.assert_array_equal(out[n], rgb)


@jax.jit
def _rand_augment(key, images, prob):
  return ra.rand_augment(key, images, prob=prob)


def test_rand_augment(rgb):
  batch = jnp.asarray(np.repeat(rgb[None], 16, axis=0))  # uint8
  out = np.asarray(_rand_augment(jax.random.key(0), batch, 0.5))
  again = np.asarray(_rand_augment(jax.random.key(0), batch, 0.5))
  other = np.asarray(_rand_augment(jax.random.key(1), batch, 0.5))
  assert out.dtype == np.uint8 and out.shape == batch.shape
  np.testing.assert_array_equal(out, again)
  assert not np.array_equal(out, other)
  # Identical inputs, different ops: at most a few of the 16 coincide
  # (untouched with probability 1/4 each, or both ops the same).
  distinct = {o.tobytes() for o in out}
  assert len(distinct) >= 8
  unchanged = sum(np.array_equal(o, rgb) for o in out)
  assert 0 < unchanged < 12
  still = np.asarray(_rand_augment(jax.random.key(2), batch, 0.0))
  np.testing.assert_array_equal(still, batch)


def test_sampling_is_timms():
  n = 30_000
  op, m, s = ra._sample_layer(jax.random.key(0), n, 15, 9.0, 0.5, 10.0, 1.0)
  counts = np.bincount(np.asarray(op), minlength=15)
  assert counts.sum() == n  # prob 1: always applied
  # Uniform: each count is Binomial(n, 1/15), sd ~ 43.
  np.testing.assert_allclose(counts, n / 15, atol=200)
  m = np.asarray(m)
  assert m.min() >= 0 and m.max() <= 10
  assert abs(m.mean() - 9.0) < 0.02 and abs(m.std() - 0.5) < 0.02
  assert abs(np.mean(np.asarray(s) == 1) - 0.5) < 0.02
  op, m, _ = ra._sample_layer(jax.random.key(1), n, 15, 9.0, 0.5, 10.0, 0.5)
  assert abs(np.mean(np.asarray(op) >= 0) - 0.5) < 0.02
  _, m, _ = ra._sample_layer(jax.random.key(2), n, 15, 9.0, math.inf, 10.0,
                             0.5)
  m = np.asarray(m)  # mstd > 100 in the spec: uniform in [0, m]
  assert m.min() >= 0 and m.max() <= 9 and abs(m.mean() - 4.5) < 0.1
