"""Tests for input_pipeline/datasets.py (offline; TFDS through mock_data)."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from input_pipeline import datasets
from input_pipeline import DatasetError
from input_pipeline import load_dataset


@pytest.fixture(scope="module")
def digits():
  return load_dataset("digits")


def test_import_does_not_import_tensorflow():
  code = ("import sys, input_pipeline; "
          "bad = [m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules]; "
          "assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True)


# digits ---------------------------------------------------------------------


def test_digits_shapes_and_range(digits):
  assert digits.train_images.shape == (1347, 16, 16, 1)
  assert digits.test_images.shape == (450, 16, 16, 1)
  assert digits.image_shape == (16, 16, 1)
  assert digits.train_images.dtype == np.uint8
  assert digits.train_labels.dtype == np.int32
  assert digits.num_classes == 10
  assert digits.flip is False
  # 0..16 was scaled to 0..255: background is 0 and full ink reaches 255.
  assert digits.train_images.min() == 0 and digits.train_images.max() == 255


def test_digits_split_is_stratified(digits):
  train = np.bincount(digits.train_labels, minlength=10) / 1347
  test = np.bincount(digits.test_labels, minlength=10) / 450
  np.testing.assert_allclose(train, test, atol=0.01)


def test_digits_split_is_fixed(digits):
  again = load_dataset("digits")
  np.testing.assert_array_equal(again.train_images, digits.train_images)
  np.testing.assert_array_equal(again.test_labels, digits.test_labels)


def test_digits_are_scikit_learns_images_and_split(digits):
  """Read without importing scikit-learn, the digits and their split are still exactly
  ``load_digits`` and ``train_test_split(test_size=0.25, stratify, random_state=0)``."""
  sk_datasets = pytest.importorskip("sklearn.datasets")
  model_selection = pytest.importorskip("sklearn.model_selection")
  source = sk_datasets.load_digits()
  images = datasets._to_uint8(datasets._resize(source.images[..., None] * (255 / 16), 16))
  x_train, x_test, y_train, y_test = model_selection.train_test_split(
      images, source.target, test_size=0.25, stratify=source.target, random_state=0)
  np.testing.assert_array_equal(digits.train_images, x_train)
  np.testing.assert_array_equal(digits.test_images, x_test)
  np.testing.assert_array_equal(digits.train_labels, y_train)
  np.testing.assert_array_equal(digits.test_labels, y_test)


def test_digits_without_scikit_learn_is_one_error(monkeypatch):
  import importlib.util  # pylint: disable=g-import-not-at-top
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "sklearn" else find_spec(name, *a))
  with pytest.raises(DatasetError, match=r"digits.csv.gz\), and it was not found; "
                                         r"pip install scikit-learn"):
    load_dataset("digits")


@pytest.mark.parametrize("counts,test_size,seed", [
    ((7, 7, 7, 3), 0.25, 0),    # tied remainders: the draws break the ties
    ((50, 2, 9, 23, 23), 0.3, 5),
    ((4, 4, 4, 4, 4, 4), 0.5, 11),
    ((12, 30, 2), 0.1, 3),
])
def test_stratified_split_is_scikit_learns(counts, test_size, seed):
  model_selection = pytest.importorskip("sklearn.model_selection")
  labels = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)) * 3,
                                                             counts))
  train, test = datasets._stratified_split(labels, test_size=test_size, seed=seed)
  expected = model_selection.train_test_split(np.arange(len(labels)), test_size=test_size,
                                              stratify=labels, random_state=seed)
  np.testing.assert_array_equal(train, expected[0])
  np.testing.assert_array_equal(test, expected[1])


def test_digits_image_size_resizes_from_source():
  ds = load_dataset("digits", image_size=12, pad=3)
  assert ds.train_images.shape == (1347, 18, 18, 1)
  assert (ds.train_images[:, :3] == 0).all() and (ds.train_images[:, -3:] == 0).all()


# npz ------------------------------------------------------------------------


def _write_npz(path, **overrides):
  rng = np.random.default_rng(0)
  arrays = {
      "x_train": rng.integers(0, 256, (12, 5, 6, 1), dtype=np.uint8),
      "y_train": (np.arange(12) % 5).astype(np.uint8),
      "x_test": rng.integers(0, 256, (4, 5, 6, 1), dtype=np.uint8),
      "y_test": np.array([0, 1, 4, 2], np.uint8),
  }
  arrays.update(overrides)
  arrays = {k: v for k, v in arrays.items() if v is not None}
  np.savez_compressed(path, **arrays)
  return arrays


def test_npz_round_trip(tmp_path):
  arrays = _write_npz(tmp_path / "tiny.npz")
  ds = load_dataset(f"npz:{tmp_path / 'tiny.npz'}")
  np.testing.assert_array_equal(ds.train_images, arrays["x_train"])
  np.testing.assert_array_equal(ds.test_images, arrays["x_test"])
  np.testing.assert_array_equal(ds.train_labels, arrays["y_train"])
  assert ds.train_labels.dtype == np.int32
  assert ds.num_classes == 5
  assert ds.flip is False


def test_npz_without_channel_axis(tmp_path):
  x = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  _write_npz(tmp_path / "gray.npz", x_train=x, y_train=np.array([0, 1], np.uint8),
             x_test=x, y_test=np.array([1, 0], np.uint8))
  ds = load_dataset(f"npz:{tmp_path / 'gray.npz'}")
  assert ds.train_images.shape == (2, 3, 4, 1)
  np.testing.assert_array_equal(ds.train_images[..., 0], x)


def test_npz_flip_comes_from_file_stem(tmp_path):
  _write_npz(tmp_path / "fashion_mnist.npz")
  _write_npz(tmp_path / "usps.npz")
  assert load_dataset(f"npz:{tmp_path / 'fashion_mnist.npz'}").flip is True
  assert load_dataset(f"npz:{tmp_path / 'usps.npz'}").flip is False


def test_npz_missing_file_names_path(tmp_path):
  path = tmp_path / "nowhere" / "missing.npz"
  with pytest.raises(DatasetError, match="missing.npz") as e:
    load_dataset(f"npz:{path}")
  assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_npz_missing_key(tmp_path):
  _write_npz(tmp_path / "bad.npz", y_test=None)
  with pytest.raises(DatasetError, match="y_test"):
    load_dataset(f"npz:{tmp_path / 'bad.npz'}")


@pytest.mark.parametrize("arrays,message", [
    (dict(y_test=np.array([0, 1, 5, 2], np.uint8)), "y_test .* label\\(s\\) 5 that no training"),
    (dict(y_train=np.array([0, 200] * 6, np.uint8)), "no example of 199 class"),
    (dict(x_test=np.zeros((0, 5, 6, 1), np.uint8), y_test=np.zeros(0, np.uint8)),
     "empty test split"),
])
def test_npz_labels_must_be_the_training_classes(tmp_path, arrays, message):
  """Labels only in the test split, gaps in the class ids (a 201-class model for 2
  classes) and an empty split are one-line errors, not a wrong model or a nan%."""
  _write_npz(tmp_path / "labels.npz", **arrays)
  with pytest.raises(DatasetError, match=message) as e:
    load_dataset(f"npz:{tmp_path / 'labels.npz'}")
  assert "\n" not in str(e.value)


def test_npz_wrong_dims(tmp_path):
  _write_npz(tmp_path / "flat.npz", x_train=np.zeros((12, 30), np.uint8))
  with pytest.raises(DatasetError, match=r"x_train .*\(12, 30\)"):
    load_dataset(f"npz:{tmp_path / 'flat.npz'}")


# mnist16 --------------------------------------------------------------------


def test_mnist16_shrink_is_torch_bilinear_without_antialiasing():
  """Output pixel o samples input 1.75 o + 0.375 (half-pixel centres, 28 -> 16) from its
  two neighbours, as F.interpolate(mode='bilinear'): worked out by hand here."""
  ramp = np.broadcast_to((9.0 * np.arange(28))[None, :, None, None], (1, 28, 28, 1))
  out = datasets._resize(ramp, 16, antialias=False)  # pylint: disable=protected-access
  np.testing.assert_allclose(out[0, :, 0, 0], 9.0 * (1.75 * np.arange(16) + 0.375),
                             rtol=1e-6)
  impulse = np.zeros((1, 28, 28, 1))
  impulse[0, 1, 1] = 255.0
  out = datasets._resize(impulse, 16, antialias=False)  # pylint: disable=protected-access
  # Only output (0, 0) reaches input 1 (source 0.375: weights 0.625 and 0.375 per axis).
  want = np.zeros((1, 16, 16, 1))
  want[0, 0, 0] = 255.0 * 0.375 * 0.375
  np.testing.assert_allclose(out, want, atol=1e-4)


def test_mnist16_shrink_matches_torch():
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype(np.float32)
  ours = datasets._resize(x, 16, antialias=False) / 127.5 - 1  # pylint: disable=protected-access
  ref = torch.nn.functional.interpolate(
      torch.from_numpy(x).permute(0, 3, 1, 2) / 127.5 - 1.0, (16, 16), mode="bilinear")
  np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), atol=1e-5)


def test_mnist16_draw_is_the_documented_one():
  train, test = datasets.mnist16_indices(60000, 10000)
  rng = np.random.RandomState(1337)
  np.testing.assert_array_equal(train, rng.permutation(60000)[:7291])
  np.testing.assert_array_equal(test, rng.permutation(10000)[:2007])
  assert len(set(train)) == 7291 and len(set(test)) == 2007  # no digit twice
  again = datasets.mnist16_indices(60000, 10000)
  np.testing.assert_array_equal(again[0], train)
  np.testing.assert_array_equal(again[1], test)
  with pytest.raises(DatasetError, match="7291 training"):
    datasets.mnist16_indices(5000, 10000)


def test_mnist16_from_a_fake_mnist(tmp_path):
  """Each fake digit is a flat image of a value that names it: the loaded digits are
  the draw's, in its order, train from train and test from test, at 16x16."""
  n_train, n_test = 7300, 2010
  flat = lambda n, off: np.broadcast_to(((np.arange(n) + off) % 251).astype(np.uint8)
                                        [:, None, None, None], (n, 28, 28, 1))
  np.savez_compressed(tmp_path / "mnist.npz", x_train=flat(n_train, 0),
                      y_train=(np.arange(n_train) % 10).astype(np.uint8),
                      x_test=flat(n_test, 100), y_test=(np.arange(n_test) % 10).astype(np.uint8))
  ds = load_dataset(f"mnist16:{tmp_path / 'mnist.npz'}")
  train, test = datasets.mnist16_indices(n_train, n_test)
  assert ds.train_images.shape == (7291, 16, 16, 1) and ds.test_images.shape == (2007, 16, 16, 1)
  np.testing.assert_array_equal(ds.train_images[:, 5, 7, 0], train % 251)
  np.testing.assert_array_equal(ds.test_images[:, 5, 7, 0], (test + 100) % 251)
  np.testing.assert_array_equal(ds.train_labels, train % 10)
  np.testing.assert_array_equal(ds.test_labels, test % 10)
  assert ds.flip is False and ds.num_classes == 10


def test_mnist16_without_mnist_is_one_line(tmp_path):
  with pytest.raises(DatasetError, match="MNIST-16x16 is drawn from MNIST") as e:
    load_dataset(f"mnist16:{tmp_path / 'mnist.npz'}")
  assert "mnist16:<path to mnist.npz>" in str(e.value) and "\n" not in str(e.value)


def test_mnist16_from_the_shared_mnist():
  from configs import common  # pylint: disable=g-import-not-at-top
  path = common.shared_file("mnist")
  if not os.path.isfile(path):
    pytest.skip(f"no MNIST at {path} (shared/data is not here)")
  ds = load_dataset(f"mnist16:{path}")
  with np.load(path) as f:
    y_train, y_test, x_train = f["y_train"], f["y_test"], f["x_train"]
  train, test = datasets.mnist16_indices(len(y_train), len(y_test))
  np.testing.assert_array_equal(ds.train_labels, y_train[train])
  np.testing.assert_array_equal(ds.test_labels, y_test[test])
  assert np.bincount(ds.train_labels).min() > 500  # every digit, well represented
  shrunk = datasets._resize(x_train[train[:3]], 16, antialias=False)  # pylint: disable=protected-access
  np.testing.assert_array_equal(ds.train_images[:3], np.rint(shrunk))


# synthetic ------------------------------------------------------------------


def test_synthetic_shapes_and_determinism():
  cfg = {"shape": (6, 5, 2), "num_classes": 4, "num_train": 40, "num_test": 12}
  a = load_dataset("synthetic", synthetic=cfg)
  b = load_dataset("synthetic", synthetic=cfg)
  c = load_dataset("synthetic", synthetic={**cfg, "seed": 1})
  assert a.train_images.shape == (40, 6, 5, 2) and a.test_images.shape == (12, 6, 5, 2)
  assert a.num_classes == 4 and a.train_labels.max() < 4
  np.testing.assert_array_equal(a.train_images, b.train_images)
  np.testing.assert_array_equal(a.test_labels, b.test_labels)
  assert not np.array_equal(a.train_images, c.train_images)


def test_grey_to_rgb_repeats_the_channel_and_its_statistics():
  cfg = {"shape": (6, 5, 1), "num_classes": 4, "num_train": 40, "num_test": 12}
  grey = load_dataset("synthetic", synthetic=cfg)
  rgb = datasets.grey_to_rgb(grey)
  assert rgb.train_images.shape == (40, 6, 5, 3) and rgb.test_images.shape == (12, 6, 5, 3)
  for c in range(3):
    np.testing.assert_array_equal(rgb.train_images[..., c], grey.train_images[..., 0])
    np.testing.assert_array_equal(rgb.test_images[..., c], grey.test_images[..., 0])
  assert rgb.mean == tuple(grey.mean) * 3 and rgb.std == tuple(grey.std) * 3
  np.testing.assert_array_equal(rgb.train_labels, grey.train_labels)
  with pytest.raises(DatasetError, match="has 3"):
    datasets.grey_to_rgb(rgb)


def test_synthetic_is_learnable():
  ds = load_dataset("synthetic", synthetic={"shape": (8, 8, 3), "num_train": 500,
                                            "num_test": 200})
  x_train = ds.train_images.reshape(500, -1).astype(np.float32)
  x_test = ds.test_images.reshape(200, -1).astype(np.float32)
  centroids = np.stack([x_train[ds.train_labels == k].mean(0) for k in range(10)])
  dist = ((x_test[:, None] - centroids[None]) ** 2).sum(-1)
  accuracy = (dist.argmin(1) == ds.test_labels).mean()
  assert accuracy > 0.5  # Chance is 0.1.


def test_synthetic_rejects_unknown_setting():
  with pytest.raises(DatasetError, match="num_clases"):
    load_dataset("synthetic", synthetic={"num_clases": 3})


# resize, pad, statistics ----------------------------------------------------


def test_resize_and_pad_change_shapes():
  cfg = {"shape": (8, 8, 3), "num_train": 6, "num_test": 3}
  ds = load_dataset("synthetic", synthetic=cfg, image_size=12, pad=2)
  assert ds.train_images.shape == (6, 16, 16, 3) and ds.test_images.shape == (3, 16, 16, 3)
  assert ds.train_images.dtype == np.uint8
  border = np.ones((16, 16), bool)
  border[2:-2, 2:-2] = False
  assert (ds.train_images[:, border] == 0).all()
  assert ds.train_images[:, 2:-2, 2:-2].any()


def test_host_resize_matches_jax_image_resize():
  x = np.random.default_rng(0).uniform(0, 255, (2, 8, 10, 3)).astype(np.float32)
  for size in (16, 5):  # Up and down (antialiased).
    ours = datasets._resize(x, size)
    ref = jax.image.resize(x, (2, size, size, 3), "linear", antialias=True)
    np.testing.assert_allclose(ours, np.asarray(ref), atol=1e-3)


def test_mean_std_match_numpy_on_final_arrays():
  ds = load_dataset("synthetic", synthetic={"shape": (7, 7, 3), "num_train": 50},
                    pad=1)
  x = ds.train_images.astype(np.float64) / 255.0
  np.testing.assert_allclose(ds.mean, x.mean(axis=(0, 1, 2)), rtol=1e-10)
  np.testing.assert_allclose(ds.std, x.std(axis=(0, 1, 2)), rtol=1e-10)


# TFDS -----------------------------------------------------------------------


@pytest.fixture
def tfds_mock():
  """TFDS with random examples, offline: USE_CODE needs no metadata files."""
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=7, policy=tfds.testing.MockPolicy.USE_CODE):
    yield


@pytest.mark.parametrize("name,shape,flip", [("mnist", (28, 28, 1), False),
                                             ("tfds:cifar10", (32, 32, 3), True)])
def test_tfds_mock(tfds_mock, name, shape, flip):
  ds = load_dataset(name)
  assert ds.train_images.shape == (7, *shape) and ds.test_images.shape == (7, *shape)
  assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int32
  assert ds.num_classes == 10 and ds.flip is flip
  assert ds.train_labels.min() >= 0 and ds.train_labels.max() < 10
  assert ds.train_images.std() > 0  # Real (random) pixels, not an empty buffer.


def test_tfds_mock_pad(tfds_mock):
  assert load_dataset("mnist", pad=2).image_shape == (32, 32, 1)


def test_tfds_variable_size_needs_image_size(tfds_mock):
  with pytest.raises(DatasetError, match="image_size"):
    load_dataset("imagenette")
  ds = load_dataset("imagenette", image_size=20)
  assert ds.train_images.shape == (7, 20, 20, 3) and ds.test_images.shape == (7, 20, 20, 3)


def test_tfds_too_large_for_memory(tfds_mock, monkeypatch):
  monkeypatch.setattr(datasets, "MAX_IN_MEMORY_BYTES", 1000)
  with pytest.raises(DatasetError, match="too large to hold in memory"):
    load_dataset("mnist")


def test_tfds_unknown_name_suggests():
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(DatasetError, match=r"unknown dataset 'cifar1O'.*cifar10") as e:
    load_dataset("cifar1O")
  assert "npz:<path>" in str(e.value)


def test_tfds_missing_data_dir(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  missing = tmp_path / "no_such_dir"
  with pytest.raises(DatasetError, match=str(missing)):
    load_dataset("mnist", data_dir=str(missing))


def test_tfds_not_prepared_without_download(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(DatasetError) as e:
    load_dataset("cifar10", data_dir=str(tmp_path), download=False)
  message = str(e.value)
  assert "'cifar10'" in message and str(tmp_path) in message
  assert "tools/prepare_data.py cifar10" in message
  assert "\n" not in message
