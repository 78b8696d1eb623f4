"""Host loaders: every dataset becomes the same uint8 NHWC numpy arrays.

    ds = load_dataset("digits")                      # scikit-learn's, offline, 16x16x1
    ds = load_dataset("npz:../shared/data/usps/usps.npz")
    ds = load_dataset("mnist", pad=2)                # TFDS, 28x28 -> 32x32 for LeNet-5
    ds = load_dataset("mnist16:../shared/data/mnist/mnist.npz")  # see _load_mnist16
    ds = load_dataset("synthetic", synthetic={"shape": (8, 8, 3)})

The trainer puts the arrays on the accelerator once and slices batches inside
the compiled step (see ``device.py``), so everything here runs once per run and
favours clarity over speed.

TensorFlow is imported only inside ``_import_tf``: the accelerator machines
have no TensorFlow, and ``import input_pipeline`` must work there.

Resizing (``image_size``) on the host uses antialiased bilinear interpolation
with half-pixel centres (a triangle filter widened by the scale factor when
shrinking, as PIL's BILINEAR and ``jax.image.resize(..., "linear")`` do).
TFDS datasets with variable-size images (imagenet2012, imagenette) are resized
inside tf.data instead: shorter side to ``image_size`` (antialiased bilinear),
then a central ``image_size`` square crop, which keeps the aspect ratio.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import io
import os
import sys
import re
from typing import Any, Mapping

import numpy as np

# Holding train+test as uint8 above this needs the streaming host pipeline
# (input_pipeline/host.py); a module constant so tests can lower it.
MAX_IN_MEMORY_BYTES = 8 * 2**30

# Work in chunks of about this many bytes so host-side passes stay cheap.
_CHUNK_BYTES = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class _Known:
  """Per-dataset facts that cannot be read from the data itself.

  Attributes:
    flip: a horizontal flip keeps the label (digits and characters change
      meaning or become unnatural when mirrored; objects and clothes do not).
    eval_split: the TFDS split used as the test set when the split list is not
      known yet (it is read from the prepared dataset otherwise).
  """
  flip: bool
  eval_split: str = "test"


# One table for every per-dataset choice. Names not listed get flip=False: a
# flip that changes labels silently hurts, a missing one only costs accuracy.
# npz files are looked up by their file stem (usps.npz -> "usps").
KNOWN_DATASETS: dict[str, _Known] = {
    "digits": _Known(flip=False),
    "synthetic": _Known(flip=False),  # Class templates are not mirror-symmetric.
    "mnist": _Known(flip=False),
    "mnist16": _Known(flip=False),
    "usps": _Known(flip=False),
    "emnist": _Known(flip=False),
    "kmnist": _Known(flip=False),
    "svhn_cropped": _Known(flip=False),
    "fashion_mnist": _Known(flip=True),
    "cifar10": _Known(flip=True),
    "cifar100": _Known(flip=True),
    "stl10": _Known(flip=True),
    "imagenette": _Known(flip=True, eval_split="validation"),
    "imagenet2012": _Known(flip=True, eval_split="validation"),
}

_DEFAULT = _Known(flip=False)

_SYNTHETIC_DEFAULTS = {
    "shape": (32, 32, 3),
    "num_classes": 10,
    "num_train": 1024,
    "num_test": 256,
    "seed": 0,
}


class DatasetError(ValueError):
  """One-line, user-facing: names the problem and the fix."""


@dataclasses.dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous.
class ArrayDataset:
  """A whole dataset on the host, as the trainer consumes it.

  Attributes:
    name: the name it was loaded by.
    train_images: uint8 (N, H, W, C).
    train_labels: int32 (N,).
    test_images: uint8 (M, H, W, C).
    test_labels: int32 (M,).
    num_classes: number of classes; labels are in [0, num_classes).
    mean: per-channel mean of the final train images, in [0, 1] units.
    std: per-channel standard deviation, same units.
    flip: whether a horizontal flip preserves the label (``KNOWN_DATASETS``).
  """
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  flip: bool

  def __post_init__(self):
    for split in ("train", "test"):
      x = getattr(self, f"{split}_images")
      y = getattr(self, f"{split}_labels")
      if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"{split}_images must be uint8 NHWC, got {x.dtype} {x.shape}")
      if y.dtype != np.int32 or y.shape != x.shape[:1]:
        raise ValueError(
            f"{split}_labels must be int32 ({x.shape[0]},), got {y.dtype} {y.shape}")
    if self.train_images.shape[1:] != self.test_images.shape[1:]:
      raise ValueError(f"train and test images differ in shape: "
                       f"{self.train_images.shape[1:]} vs {self.test_images.shape[1:]}")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of every image."""
    return tuple(self.train_images.shape[1:])

  def __repr__(self) -> str:
    return (f"ArrayDataset({self.name!r}, train={self.train_images.shape}, "
            f"test={self.test_images.shape}, num_classes={self.num_classes}, "
            f"flip={self.flip})")


def load_dataset(name: str, *, data_dir: str | None = None,
                 image_size: int | None = None, pad: int = 0,
                 synthetic: Mapping[str, Any] | None = None,
                 download: bool = True) -> ArrayDataset:
  """Loads a dataset by name into host memory.

  Args:
    name: ``digits``, ``synthetic``, ``npz:<path>``, ``mnist16:<path to mnist.npz>``
      (``_load_mnist16``), or a TFDS name (optionally ``tfds:``-prefixed, with
      ``/config`` or ``:version`` as TFDS accepts).
    data_dir: TFDS data directory (default: TFDS's own default).
    image_size: final height and width before padding; None keeps the native
      size (required for TFDS datasets whose images vary in size).
    pad: zero pixels added on each side after resizing (MNIST 28 -> 32: pad=2).
    synthetic: settings for ``synthetic``: shape, num_classes, num_train,
      num_test, seed.
    download: let TFDS download and prepare a dataset that is not there yet.

  Returns:
    The dataset, with mean and std computed from its final train images.

  Raises:
    DatasetError: with a one-line message that names the problem and the fix.
  """
  if image_size is not None and image_size < 1:
    raise DatasetError(f"image_size must be a positive integer, got {image_size}")
  if pad < 0:
    raise DatasetError(f"pad must be >= 0, got {pad}")
  if synthetic is not None and name != "synthetic":
    raise DatasetError(f"synthetic settings were given for dataset {name!r}; "
                       "they apply only to name='synthetic'")

  if name == "digits":
    raw = _load_digits(image_size or 16)
    known_key = "digits"
  elif name == "synthetic":
    raw = _load_synthetic(synthetic or {})
    known_key = "synthetic"
  elif name.startswith("npz:"):
    path = name[len("npz:"):]
    raw = _load_npz(path)
    known_key = os.path.splitext(os.path.basename(path))[0]
  elif name.startswith(MNIST16_PREFIX):
    raw = _load_mnist16(name[len(MNIST16_PREFIX):])
    known_key = "mnist16"
  else:
    tfds_name = name[len("tfds:"):] if name.startswith("tfds:") else name
    known_key = _tfds_base_name(tfds_name)
    raw = _load_tfds(tfds_name, data_dir=data_dir, image_size=image_size,
                     pad=pad, download=download,
                     eval_split=KNOWN_DATASETS.get(known_key, _DEFAULT).eval_split)
  x_train, y_train, x_test, y_test, num_classes = raw

  if image_size is not None and x_train.shape[1:3] != (image_size, image_size):
    x_train = _resize_uint8(x_train, image_size)
    x_test = _resize_uint8(x_test, image_size)
  if pad:
    widths = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    x_train = np.pad(x_train, widths)
    x_test = np.pad(x_test, widths)

  mean, std = _channel_mean_std(x_train)
  known = KNOWN_DATASETS.get(known_key, _DEFAULT)
  return ArrayDataset(
      name=name, train_images=x_train, train_labels=y_train.astype(np.int32),
      test_images=x_test, test_labels=y_test.astype(np.int32),
      num_classes=int(num_classes), mean=mean, std=std, flip=known.flip)


def local_file(name: str) -> str | None:
  """The file a dataset name reads (``npz:<path>``, ``mnist16:<path>``); None for the
  others (digits, synthetic, TFDS), so callers can check it before a run."""
  for prefix in ("npz:", MNIST16_PREFIX):
    if name.startswith(prefix):
      return name[len(prefix):]
  return None


def from_tfds(name: str) -> bool:
  """Whether TFDS loads the dataset ``name`` (not digits, synthetic or a local file)."""
  return not (name in ("digits", "synthetic") or local_file(name))


def grey_to_rgb(ds: ArrayDataset) -> ArrayDataset:
  """The dataset with its one grey channel repeated as R, G and B (mean and std too)."""
  channels = ds.train_images.shape[-1]
  if channels != 1:
    raise DatasetError(f"grey_to_rgb repeats one grey channel, and {ds.name} has {channels}")
  rgb = lambda x: np.repeat(x, 3, axis=-1)
  return dataclasses.replace(ds, train_images=rgb(ds.train_images),
                             test_images=rgb(ds.test_images), mean=tuple(ds.mean) * 3,
                             std=tuple(ds.std) * 3)


def train_subset(ds: ArrayDataset, num_examples: int, seed: int = 0) -> ArrayDataset:
  """The dataset with a fixed, class-balanced subset of ``num_examples`` train images.

  Classes take turns (in a seeded random order within each class) until
  ``num_examples`` are drawn, so 320 USPS digits are 32 of each class, as in LeCun's
  1989 generalisation study. The subset depends only on ``seed``, not on the run's
  seed, so every run of a study sees the same images. The test split is unchanged;
  mean and std are recomputed from the subset.
  """
  n = len(ds.train_labels)
  if not 0 < num_examples <= n:
    raise DatasetError(f"num_train_examples={num_examples} must be in 1..{n}, the size "
                       f"of {ds.name}'s training split (0 means all)")
  if num_examples == n:
    return ds
  rng = np.random.default_rng(seed)
  per_class = [rng.permutation(np.flatnonzero(ds.train_labels == c))
               for c in range(ds.num_classes)]
  # Round-robin over classes: rank r of every class comes before rank r + 1.
  order = sorted((rank, rng.random(), idx) for idxs in per_class
                 for rank, idx in enumerate(idxs))
  keep = np.sort(np.array([idx for _, _, idx in order[:num_examples]]))
  images = ds.train_images[keep]
  mean, std = _channel_mean_std(images)
  return dataclasses.replace(ds, train_images=images, train_labels=ds.train_labels[keep],
                             mean=mean, std=std)


# ----------------------------------------------------------------------------
# Sources. Each returns (x_train, y_train, x_test, y_test, num_classes) with
# uint8 NHWC images.


def _load_digits(size: int):
  """scikit-learn's 8x8 digits (1,797 images, offline), resized to size x size, with the
  split of ``sklearn.model_selection.train_test_split(images, labels, test_size=0.25,
  stratify=labels, random_state=0)``.

  The file is read where scikit-learn installed it, without importing scikit-learn
  (``sklearn.datasets.load_digits`` reads the same file the same way): importing it
  took 0.75-1.1 s, a third of a short run's wall time on the 2-core machine, and every
  train.py process on the digits paid it. ``_stratified_split`` is its split, spelled
  out; tests/test_datasets.py checks both against scikit-learn itself.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.find_spec("sklearn")  # finds the package; does not import it
  path = (os.path.join(spec.submodule_search_locations[0], "datasets", "data",
                       "digits.csv.gz") if spec and spec.submodule_search_locations
          else None)
  if path is None or not os.path.isfile(path):
    raise DatasetError("the digits dataset is the file scikit-learn ships "
                       "(sklearn/datasets/data/digits.csv.gz), and it was not found; "
                       "pip install scikit-learn (requirements.txt)")
  data = np.loadtxt(path, delimiter=",")  # 64 pixels in 0..16, then the label
  images = data[:, :-1].reshape(-1, 8, 8, 1) * (255.0 / 16.0)  # 0..16 -> 0..255.
  labels = data[:, -1].astype(np.int32)
  # Resize the float images once, straight to the target size, so there is a
  # single rounding to uint8.
  images = _to_uint8(_resize(images, size))
  # A fixed stratified split: scikit-learn ships no train/test partition.
  train, test = _stratified_split(labels, test_size=0.25, seed=0)
  return images[train], labels[train], images[test], labels[test], 10


def _stratified_split(labels: np.ndarray, test_size: float, seed: int):
  """The (train, test) indices of ``train_test_split(..., test_size=test_size,
  stratify=labels, random_state=seed)``: scikit-learn 1.x's StratifiedShuffleSplit,
  with its draws from ``np.random.RandomState(seed)`` in its order."""
  n = len(labels)
  n_test = int(np.ceil(test_size * n))
  n_train = n - n_test
  _, y = np.unique(labels, return_inverse=True)
  counts = np.bincount(y)
  by_class = np.split(np.argsort(y, kind="mergesort"), np.cumsum(counts)[:-1])
  rng = np.random.RandomState(seed)

  def approximate_mode(class_counts, draws):
    """Per class, its share of ``draws``, rounded down; the leftover goes to the largest
    remainders, ties broken at random (sklearn.utils.extmath._approximate_mode)."""
    continuous = class_counts / class_counts.sum() * draws
    floored = np.floor(continuous)
    need = int(draws - floored.sum())
    if need > 0:
      remainder = continuous - floored
      for value in np.sort(np.unique(remainder))[::-1]:
        (tied,) = np.where(remainder == value)
        take = min(len(tied), need)
        floored[rng.choice(tied, size=take, replace=False)] += 1
        need -= take
        if need == 0:
          break
    return floored.astype(int)

  n_i = approximate_mode(counts, n_train)
  t_i = approximate_mode(counts - n_i, n_test)
  train, test = [], []
  for i, members in enumerate(by_class):
    order = members.take(rng.permutation(counts[i]), mode="clip")
    train.extend(order[:n_i[i]])
    test.extend(order[n_i[i]:n_i[i] + t_i[i]])
  return rng.permutation(train), rng.permutation(test)


def _load_npz(path: str):
  """A file in shared/data's format (see shared/data/README.md)."""
  full = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(full):
    raise DatasetError(
        f"npz file not found: {path} (resolved to {full}). Pass npz:<path> to an "
        "existing file, relative to the current directory, e.g. "
        "npz:../shared/data/usps/usps.npz")
  try:
    with np.load(full) as f:
      missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
      if missing:
        raise DatasetError(f"{path} lacks key(s) {', '.join(missing)}; it has "
                           f"{', '.join(f.files) or 'none'}. Expected x_train, "
                           "y_train, x_test, y_test (shared/data/README.md)")
      arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
  except DatasetError:
    raise
  except Exception as e:  # Corrupt or not an npz at all.
    raise DatasetError(f"cannot read {path} as .npz: {type(e).__name__}: "
                       f"{_first_line(e)}") from None

  out = []
  for split in ("train", "test"):
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.ndim == 3:
      x = x[..., None]  # Grayscale stored as (N, H, W).
    if x.ndim != 4:
      raise DatasetError(f"x_{split} in {path} has shape {x.shape}; expected "
                         "(N, H, W, C) or (N, H, W)")
    if x.dtype != np.uint8:
      raise DatasetError(f"x_{split} in {path} has dtype {x.dtype}; expected uint8 "
                         "pixels 0..255")
    if y.ndim != 1 or len(y) != len(x):
      raise DatasetError(f"y_{split} in {path} has shape {y.shape}; expected "
                         f"({len(x)},) to match x_{split}")
    if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
      raise DatasetError(f"y_{split} in {path} must hold class ids >= 0, got "
                         f"dtype {y.dtype}")
    out += [x, y.astype(np.int32)]
  x_train, y_train, x_test, y_test = out
  if x_train.shape[1:] != x_test.shape[1:]:
    raise DatasetError(f"x_train and x_test in {path} differ in image shape: "
                       f"{x_train.shape[1:]} vs {x_test.shape[1:]}")
  for split, y in (("train", y_train), ("test", y_test)):
    if not len(y):
      raise DatasetError(f"{path} has an empty {split} split (x_{split} holds no images); "
                         "it needs training and test examples")
  classes = np.unique(y_train)
  num_classes = int(classes[-1]) + 1
  if len(classes) != num_classes:
    missing = sorted(set(range(num_classes)) - set(classes.tolist()))
    raise DatasetError(f"y_train in {path} has labels up to {num_classes - 1} but no "
                       f"example of {len(missing)} class(es) ({_ids(missing)}); labels "
                       "must be the class ids 0..K-1, each with training examples")
  unseen = sorted(set(np.unique(y_test).tolist()) - set(classes.tolist()))
  if unseen:
    raise DatasetError(f"y_test in {path} has label(s) {_ids(unseen)} that no training "
                       f"example has (training labels are 0..{num_classes - 1})")
  return x_train, y_train, x_test, y_test, num_classes


# MNIST-16x16: the data of the public LeNet-1989 reproduction (karpathy/lecun1989-repro,
# prepro.py), which stands in for the 1989 paper's 7291/2007 zip-code digits.
MNIST16_PREFIX = "mnist16:"
MNIST16_SIZES = (7291, 2007)  # train, test: the paper's counts
MNIST16_SEED = 1337


def mnist16_indices(num_train: int, num_test: int) -> tuple[np.ndarray, np.ndarray]:
  """Which MNIST digits MNIST-16x16 takes: positions in MNIST's train and test splits.

  The reproduction seeds NumPy's global generator with 1337 and draws
  ``np.random.permutation(len(split))[:n]`` for each split in the iteration order of
  the set ``{'train', 'test'}``, which changes with Python's string hashing; so which
  split drew first, and hence its exact subset, cannot be recovered. We take the
  order in which train draws first, from one generator:

    rng = np.random.RandomState(1337)
    train = rng.permutation(60000)[:7291]; test = rng.permutation(10000)[:2007]

  which is exactly the reproduction's draw in its runs where 'train' came first. The
  order of the permutation is kept, as there.
  """
  n_train, n_test = MNIST16_SIZES
  if num_train < n_train or num_test < n_test:
    raise DatasetError(f"MNIST-16x16 draws {n_train} training and {n_test} test digits "
                       f"from MNIST, but the file has {num_train} and {num_test}")
  rng = np.random.RandomState(MNIST16_SEED)
  train = rng.permutation(num_train)[:n_train]
  return train, rng.permutation(num_test)[:n_test]


def _load_mnist16(path: str):
  """MNIST-16x16: 7291 training digits from MNIST's training split and 2007 test
  digits from its test split (``mnist16_indices``), shrunk from 28x28 to 16x16.

  The reproduction resizes with ``F.interpolate(x, (16, 16), mode='bilinear')`` on
  images in [-1, 1]: half-pixel centres, no antialiasing (each output pixel blends
  its 2x2 nearest inputs). We resize the 0..255 pixels the same way (the map to
  [-1, 1] is affine, so it commutes with the blend) and round to uint8, as every
  dataset here is stored; ``normalization="symmetric"`` then gives the reproduction's
  [-1, 1] inputs to within half a grey level (0.004).
  """
  full = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(full):
    raise DatasetError(f"MNIST-16x16 is drawn from MNIST, and {path} (resolved to {full}) "
                       "does not exist; pass mnist16:<path to mnist.npz> "
                       "(shared/data/mnist/mnist.npz, see shared/data/README.md)")
  x_train, y_train, x_test, y_test, num_classes = _load_npz(full)
  if x_train.shape[1:] != (28, 28, 1):
    raise DatasetError(f"MNIST-16x16 needs MNIST's 28x28x1 digits; {path} holds "
                       f"{x_train.shape[1:]} images")
  train, test = mnist16_indices(len(x_train), len(x_test))
  shrink = lambda x: _to_uint8(_resize(x, 16, antialias=False))
  return (shrink(x_train[train]), y_train[train], shrink(x_test[test]), y_test[test],
          num_classes)


def _ids(ids: list[int], most: int = 5) -> str:
  return ", ".join(map(str, ids[:most])) + (", ..." if len(ids) > most else "")


def _load_synthetic(settings: Mapping[str, Any]):
  """Random but learnable: a fixed random template per class plus noise."""
  unknown = set(settings) - set(_SYNTHETIC_DEFAULTS)
  if unknown:
    raise DatasetError(f"unknown synthetic setting(s) {sorted(unknown)}; valid: "
                       f"{', '.join(_SYNTHETIC_DEFAULTS)}")
  cfg = {**_SYNTHETIC_DEFAULTS, **settings}
  shape = tuple(int(s) for s in cfg["shape"])
  if len(shape) != 3:
    raise DatasetError(f"synthetic shape must be (H, W, C), got {cfg['shape']}")
  num_classes = int(cfg["num_classes"])
  rng = np.random.default_rng(cfg["seed"])
  templates = rng.uniform(0, 255, size=(num_classes, *shape)).astype(np.float32)

  def draw(n):
    labels = rng.integers(0, num_classes, size=n).astype(np.int32)
    # Noise std 64 against templates ~U(0, 255): classes overlap per pixel
    # but are easily told apart over the whole image.
    noise = rng.normal(0.0, 64.0, size=(n, *shape)).astype(np.float32)
    return _to_uint8(templates[labels] + noise), labels

  x_train, y_train = draw(int(cfg["num_train"]))
  x_test, y_test = draw(int(cfg["num_test"]))
  return x_train, y_train, x_test, y_test, num_classes


def _tfds_base_name(name: str) -> str:
  """'imagenette/320px-v2:1.0.0' -> 'imagenette'."""
  return re.split(r"[/:]", name, maxsplit=1)[0]


def _import_tf():
  """Imports TensorFlow and TFDS on first use, hidden from any GPU."""
  try:
    with _quiet_native_stderr():  # TF's start-up chatter (oneDNN, absl) buries our lines
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DatasetError(
        f"TFDS datasets need tensorflow and tensorflow-datasets ({e}); "
        "pip install tensorflow-cpu tensorflow-datasets, or use digits, "
        "synthetic or npz:<path>") from None
  try:
    # TF must not grab accelerator memory that JAX needs.
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:
    pass  # Devices already initialised by an earlier import; nothing to do.
  return tf, tfds


@contextlib.contextmanager
def _quiet_native_stderr():
  """Sends file descriptor 2 to /dev/null for the block: TensorFlow's and TFDS's C++ and
  absl log lines (oneDNN notices, cloud-credential probes, "no dataset_info.json") are
  written there directly, and would come before the one line a bad input should get.
  Set TFDS_VERBOSE=1 to see them."""
  if os.environ.get("TFDS_VERBOSE"):
    yield
    return
  sys.stderr.flush()
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def check_tfds_ready(name: str, *, data_dir: str | None, download: bool) -> None:
  """A sweep's pre-flight: raises the DatasetError train.py would give for ``name``
  (unknown, missing data_dir, not prepared with download=False, a manual download
  whose files are missing), without downloading anything. A dataset TFDS can still
  download passes."""
  _open_tfds_builder(name[len("tfds:"):] if name.startswith("tfds:") else name,
                     data_dir=data_dir, download=download, prepare=False)


def _open_tfds_builder(name: str, *, data_dir: str | None, download: bool,
                       prepare: bool = True):
  """The prepared TFDS builder of ``name``, or a DatasetError that says how to get it.

  Shared by ``_load_tfds`` (in memory) and ``host.open_builder`` (streaming), so both
  give the same messages for an unknown name, a missing data_dir, or a dataset that
  is not prepared.
  """
  _, tfds = _import_tf()
  base = _tfds_base_name(name)
  with _quiet_native_stderr():
    builders = tfds.list_builders()
  if base not in builders:
    close = difflib.get_close_matches(base, ["digits", "synthetic", *builders], n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise DatasetError(
        f"unknown dataset {name!r}.{hint} Use digits, synthetic, npz:<path>, or a "
        "TFDS name such as mnist, fashion_mnist, cifar10, cifar100, imagenette")
  if data_dir is not None and not os.path.isdir(data_dir):
    raise DatasetError(
        f"TFDS data_dir {data_dir} does not exist; create it (TFDS downloads "
        "into it) or pass the directory that holds prepared datasets")
  try:
    with _quiet_native_stderr():
      builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # Bad config or version.
    raise DatasetError(f"TFDS cannot build {name!r}: {_first_line(e)}") from None

  with _quiet_native_stderr():
    prepared = builder.is_prepared()
  if not prepared:
    cause = "download=False"
    manual_dir = os.path.join(data_dir or _data_dir_root(builder), "downloads", "manual")
    missing_manual = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)) and not (
        os.path.isdir(manual_dir) and os.listdir(manual_dir))
    if download and not prepare:  # a pre-flight: the run will download it, if it can
      if not missing_manual:
        return builder
      cause, download = f"{manual_dir} is empty", False
    if download:
      # With its manual files missing TFDS prints a "Downloading and preparing" banner
      # before failing; our message says it all.
      quiet_stdout = (contextlib.redirect_stdout(io.StringIO()) if missing_manual
                      else contextlib.nullcontext())
      try:
        with _quiet_native_stderr(), quiet_stdout:
          builder.download_and_prepare()
        cause = ""
      except Exception as e:  # Offline, manual download needed, ...
        # Missing manual files: TFDS's own text only says so, at length.
        cause = (f"{manual_dir} is empty" if missing_manual else
                 f"download failed: {type(e).__name__}: {_first_line(e)}")
    if cause:
      with _quiet_native_stderr():
        message = _not_prepared_message(name, builder, data_dir, cause)
      raise DatasetError(message)

  features = builder.info.features
  if "image" not in features or "label" not in features:
    raise DatasetError(f"TFDS dataset {name!r} has features {list(features)}; "
                       "this loader needs 'image' and 'label'")
  return builder


def _tfds_eval_split(name: str, builder, eval_split: str) -> str:
  """The split to evaluate on: ``eval_split`` (from KNOWN_DATASETS) when the
  dataset has it, else ``test``, else ``validation``.

  ``eval_split`` comes first because imagenet2012 also has a ``test`` split whose
  labels are all -1 (withheld by the challenge).
  """
  splits = set(builder.info.splits)  # Empty when TFDS cannot know (mocks).
  if not splits:
    return eval_split
  found = [split for split in (eval_split, "test", "validation") if split in splits]
  if "train" not in splits or not found:
    raise DatasetError(f"{name!r} has splits {sorted(splits)}; this loader "
                       "needs 'train' and 'test' or 'validation'")
  return found[0]


def _load_tfds(name: str, *, data_dir: str | None, image_size: int | None,
               pad: int, download: bool, eval_split: str):
  """A TFDS dataset's train and test (or validation) splits, in memory."""
  tf, tfds = _import_tf()
  builder = _open_tfds_builder(name, data_dir=data_dir, download=download)
  features = builder.info.features
  native = tuple(features["image"].shape)
  if None in native[:2] and image_size is None:
    raise DatasetError(f"{name!r} has images of varying size {native}; set "
                       "image_size (e.g. 224) so they can be stacked")
  channels = native[2]
  loaded_size = image_size if None in native[:2] else None
  shape = (loaded_size, loaded_size, channels) if loaded_size else native
  final = (image_size or shape[0]) + 2 * pad, (image_size or shape[1]) + 2 * pad

  test_split = _tfds_eval_split(name, builder, eval_split)

  datasets, sizes = {}, {}
  for split in ("train", test_split):
    ds = builder.as_dataset(
        split=split, shuffle_files=False,
        # No autocache: it would hold a second copy of the data inside TF.
        read_config=tfds.ReadConfig(try_autocache=False))
    ds = ds.map(lambda ex: (ex["image"], ex["label"]))
    if loaded_size:
      ds = ds.map(_tf_resize_crop(tf, loaded_size), num_parallel_calls=tf.data.AUTOTUNE)
    n = int(ds.cardinality())
    if n < 0:
      n = builder.info.splits[split].num_examples
    datasets[split], sizes[split] = ds, n
  per_image = max(np.prod(shape), final[0] * final[1] * channels)
  total = int(per_image) * sum(sizes.values())
  if total > MAX_IN_MEMORY_BYTES:
    raise DatasetError(
        f"{name!r} needs {total / 2**30:.1f} GiB as uint8 arrays, over the "
        f"{MAX_IN_MEMORY_BYTES / 2**30:.0f} GiB in-memory limit: it is too large to "
        "hold in memory; stream it with --config.input_pipeline=host, or use a "
        "smaller image_size")

  x_train, y_train = _read_split(tfds, datasets["train"], sizes["train"], shape)
  x_test, y_test = _read_split(tfds, datasets[test_split], sizes[test_split], shape)
  num_classes = getattr(features["label"], "num_classes", None)
  if num_classes is None:  # A plain integer label rather than a ClassLabel.
    num_classes = int(max(y_train.astype(np.int64).max(initial=-1),
                          y_test.astype(np.int64).max(initial=-1))) + 1
  return x_train, y_train, x_test, y_test, num_classes


def _not_prepared_message(name, builder, data_dir, cause) -> str:
  searched = builder.data_dir
  root = data_dir or _data_dir_root(builder)
  base = _tfds_base_name(name)
  manual = (getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None) or "").strip()
  if manual:
    first = " ".join(manual.split())[:160]
    how = (f"it needs a manual download: put the files ({first}...) in "
           f"{os.path.join(root, 'downloads', 'manual')} and run "
           f"`python tools/prepare_data.py {base} --data_dir {root}`")
  else:
    how = (f"run `python tools/prepare_data.py {name} --data_dir {root}` (on a machine "
           "with internet, then copy that folder here) or pass data_dir=<dir with the "
           "prepared dataset>")
  without = (" To run without it: a config's :tiny variant, or --config.dataset=NAME of "
             "a prepared or downloadable dataset (e.g. imagenette, cifar10)"
             if manual else "")
  return (f"TFDS dataset {name!r} is not prepared in {searched} ({cause}); "
          f"to prepare it, {how}.{without}")


def _data_dir_root(builder) -> str:
  """The data_dir a builder searched: its data_dir minus name/config/version."""
  path = builder.data_dir
  suffix = builder.info.full_name
  if path.rstrip("/").endswith(suffix):
    return path.rstrip("/")[:-len(suffix)].rstrip("/") or "/"
  return path


def _tf_resize_crop(tf, size: int):
  """Shorter side to `size` (antialiased bilinear), then a central square crop."""
  def fn(image, label):
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_min(hw)
    new_hw = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), size)
    image = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
    image = tf.image.resize_with_crop_or_pad(image, size, size)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label
  return fn


def _read_split(tfds, ds, n: int, shape):
  """Fills preallocated arrays chunk by chunk.

  Not ``batch_size=-1``: that batches by the split size TFDS records, which is
  unknown under ``tfds.testing.mock_data`` (it then tries sys.maxsize and
  aborts), and it would briefly hold two copies of the data.
  """
  images = np.empty((n, *shape), np.uint8)
  labels = np.empty((n,), np.int32)
  chunk = max(1, _CHUNK_BYTES // int(np.prod(shape)))
  i = 0
  for x, y in tfds.as_numpy(ds.batch(chunk)):
    if i + len(x) > n:
      raise DatasetError(f"TFDS returned more than the {n} examples it announced")
    images[i:i + len(x)] = x
    labels[i:i + len(y)] = y
    i += len(x)
  if i != n:
    raise DatasetError(f"TFDS returned {i} examples, expected {n}")
  return images, labels


# ----------------------------------------------------------------------------
# Host-side array helpers.


def _first_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  return lines[0][:200] if lines else type(e).__name__


def _to_uint8(x: np.ndarray) -> np.ndarray:
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _linear_weights(in_size: int, out_size: int, antialias: bool = True) -> np.ndarray:
  """(out_size, in_size) bilinear weights, half-pixel centres; antialiased (PIL) or
  not (torch's ``F.interpolate(mode='bilinear')``: the two nearest inputs)."""
  scale = in_size / out_size
  # Widen the triangle when shrinking: antialiasing.
  support = max(scale, 1.0) if antialias else 1.0
  centres = (np.arange(out_size) + 0.5) * scale
  dist = np.abs(np.arange(in_size)[None, :] + 0.5 - centres[:, None])
  w = np.maximum(0.0, 1.0 - dist / support)
  # Renormalising rows that hang over the border amounts to edge clamping.
  return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _resize(images: np.ndarray, size: int, antialias: bool = True) -> np.ndarray:
  """Resizes (N, H, W, C) to (N, size, size, C) as float32, in chunks."""
  n, h, w, c = images.shape
  wy, wx = _linear_weights(h, size, antialias), _linear_weights(w, size, antialias)
  out = np.empty((n, size, size, c), np.float32)
  step = max(1, _CHUNK_BYTES // (4 * max(h * w, size * size) * c))
  for i in range(0, n, step):
    x = images[i:i + step].astype(np.float32)
    x = np.einsum("oh,nhwc->nowc", wy, x)
    out[i:i + step] = np.einsum("pw,nowc->nopc", wx, x)
  return out


def _resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
  return _to_uint8(_resize(images, size))


def _channel_mean_std(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Exact per-channel mean/std in [0, 1] units from pixel-value histograms."""
  n, h, w, c = images.shape
  counts = np.zeros((c, 256), np.int64)
  step = max(1, _CHUNK_BYTES // max(1, h * w * c))
  for i in range(0, n, step):
    chunk = images[i:i + step]
    for ch in range(c):
      counts[ch] += np.bincount(chunk[..., ch].ravel(), minlength=256)
  values = np.arange(256, dtype=np.float64) / 255.0
  total = counts.sum(axis=1).astype(np.float64)
  total[total == 0] = 1.0  # An empty train set gives mean 0, not NaN.
  mean = counts @ values / total
  var = counts @ values**2 / total - mean**2
  std = np.sqrt(np.maximum(var, 0.0))
  return tuple(float(m) for m in mean), tuple(float(s) for s in std)
