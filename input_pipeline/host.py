"""Streaming host input pipeline (tf.data + TFDS) for datasets that do not fit in memory.

    src = host.open_builder("imagenet2012", data_dir="~/tensorflow_datasets")
    train = host.train_dataset(src, global_batch_size=1024, image_size=224, seed=0,
                               rand_augment="rand-m9-mstd0.5-inc1")
    for batch in host.to_global(train, mesh):          # {"images": uint8, "labels"}
      state = train_step(state, batch)

    ev = host.eval_dataset(src, global_batch_size=1024, image_size=224)
    for batch in host.to_global(ev, mesh):             # + "mask": False on padding
      ...                                              # num_eval_batches(...) of them

Why it exists: the in-memory pipeline (``datasets.py`` + ``device.py``) puts a
whole dataset on the accelerator and is the simplest and fastest when it fits.
ImageNet does not (1.28M images, ~190 GB as uint8 at 224x224), so here every
process streams its own share of the TFDS files and decodes and augments it on its
CPUs while the accelerators compute; each step gets a fresh batch from the host.

Choices, and why:

* Per process, not per device: process ``i`` of ``P`` reads ``tfds.even_splits(split,
  P)[i]`` and yields ``global_batch_size // P`` examples per batch; ``to_global``
  turns them into one global ``jax.Array`` per field (``training.parallel.global_batch``),
  the processes' batches concatenated in process order.
* The JPEG fast path: the Inception crop's window is sampled from the JPEG header
  alone (``extract_jpeg_shape``) and only that window is decoded
  (``decode_and_crop_jpeg``), skipping most of the inverse DCT for small crops; this
  is the pipeline's largest cost. Other encodings (PNG, ...) are decoded whole and
  then cropped.
* Crop sampling is TensorFlow's ``sample_distorted_bounding_box`` (as big_vision and
  the TF/Flax ImageNet references), with ``scale``/``ratio`` as timm's. Unlike
  torchvision's sampler it draws the aspect ratio uniformly (not log-uniformly) and
  the crop height uniformly (so small areas are favoured over a uniform area); when
  ten attempts fail it falls back, as the Inception reference does, to a central
  square of ``size / (size + 32)`` of the shorter side (torchvision: the whole image
  with its aspect ratio clamped to ``ratio``).
* Resizing is antialiased (TF's ``scale_and_translate`` kernels), like PIL in
  timm/torchvision; bicubic is the Keys kernel with a = -0.5, as PIL's.
* Randomness is stateless and per example: the seed of example ``k`` of the stream is
  a function of (``seed``, process index, ``k``), so a seed fixes the whole stream
  (``deterministic=True`` also fixes the order; with False, batches may come in a
  different order but each example's augmentation is the same).
* Colour jitter is skipped when RandAugment is on, as timm's ``create_transform``
  does for ``auto_augment`` (the ConvNeXt and DeiT recipes set both flags but only
  RandAugment acts).
* Batches stay uint8 until the device: a quarter of float32's host-to-device
  traffic. Normalisation, mixup/CutMix and random erasing (timm erases after
  normalising) run on the device (``augment.py``), where they are cheap.
* Exact evaluation: each process reads its part once, and the stream is padded with
  masked examples to ``num_eval_batches`` full batches on every process (the parts
  differ by at most one example), so every example counts exactly once and all
  processes run the same number of steps.

TensorFlow is imported only inside functions (``datasets._import_tf``, which also
hides the GPUs from it), so ``import input_pipeline`` works without it.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import os
from typing import Any, Callable, Iterable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from input_pipeline import datasets
from input_pipeline.datasets import DatasetError
from training import parallel

# The in-memory loader's TFDS helpers: both open datasets, and fail, alike.
# pylint: disable=protected-access
_import_tf = datasets._import_tf
_open_tfds_builder = datasets._open_tfds_builder
_tfds_eval_split = datasets._tfds_eval_split
_tfds_base_name = datasets._tfds_base_name
_UNKNOWN_DATASET = datasets._DEFAULT
# pylint: enable=protected-access

RESIZE_METHODS = ("bilinear", "bicubic")
# TF's antialiased resize kernels: triangle = bilinear, keyscubic = bicubic (a = -0.5).
_KERNELS = {"bilinear": "triangle", "bicubic": "keyscubic"}
# Encoded examples waiting to be drawn at random; ImageNet's JPEGs average ~110 KB,
# so ~1 GiB of host memory per process. TFDS already shuffled the examples when it
# wrote the files, and the file order is reshuffled every epoch.
DEFAULT_SHUFFLE_BUFFER = 10_000
# The Inception reference's fallback crop keeps size / (size + 32) of the shorter side.
_CROP_PADDING = 32
# ITU-R 601-2 luma, as PIL's convert("L") and ``augment.color_jitter``.
_LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class HostSource:
  """A prepared TFDS dataset and what a trainer needs to know before reading it.

  Attributes:
    name: the TFDS name it was opened by.
    builder: the ``tfds.core.DatasetBuilder``; ``train_dataset`` and
      ``eval_dataset`` accept this object or the builder itself.
    num_classes: labels are in [0, num_classes).
    channels: image channels (3 for RGB; images are decoded to this many).
    train_split: ``"train"``.
    eval_split: the split evaluated on (``KNOWN_DATASETS``' eval_split, else
      ``test``, else ``validation``).
    num_train: examples in ``train_split``, over all processes.
    num_eval: examples in ``eval_split``, over all processes.
    flip: whether a horizontal flip keeps the label (``KNOWN_DATASETS``).
  """
  name: str
  builder: Any
  num_classes: int
  channels: int
  train_split: str
  eval_split: str
  num_train: int
  num_eval: int
  flip: bool


def open_builder(name: str, *, data_dir: str | None = None,
                 download: bool = True) -> HostSource:
  """Opens a prepared TFDS dataset for streaming.

  Args:
    name: a TFDS name, optionally ``tfds:``-prefixed, with ``/config`` or
      ``:version`` as TFDS accepts.
    data_dir: TFDS data directory (default: TFDS's own default).
    download: let TFDS download and prepare it when it is not there yet
      (imagenet2012 needs its files downloaded by hand first).

  Returns:
    The builder and its facts.

  Raises:
    DatasetError: the same one-line messages as ``load_dataset``: unknown name
      (with suggestions), missing data_dir, not prepared (with how to prepare it).
  """
  tfds_name = name[len("tfds:"):] if name.startswith("tfds:") else name
  known = datasets.KNOWN_DATASETS.get(_tfds_base_name(tfds_name), _UNKNOWN_DATASET)
  builder = _open_tfds_builder(tfds_name, data_dir=data_dir, download=download)
  eval_split = _tfds_eval_split(tfds_name, builder, known.eval_split)
  features = builder.info.features
  num_classes = getattr(features["label"], "num_classes", None)
  if num_classes is None:
    raise DatasetError(f"TFDS dataset {name!r} has a plain integer label; streaming "
                       "needs a ClassLabel to know the number of classes")
  return HostSource(
      name=name, builder=builder, num_classes=int(num_classes),
      channels=_builder_channels(builder), train_split="train", eval_split=eval_split,
      num_train=_num_examples(builder, "train"),
      num_eval=_num_examples(builder, eval_split), flip=known.flip)


def num_eval_batches(num_examples: int, global_batch_size: int,
                     process_count: int | None = None) -> int:
  """Batches ``eval_dataset`` yields on every process for ``num_examples`` examples.

  The largest process part, ceil(num_examples / P), in batches of
  ``global_batch_size // P``, rounded up.
  """
  process_count = jax.process_count() if process_count is None else process_count
  local_batch = _local_batch(global_batch_size, process_count)
  largest_part = -(-num_examples // process_count)  # Ceiling division.
  return -(-largest_part // local_batch)


def train_dataset(source: Any, *, global_batch_size: int, image_size: int, seed: int = 0,
                  split: str | None = None, process_index: int | None = None,
                  process_count: int | None = None,
                  scale: tuple[float, float] = (0.08, 1.0),
                  ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                  rand_augment: str | None = None, color_jitter: float = 0.0,
                  resize_method: str = "bicubic",
                  shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                  deterministic: bool = True):
  """This process's endless stream of augmented training batches.

  Per example: Inception crop (decoding only the crop of a JPEG), resize to
  ``image_size`` (antialiased), random horizontal flip, then RandAugment or, when
  there is none, colour jitter (torchvision's ColorJitter without hue).

  Args:
    source: a ``HostSource``, a TFDS builder, or a ``tf.data.Dataset`` of
      ``{"image": encoded bytes, "label": int}`` (e.g. ``fake_jpeg_dataset``; split by
      ``Dataset.shard`` over processes).
    global_batch_size: examples per step over all processes; divisible by the
      process count.
    image_size: side of the square output images.
    seed: fixes the file order, the shuffle and every augmentation.
    split: the TFDS split (default: the source's train split).
    process_index: this process (default ``jax.process_index()``).
    process_count: processes (default ``jax.process_count()``).
    scale: (min, max) fraction of the image area the crop covers.
    ratio: (min, max) aspect ratio (width / height) of the crop.
    flip: random horizontal flips.
    rand_augment: a timm RandAugment spec (``rand-m9-mstd0.5-inc1``), or None.
    color_jitter: brightness/contrast/saturation strength s, factors drawn from
      U[max(0, 1 - s), 1 + s]; ignored when ``rand_augment`` is set (as timm).
    resize_method: 'bicubic' (timm's ImageNet recipes) or 'bilinear'.
    shuffle_buffer: encoded examples to draw from at random, at most this
      process's part (<= 1: no shuffle).
    deterministic: keep the order fixed by ``seed`` (slightly slower).

  Returns:
    A ``tf.data.Dataset`` of {"images": uint8 (B, S, S, C), "labels": int32 (B,)},
    B = global_batch_size // process_count, repeating forever.
  """
  tf, _ = _import_tf()
  process_index, process_count = _processes(process_index, process_count)
  local_batch = _local_batch(global_batch_size, process_count)
  _check_common(image_size, resize_method)
  if not (0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]):
    raise DatasetError(f"crop scale {scale} must satisfy 0 < min <= max <= 1 and ratio "
                       f"{ratio} 0 < min <= max")
  if color_jitter < 0:
    raise DatasetError(f"color_jitter must be >= 0, got {color_jitter}")
  augment = _rand_augment_fn(rand_augment) if rand_augment else None
  jitter = 0.0 if augment else float(color_jitter)

  # Independent seeds for the file order, the shuffle and the augmentations, each a
  # function of (seed, process) so that processes do not repeat each other.
  file_seed, shuffle_seed, aug_seed = (
      int(s) for s in np.random.SeedSequence([seed, process_index]).generate_state(3))
  examples, channels, total = _read(tf, source, split, process_index, process_count,
                                    training=True, file_seed=file_seed)
  if total >= 0:  # A buffer of the whole part already shuffles it completely.
    shuffle_buffer = min(shuffle_buffer, _part_size(total, process_index, process_count))
  ds = examples.repeat()
  if shuffle_buffer > 1:
    ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed)
  base_seed = tf.constant([aug_seed, 0], tf.int64)

  def preprocess(index, example):
    encoded, label = example
    example_seed = tf.random.experimental.stateless_fold_in(base_seed, index)
    image = train_image(encoded, example_seed, image_size=image_size, channels=channels,
                        scale=scale, ratio=ratio, flip=flip, rand_augment=augment,
                        color_jitter=jitter, resize_method=resize_method)
    return {"images": image, "labels": tf.cast(label, tf.int32)}

  # Counted before the parallel map, so each example's seed does not depend on the
  # order in which the map finishes.
  ds = ds.enumerate().map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(tf, deterministic))


def eval_dataset(source: Any, *, global_batch_size: int, image_size: int,
                 split: str | None = None, crop_pct: float = 0.875,
                 resize_method: str = "bicubic", process_index: int | None = None,
                 process_count: int | None = None):
  """This process's part of the evaluation split, once, padded to full batches.

  Per example, timm's/torchvision's evaluation transform: the shorter side resized
  to floor(image_size / crop_pct) (the longer in proportion, truncated;
  antialiased), then the central ``image_size`` square (offsets rounded half to
  even, as torchvision's ``round``). Both in one ``scale_and_translate`` that
  computes only the kept pixels, the same values as resizing and then cropping.

  Args:
    source: as for ``train_dataset``.
    global_batch_size: examples per step over all processes.
    image_size: side of the square output images.
    split: the TFDS split (default: the source's eval split).
    crop_pct: fraction of the resized shorter side kept, in (0, 1].
    resize_method: 'bicubic' or 'bilinear'.
    process_index: this process (default ``jax.process_index()``).
    process_count: processes (default ``jax.process_count()``).

  Returns:
    A finite ``tf.data.Dataset`` of ``num_eval_batches(num_examples,
    global_batch_size, process_count)`` batches {"images": uint8 (B, S, S, C),
    "labels": int32 (B,), "mask": bool (B,)}; ``mask`` is False on padding.
  """
  tf, _ = _import_tf()
  process_index, process_count = _processes(process_index, process_count)
  local_batch = _local_batch(global_batch_size, process_count)
  _check_common(image_size, resize_method)
  if not 0 < crop_pct <= 1:
    raise DatasetError(f"crop_pct must be in (0, 1], got {crop_pct}")
  examples, channels, total = _read(tf, source, split, process_index, process_count,
                                    training=False)
  local = _part_size(total, process_index, process_count)
  if int(examples.cardinality()) not in (local, tf.data.UNKNOWN_CARDINALITY):
    raise DatasetError(f"process {process_index} of {process_count} reads "
                       f"{int(examples.cardinality())} examples, expected {local} of "
                       f"{total}")
  padded = num_eval_batches(total, global_batch_size, process_count) * local_batch

  def preprocess(encoded, label):
    image = eval_image(encoded, image_size=image_size, channels=channels,
                       crop_pct=crop_pct, resize_method=resize_method)
    return {"images": image, "labels": tf.cast(label, tf.int32), "mask": True}

  ds = examples.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  padding = tf.data.Dataset.from_tensors({
      "images": tf.zeros((image_size, image_size, channels), tf.uint8),
      "labels": tf.constant(0, tf.int32), "mask": False})
  ds = ds.concatenate(padding.repeat(padded - local))
  ds = ds.batch(local_batch, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(tf, deterministic=True))


def to_global(batches: Iterable[Any], mesh: Mesh, prefetch: int = 2) -> Iterator[Any]:
  """Process-local numpy batches -> global ``jax.Array`` batches, ``prefetch`` ahead.

  Each batch is split over the mesh's batch axes (``parallel.batch_sharding``). The
  transfers are asynchronous, so keeping ``prefetch`` batches in flight overlaps
  them with the step that runs meanwhile (flax's ``prefetch_to_device``, for
  ``jax.sharding`` instead of ``pmap``).

  Args:
    batches: a ``tf.data.Dataset`` (read as numpy) or any iterable of pytrees of
      numpy arrays, this process's share of each global batch.
    mesh: the device mesh (``parallel.create_mesh``).
    prefetch: batches put on the devices ahead of the one being consumed.

  Yields:
    The same pytrees of global ``jax.Array``.
  """
  if hasattr(batches, "as_numpy_iterator"):
    batches = batches.as_numpy_iterator()
  it = iter(batches)
  queue = collections.deque()

  def put(n):
    for batch in itertools.islice(it, n):
      queue.append(parallel.global_batch(batch, mesh))

  put(max(1, prefetch))
  while queue:
    yield queue.popleft()
    put(1)


def fake_jpeg_dataset(num_examples: int, *, height_range: tuple[int, int] = (300, 500),
                      width_range: tuple[int, int] = (300, 500), num_classes: int = 1000,
                      seed: int = 0, num_distinct: int = 256, quality: int = 95):
  """Synthetic JPEGs shaped like ImageNet's, for benchmarks and tests without data.

  Each image is smooth colour gradients at three scales plus luma noise, encoded at
  ``quality``: about 115 KB at the default sizes, near ImageNet's average (~110 KB
  at ~400x350), so decoding costs what it costs on the real files. Only
  ``num_distinct`` images are made (a few ms each); example i uses image
  i % num_distinct.

  Args:
    num_examples: length of the dataset.
    height_range: (min, max) image height, inclusive.
    width_range: (min, max) image width, inclusive.
    num_classes: labels are uniform in [0, num_classes).
    seed: fixes images and labels.
    num_distinct: distinct images made.
    quality: JPEG quality.

  Returns:
    A finite ``tf.data.Dataset`` of {"image": tf.string, "label": int64}, the
    structure ``train_dataset`` and ``eval_dataset`` read from TFDS.
  """
  if num_examples < 1 or num_distinct < 1:
    raise DatasetError(f"fake_jpeg_dataset needs num_examples >= 1 and num_distinct "
                       f">= 1, got {num_examples} and {num_distinct}")
  tf, _ = _import_tf()
  rng = np.random.default_rng(seed)
  images = []
  for _ in range(min(num_examples, num_distinct)):
    h = int(rng.integers(height_range[0], height_range[1] + 1))
    w = int(rng.integers(width_range[0], width_range[1] + 1))
    x = np.full((h, w, 3), 128.0, np.float32)
    for cells, amplitude in ((3, 110.0), (12, 45.0), (48, 25.0)):
      grid = rng.normal(0.0, amplitude, (1, cells, cells, 3)).astype(np.float32)
      x += tf.image.resize(grid, (h, w), "bicubic")[0].numpy()
    x += rng.normal(0.0, 24.0, (h, w, 1))  # Luma noise: JPEG keeps it, unlike chroma.
    pixels = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    images.append(tf.io.encode_jpeg(pixels, quality=quality).numpy())
  labels = rng.integers(0, num_classes, num_examples)
  pool = tf.constant(images)
  return tf.data.Dataset.from_tensor_slices(labels).enumerate().map(
      lambda i, label: {"image": pool[i % len(images)], "label": label})


# ----------------------------------------------------------------------------
# Per-example transforms, shared by TFDS and fake sources: encoded bytes -> uint8.


def train_image(encoded, seed, *, image_size: int, channels: int = 3,
                scale: tuple[float, float] = (0.08, 1.0),
                ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                rand_augment: Callable[[Any, Any], Any] | None = None,
                color_jitter: float = 0.0, resize_method: str = "bicubic"):
  """One training image from its encoded bytes (see ``train_dataset``).

  Args:
    encoded: scalar tf.string, a JPEG (the fast path) or any ``decode_image`` format.
    seed: shape (2,) integer tensor; every random choice is a stateless function of it.
    image_size: output side.
    channels: channels to decode to.
    scale: crop area range, as a fraction of the image.
    ratio: crop aspect-ratio range, width / height.
    flip: random horizontal flip.
    rand_augment: ``(uint8 image, seed) -> image``, or None.
    color_jitter: ColorJitter strength (applied only without ``rand_augment``).
    resize_method: 'bicubic' or 'bilinear'.

  Returns:
    uint8 (image_size, image_size, channels).
  """
  tf, _ = _import_tf()
  crop_seed, flip_seed, aug_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))

  def window(shape):
    """(top, left, height, width) of the crop, from the image shape alone."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.zeros([1, 0, 4]), seed=crop_seed,
        min_object_covered=0.0,  # No minimum beyond `scale`, as timm.
        aspect_ratio_range=ratio, area_range=scale, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    h, w = shape[0], shape[1]
    # After ten failed attempts TF returns the whole image: use the reference's
    # central crop instead.
    failed = tf.logical_and(tf.equal(size[0], h), tf.equal(size[1], w))
    side = tf.cast(image_size / (image_size + _CROP_PADDING)
                   * tf.cast(tf.minimum(h, w), tf.float32), tf.int32)
    centre = tf.stack([(h - side + 1) // 2, (w - side + 1) // 2, side, side])
    return tf.where(failed, centre, tf.stack([begin[0], begin[1], size[0], size[1]]))

  image = _decode_window(tf, encoded, window, channels)
  image = tf.image.resize(image, (image_size, image_size), method=resize_method,
                          antialias=True)
  image = _to_uint8(tf, image)
  if flip:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  if rand_augment is not None:
    image = _to_uint8(tf, rand_augment(image, aug_seed))
  elif color_jitter > 0:
    image = _to_uint8(tf, _color_jitter(tf, image, aug_seed, color_jitter))
  image.set_shape((image_size, image_size, channels))
  return image


def eval_image(encoded, *, image_size: int, channels: int = 3, crop_pct: float = 0.875,
               resize_method: str = "bicubic"):
  """One evaluation image from its encoded bytes (see ``eval_dataset``).

  Returns:
    uint8 (image_size, image_size, channels).
  """
  tf, _ = _import_tf()
  image = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint8,
                             expand_animations=False)
  hw = tf.shape(image)[:2]
  h, w = hw[0], hw[1]
  short = math.floor(image_size / crop_pct)
  # torchvision's Resize(int): the longer side in proportion, truncated.
  rh = tf.where(h <= w, short, short * h // w)
  rw = tf.where(h <= w, short * w // h, short)
  resized = tf.cast(tf.stack([rh, rw]), tf.float32)
  # CenterCrop's offsets, int(round(...)) with round-half-to-even like tf.round.
  offset = tf.round((resized - image_size) / 2.0)
  out = tf.raw_ops.ScaleAndTranslate(
      images=image[None], size=tf.constant([image_size, image_size]),
      scale=resized / tf.cast(hw, tf.float32), translation=-offset,
      kernel_type=_KERNELS[resize_method], antialias=True)[0]
  out = _to_uint8(tf, out)
  out.set_shape((image_size, image_size, channels))
  return out


# ----------------------------------------------------------------------------
# Helpers.


def _processes(process_index, process_count) -> tuple[int, int]:
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise DatasetError(f"process_index={process_index} must be in [0, {process_count})")
  return process_index, process_count


def _local_batch(global_batch_size: int, process_count: int) -> int:
  if global_batch_size < 1 or global_batch_size % process_count:
    raise DatasetError(f"batch size {global_batch_size} must be a positive multiple of "
                       f"the {process_count} processes")
  return global_batch_size // process_count


def _part_size(total: int, process_index: int, process_count: int) -> int:
  """Examples in a process's part: even_splits and Dataset.shard give the first
  total % P processes one more."""
  return total // process_count + (process_index < total % process_count)


def _check_common(image_size: int, resize_method: str) -> None:
  if image_size < 1:
    raise DatasetError(f"image_size must be a positive integer, got {image_size}")
  if resize_method not in RESIZE_METHODS:
    raise DatasetError(f"resize method {resize_method!r} is not one of {RESIZE_METHODS}")


def _options(tf, deterministic: bool):
  """tf.data options: autotuned parallelism on a private pool, one thread per op."""
  options = tf.data.Options()
  options.deterministic = deterministic
  options.autotune.enabled = True
  # Its own pool, so that the pipeline does not compete with TF's inter-op pool, and
  # one thread per op: parallelism comes from many examples at once, which scales
  # better than splitting one decode.
  options.threading.private_threadpool_size = _num_cores()
  options.threading.max_intra_op_parallelism = 1
  return options


def _num_cores() -> int:
  """CPU cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not on Linux.
    return os.cpu_count() or 1


def _builder_channels(builder) -> int:
  shape = getattr(builder.info.features["image"], "shape", None) or (None, None, 3)
  return int(shape[-1] or 3)


def _num_examples(builder, split) -> int:
  """Examples in ``split`` (any TFDS split expression); mocks count the dataset."""
  try:
    n = builder.info.splits[split].num_examples
  except (KeyError, ValueError):
    n = 0
  if not n:  # Under tfds.testing.mock_data the split metadata is empty.
    n = int(builder.as_dataset(split=split).cardinality())
  if n < 0:
    raise DatasetError(f"cannot count the examples of split {split!r} of "
                       f"{builder.name}")
  return n


def _read(tf, source, split, process_index: int, process_count: int, *, training: bool,
          file_seed: int | None = None):
  """This process's part of a source as (encoded bytes, label), plus channels and
  the number of examples over all processes."""
  if isinstance(source, tf.data.Dataset):
    total = int(source.cardinality())
    if total < 0 and not training:
      raise DatasetError("eval_dataset needs a dataset of known length "
                         "(tf.data.experimental.assert_cardinality)")
    ds = source.shard(process_count, process_index) if process_count > 1 else source
    return ds.map(lambda ex: (ex["image"], ex["label"])), 3, total
  _, tfds = _import_tf()
  if isinstance(source, HostSource):
    split = split or (source.train_split if training else source.eval_split)
    builder = source.builder
  else:
    builder = source
    if split is None:
      known = datasets.KNOWN_DATASETS.get(builder.name, _UNKNOWN_DATASET)
      split = "train" if training else _tfds_eval_split(builder.name, builder,
                                                        known.eval_split)
  total = _num_examples(builder, split)
  ds = builder.as_dataset(
      split=tfds.even_splits(split, n=process_count)[process_index],
      decoders={"image": tfds.decode.SkipDecoding()},  # Decoded in the map instead.
      shuffle_files=training,
      read_config=tfds.ReadConfig(shuffle_seed=file_seed, try_autocache=False))
  return ds.map(lambda ex: (ex["image"], ex["label"])), _builder_channels(builder), total


def _decode_window(tf, encoded, window_fn, channels: int):
  """Decodes only ``window_fn(shape)`` = (top, left, height, width) of the image."""
  def jpeg():
    window = window_fn(tf.io.extract_jpeg_shape(encoded))
    return tf.image.decode_and_crop_jpeg(encoded, window, channels=channels)

  def other():
    image = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint8,
                               expand_animations=False)
    top, left, h, w = tf.unstack(window_fn(tf.shape(image)))
    return image[top:top + h, left:left + w]

  image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  image.set_shape((None, None, channels))
  return image


def _to_uint8(tf, image):
  if image.dtype == tf.uint8:
    return image
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _grayscale(tf, image):
  if image.shape[-1] == 1:
    return image
  return tf.reduce_sum(image * tf.constant(_LUMA), axis=-1, keepdims=True)


def _color_jitter(tf, image, seed, strength: float):
  """torchvision's ColorJitter(s, s, s) without hue, as ``augment.color_jitter``.

  Factors uniform in [max(0, 1 - s), 1 + s], the three operations in a random order,
  each clipped to [0, 255]: brightness blends with black, contrast with the mean of
  the grayscale image, saturation with the grayscale image (a no-op on 1 channel).
  """
  x = tf.cast(image, tf.float32)
  factor_seed, order_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  factors = tf.random.stateless_uniform([3], factor_seed, minval=max(0.0, 1 - strength),
                                        maxval=1 + strength)
  order = tf.argsort(tf.random.stateless_uniform([3], order_seed))
  ops = (lambda x, f: x * f,
         lambda x, f: f * x + (1 - f) * tf.reduce_mean(_grayscale(tf, x)),
         lambda x, f: f * x + (1 - f) * _grayscale(tf, x))
  for step in range(3):
    branches = [lambda op=op, j=j, x=x: tf.clip_by_value(op(x, factors[j]), 0.0, 255.0)
                for j, op in enumerate(ops)]
    x = tf.switch_case(order[step], branches)
  return x


def _rand_augment_fn(spec: str):
  """``(uint8 image, seed) -> image`` for a timm RandAugment spec."""
  from input_pipeline import randaugment  # pylint: disable=g-import-not-at-top
  from input_pipeline import randaugment_tf  # pylint: disable=g-import-not-at-top
  try:
    params = randaugment.parse(spec)
  except ValueError as e:
    raise DatasetError(f"bad rand_augment {spec!r}: {e}") from None
  return lambda image, seed: randaugment_tf.rand_augment(image, seed, **params)
