"""Streaming host input pipeline (tf.data + TFDS) for datasets that do not fit in memory.

    src = host.open_builder("imagenet2012", data_dir="~/tensorflow_datasets")
    plan = recipe.plan(recipe.Recipe.from_config(config.augment), source="host", ...)
    train = host.train_dataset(src, global_batch_size=1024, image_size=224, seed=0,
                               ops=plan.train_host)   # decode > crop > flip
    for batch in host.to_global(train, mesh):          # {"images": uint8, "labels"}
      state = train_step(state, batch)                 # + plan.train_device

    ev = host.eval_dataset(src, global_batch_size=1024, ops=plan.eval_host)
    for batch in host.to_global(ev, mesh):             # + "mask": False on padding
      ...                                              # num_eval_batches(...) of them

Why it exists: the in-memory pipeline (``datasets.py`` + ``device.py``) puts a
whole dataset on the accelerator and is the simplest and fastest when it fits.
ImageNet does not (1.28M images, ~190 GB as uint8 at 224x224), so here every
process streams its own share of the TFDS files and decodes and crops it on its
CPUs while the accelerators compute; each step gets a fresh batch from the host.
The host runs only what needs a per-image decode (decode, the crop that makes
variable-size images square, flip: the plan's host ops); RandAugment, colour
jitter, lighting, erasing and Mixup run on the accelerator from the one JAX
implementation (``augment.py``), which also halves the host's CPU cost.

Choices, and why:

* Per process, not per device: process ``i`` of ``P`` reads ``tfds.even_splits(split,
  P)[i]`` and yields ``global_batch_size // P`` examples per batch; ``to_global``
  turns them into one global ``jax.Array`` per field (``training.parallel.global_batch``),
  the processes' batches concatenated in process order.
* Scale jittering (VGG, ResNet: ``resize_shorter(256..512) > random_crop(224)``)
  decodes the whole image, resizes its shorter side to a side drawn per example,
  and crops at random.
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
* Exact resume: the order is by the trainer's epochs (``steps_per_epoch`` batches,
  the rest of each process's part dropped that epoch, as the in-memory pipeline
  does), and epoch ``e``'s file order, shuffle and augmentations are a pure function
  of (``seed``, process, ``e``), with ``k`` the position counted from the start of
  training. So ``train_dataset(..., start_step=s)`` builds the epochs from ``s``'s
  on and skips the examples of that epoch's earlier steps: a resumed run sees the
  batches the interrupted one would have seen next (with the same process count).
* Batches stay uint8 until the device: a quarter of float32's host-to-device
  traffic. Everything photometric and normalisation run on the device
  (``augment.apply_ops``), where they are cheap.
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
from typing import Any, Iterable, Iterator, Sequence

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
                  start_step: int = 0, steps_per_epoch: int | None = None,
                  ops: Sequence[Any] | None = None,
                  shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                  deterministic: bool = True):
  """This process's endless stream of augmented training batches.

  Per example, the host half of the run's plan (``recipe.plan(...).train_host``):
  decode, then the random-resized crop (decoding only the crop of a JPEG) or scale
  jittering (resize the shorter side, random crop), and the flip. Everything
  photometric (RandAugment, colour jitter, lighting, erasing, Mixup) runs on the
  accelerator, in the step.

  The order is by epochs, as the trainer counts them: epoch ``e`` is
  ``steps_per_epoch`` steps, in which this process reads ``steps_per_epoch *
  global_batch_size // process_count`` examples of its part: its files in an order
  drawn from (``seed``, ``e``), through a shuffle buffer seeded by (``seed``,
  ``e``), the rest of the part dropped that epoch (as the in-memory pipeline drops
  ``num_train % global_batch_size``; different examples each epoch). Example ``k``
  of epoch ``e`` is augmented from the seed (``seed``, process, ``e *
  examples_per_epoch + k``). So the batch of global step ``s`` is a function of
  ``s`` and the arguments alone, and a stream started at ``start_step=s`` yields
  exactly the batches an uninterrupted stream yields from step ``s`` on: resume
  with the same ``seed``, ``global_batch_size``, ``process_count``,
  ``steps_per_epoch``, ``shuffle_buffer``, split and ``ops``, and
  ``deterministic=True``. A different process count cuts the split into different
  parts (``tfds.even_splits``), so it cannot replay the stream: a trainer that
  resumes with another process count should refuse or warn (and may then pass
  ``start_step`` anyway, to continue at the right epoch with a different order).
  Starting mid-epoch reads (without decoding) and drops the epoch's first
  ``start_step % steps_per_epoch`` batches' examples.

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
    process_count: processes (default ``jax.process_count()``). Part of the
      order: an exact resume needs the process count the run started with.
    start_step: the global step the stream starts at (a resumed run's step); its
      first batch is the one an uninterrupted stream yields at that step.
    steps_per_epoch: steps per epoch (default ``num_examples //
      global_batch_size``, as ``device.steps_per_epoch``); at most what the
      smallest process part can fill. Required for a ``tf.data.Dataset`` source
      of unknown length.
    ops: the host ops (``recipe.Op``): decode, then random_resized_crop or
      resize_shorter + random_crop (with ``size == image_size``), then optionally
      flip. Default: ``default_train_ops(image_size)``, the Inception crop and flip.
    shuffle_buffer: encoded examples to draw from at random, at most this
      process's part (<= 1: no shuffle).
    deterministic: keep the order fixed by ``seed`` (slightly slower); with False
      the parallel decode may reorder examples across batches, so a resume is
      no longer exact.

  Returns:
    A ``tf.data.Dataset`` of {"images": uint8 (B, S, S, C), "labels": int32 (B,)},
    B = global_batch_size // process_count, repeating forever.
  """
  tf, _ = _import_tf()
  process_index, process_count = _processes(process_index, process_count)
  local_batch = _local_batch(global_batch_size, process_count)
  ops = tuple(default_train_ops(image_size) if ops is None else ops)
  _check_train_ops(ops, image_size)

  # Independent seeds for the file order, the shuffle and the augmentations, each a
  # function of (seed, process) so that processes do not repeat each other.
  file_seed, shuffle_seed, aug_seed = (
      int(s) for s in np.random.SeedSequence([seed, process_index]).generate_state(3))
  read_epoch, channels, total = _read(tf, source, split, process_index, process_count,
                                      training=True)
  per_epoch = _examples_per_epoch(total, global_batch_size, process_count,
                                  steps_per_epoch)
  if start_step < 0:
    raise DatasetError(f"start_step must be >= 0, got {start_step}")
  if total >= 0:  # A buffer of the whole part already shuffles it completely.
    shuffle_buffer = min(shuffle_buffer, _part_size(total, process_index, process_count))
  # (index, (encoded, label)), index = epoch * per_epoch + position in the epoch.
  ds = _train_order(tf, read_epoch, examples_per_epoch=per_epoch,
                    start=start_step * local_batch, file_seed=file_seed,
                    shuffle_seed=shuffle_seed, shuffle_buffer=shuffle_buffer)
  base_seed = tf.constant([aug_seed, 0], tf.int64)

  def preprocess(index, example):
    encoded, label = example
    example_seed = tf.random.experimental.stateless_fold_in(base_seed, index)
    image = train_image(encoded, example_seed, ops=ops, channels=channels)
    return {"images": image, "labels": tf.cast(label, tf.int32)}

  # Indexed before the parallel map (by position in the epoch, not by a count that
  # a resume restarts), so each example's seed does not depend on the order in
  # which the map finishes, nor on where the stream started.
  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options(tf, deterministic))


def eval_dataset(source: Any, *, global_batch_size: int, ops: Sequence[Any],
                 split: str | None = None, process_index: int | None = None,
                 process_count: int | None = None):
  """This process's part of the evaluation split, once, padded to full batches.

  Per example, the host half of the plan's evaluation (``default_eval_ops`` is
  timm's/torchvision's transform): the shorter side resized to R (the longer in
  proportion, truncated; antialiased), then the central S square (offsets rounded
  half to even, as torchvision's ``round``). Both in one ``scale_and_translate``
  that computes only the kept pixels, the same values as resizing and then
  cropping. Multi-view protocols ship the whole R square (S = R) and take their
  views on the device.

  Args:
    source: as for ``train_dataset``.
    global_batch_size: examples per step over all processes.
    ops: decode > resize_shorter(sides=(R, R), method) > center_crop(size=S).
    split: the TFDS split (default: the source's eval split).
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
  names = [o.name for o in ops]
  if names != ["decode", "resize_shorter", "center_crop"]:
    raise DatasetError(f"host eval ops {' > '.join(names)}: expected decode > "
                       "resize_shorter > center_crop")
  kw = {o.name: o.kwargs for o in ops}
  image_size = kw["center_crop"]["size"]
  _check_common(image_size, kw["resize_shorter"]["method"])
  if kw["resize_shorter"]["sides"][0] < image_size:
    raise DatasetError(f"host eval ops {' > '.join(map(str, ops))}: the crop is larger "
                       "than the resized image")
  examples, channels, total = _read(tf, source, split, process_index, process_count,
                                    training=False)
  local = _part_size(total, process_index, process_count)
  if int(examples.cardinality()) not in (local, tf.data.UNKNOWN_CARDINALITY):
    raise DatasetError(f"process {process_index} of {process_count} reads "
                       f"{int(examples.cardinality())} examples, expected {local} of "
                       f"{total}")
  padded = num_eval_batches(total, global_batch_size, process_count) * local_batch

  def preprocess(encoded, label):
    image = eval_image(encoded, ops=ops, channels=channels)
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


def default_train_ops(image_size: int, method: str = "bicubic") -> tuple[Any, ...]:
  """decode > random_resized_crop(image_size, 8-100%, 3/4-4/3) > flip: the timm /
  torchvision ImageNet training crop (tools and tests; a run takes its plan's ops)."""
  from input_pipeline import recipe  # pylint: disable=g-import-not-at-top
  return (recipe.op("decode"),
          recipe.op("random_resized_crop", size=image_size, scale=(0.08, 1.0),
                    ratio=(3 / 4, 4 / 3), method=method),
          recipe.op("flip"))


HOST_TRAIN_OPS = ("decode", "random_resized_crop", "resize_shorter", "random_crop", "flip")


def _check_train_ops(ops: Sequence[Any], image_size: int) -> None:
  names = [o.name for o in ops]
  unknown = [n for n in names if n not in HOST_TRAIN_OPS]
  if unknown:
    raise DatasetError(f"the host pipeline does not run {', '.join(unknown)}; its ops are "
                       f"{', '.join(HOST_TRAIN_OPS)} (the rest runs on the device)")
  crops = [n for n in names if n in ("random_resized_crop", "random_crop")]
  if names[:1] != ["decode"] or len(crops) != 1 or (
      "resize_shorter" in names and names[names.index("resize_shorter") + 1] != "random_crop"):
    raise DatasetError(f"host ops {' > '.join(names)}: expected decode, then one crop "
                       "(random_resized_crop, or resize_shorter > random_crop), then flip")
  for o in ops:
    if "size" in o.kwargs and o.kwargs["size"] != image_size:
      raise DatasetError(f"host op {o} makes {o.kwargs['size']}-pixel images, the batch "
                         f"is {image_size}")
    if "method" in o.kwargs:
      _check_common(image_size, o.kwargs["method"])


def train_image(encoded, seed, *, ops: Sequence[Any], channels: int = 3):
  """One training image from its encoded bytes: the host ops of a plan, in order.

  Args:
    encoded: scalar tf.string, a JPEG (the fast path) or any ``decode_image`` format.
    seed: shape (2,) integer tensor; every random choice is a stateless function of it.
    ops: ``decode``, then ``random_resized_crop(size, scale, ratio, method)`` or
      ``resize_shorter(sides, method) > random_crop(size)``, then optionally ``flip``.
    channels: channels to decode to.

  Returns:
    uint8 (size, size, channels).
  """
  tf, _ = _import_tf()
  crop_seed, flip_seed, size_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  kw = {o.name: o.kwargs for o in ops}
  if "random_resized_crop" in kw:
    c = kw["random_resized_crop"]
    image_size = c["size"]
    image = _inception_crop(tf, encoded, crop_seed, size=image_size, scale=c["scale"],
                            ratio=c["ratio"], channels=channels)
    image = tf.image.resize(image, (image_size, image_size), method=c["method"],
                            antialias=True)
  else:
    image_size = kw["random_crop"]["size"]
    lo, hi = kw["resize_shorter"]["sides"]
    side = tf.random.stateless_uniform([], size_seed, lo, hi + 1, dtype=tf.int32)
    image = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint8,
                               expand_animations=False)
    image = _resize_shorter(tf, image, side, kw["resize_shorter"]["method"])
    image = tf.image.stateless_random_crop(image, (image_size, image_size, channels),
                                           crop_seed)
  image = _to_uint8(tf, image)
  if "flip" in kw:
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  image.set_shape((image_size, image_size, channels))
  return image


def _resize_shorter(tf, image, side, method: str):
  """torchvision's Resize(side): shorter side to ``side``, longer in proportion
  (truncated); antialiased. Float32 out."""
  hw = tf.shape(image)[:2]
  h, w = hw[0], hw[1]
  rh = tf.where(h <= w, side, side * h // w)
  rw = tf.where(h <= w, side * w // h, side)
  return tf.image.resize(image, tf.stack([rh, rw]), method=method, antialias=True)


def _inception_crop(tf, encoded, seed, *, size: int, scale, ratio, channels: int):
  """The random-resized crop's window, decoded (only that window, for JPEGs)."""

  def window(shape):
    """(top, left, height, width) of the crop, from the image shape alone."""
    begin, box, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.zeros([1, 0, 4]), seed=seed,
        min_object_covered=0.0,  # No minimum beyond `scale`, as timm.
        aspect_ratio_range=ratio, area_range=scale, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    h, w = shape[0], shape[1]
    # After ten failed attempts TF returns the whole image: use the reference's
    # central crop instead.
    failed = tf.logical_and(tf.equal(box[0], h), tf.equal(box[1], w))
    side = tf.cast(size / (size + _CROP_PADDING)
                   * tf.cast(tf.minimum(h, w), tf.float32), tf.int32)
    centre = tf.stack([(h - side + 1) // 2, (w - side + 1) // 2, side, side])
    return tf.where(failed, centre, tf.stack([begin[0], begin[1], box[0], box[1]]))

  return _decode_window(tf, encoded, window, channels)


def default_eval_ops(image_size: int, crop_pct: float = 0.875,
                     method: str = "bicubic") -> tuple[Any, ...]:
  """decode > resize_shorter(floor(image_size / crop_pct)) > center_crop(image_size):
  timm's / torchvision's evaluation transform."""
  from input_pipeline import recipe  # pylint: disable=g-import-not-at-top
  if not 0 < crop_pct <= 1:
    raise DatasetError(f"crop_pct must be in (0, 1], got {crop_pct}")
  short = math.floor(image_size / crop_pct)
  return (recipe.op("decode"), recipe.op("resize_shorter", sides=(short, short), method=method),
          recipe.op("center_crop", size=image_size))


def eval_image(encoded, *, ops: Sequence[Any], channels: int = 3):
  """One evaluation image from its encoded bytes: decode > resize_shorter(R) >
  center_crop(S), as ``eval_dataset`` describes.

  Returns:
    uint8 (S, S, channels).
  """
  tf, _ = _import_tf()
  kw = {o.name: o.kwargs for o in ops}
  short, _ = kw["resize_shorter"]["sides"]
  image_size = kw["center_crop"]["size"]
  image = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint8,
                             expand_animations=False)
  hw = tf.shape(image)[:2]
  h, w = hw[0], hw[1]
  # torchvision's Resize(int): the longer side in proportion, truncated.
  rh = tf.where(h <= w, short, short * h // w)
  rw = tf.where(h <= w, short * w // h, short)
  resized = tf.cast(tf.stack([rh, rw]), tf.float32)
  # CenterCrop's offsets, int(round(...)) with round-half-to-even like tf.round.
  offset = tf.round((resized - image_size) / 2.0)
  out = tf.raw_ops.ScaleAndTranslate(
      images=image[None], size=tf.constant([image_size, image_size]),
      scale=resized / tf.cast(hw, tf.float32), translation=-offset,
      kernel_type=_KERNELS[kw["resize_shorter"]["method"]], antialias=True)[0]
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


def _read(tf, source, split, process_index: int, process_count: int, *, training: bool):
  """This process's part of a source as (encoded bytes, label), plus channels and
  the number of examples over all processes (-1: unknown).

  For evaluation the part is a dataset, in the source's order. For training it is
  ``read_epoch(file_seed) -> dataset``, the part once: TFDS record files (whole,
  or the slices ``even_splits`` cut) in an order drawn from ``file_seed`` (shape
  (2,) int64, may be a traced tensor); a ``tf.data.Dataset`` source, or TFDS
  files that tf.data cannot read directly (ArrayRecord, ``tfds.testing.mock_data``),
  in their own fixed order, leaving the shuffling to the shuffle buffer.
  """
  if isinstance(source, tf.data.Dataset):
    total = int(source.cardinality())
    if total < 0 and not training:
      raise DatasetError("eval_dataset needs a dataset of known length "
                         "(tf.data.experimental.assert_cardinality)")
    ds = source.shard(process_count, process_index) if process_count > 1 else source
    ds = ds.map(lambda ex: (ex["image"], ex["label"]))
    return ((lambda file_seed: ds) if training else ds), 3, total
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
  part = tfds.even_splits(split, n=process_count)[process_index]
  decoders = {"image": tfds.decode.SkipDecoding()}  # Decoded in the map instead.
  channels = _builder_channels(builder)
  if training:
    read_epoch = _record_reader(tf, tfds, builder, part, decoders)
    if read_epoch is not None:
      return read_epoch, channels, total
  ds = builder.as_dataset(split=part, decoders=decoders, shuffle_files=False,
                          read_config=tfds.ReadConfig(try_autocache=False))
  ds = ds.map(lambda ex: (ex["image"], ex["label"]))
  return ((lambda file_seed: ds) if training else ds), channels, total


def _record_reader(tf, tfds, builder, part, decoders):
  """``read_epoch(file_seed)`` for ``_read``: ``part``'s record files, read by
  tf.data in an order drawn from the seed, as TFDS's reader does with
  ``shuffle_files`` (16 files interleaved, 16 records at a time) but with a seed that
  can change per epoch inside the graph. None where the files are not plain
  tf.data-readable record files (then ``as_dataset`` reads them in a fixed order).
  """
  # pylint: disable=g-import-not-at-top
  try:
    from tensorflow_datasets.core import file_adapters
    file_format = builder.info.file_format or file_adapters.FileFormat.TFRECORD
    adapter = file_adapters.ADAPTER_FOR_FORMAT[file_format]
    instructions = builder.info.splits[part].file_instructions
  except (ImportError, AttributeError, KeyError, ValueError):
    return None  # E.g. under tfds.testing.mock_data, which has no splits.
  # pylint: enable=g-import-not-at-top
  if (not getattr(adapter, "SUPPORTS_TF_DATA", False) or not instructions
      or not tf.io.gfile.exists(os.fspath(instructions[0].filename))):
    return None
  paths = tf.constant([os.fspath(i.filename) for i in instructions])
  skips = tf.constant([i.skip for i in instructions], tf.int64)
  takes = tf.constant([i.take for i in instructions], tf.int64)
  features = builder.info.features

  def read_file(path, skip, take):
    return adapter.make_tf_data(path).skip(skip).take(take)

  def parse(record):
    example = features.deserialize_example(record, decoders=decoders)
    return example["image"], example["label"]

  def read_epoch(file_seed):
    order = tf.random.experimental.stateless_shuffle(tf.range(len(instructions)),
                                                     seed=file_seed)
    files = tf.data.Dataset.from_tensor_slices(
        (tf.gather(paths, order), tf.gather(skips, order), tf.gather(takes, order)))
    # deterministic=True even when the options allow otherwise: which examples an
    # epoch keeps must not depend on timing.
    records = files.interleave(read_file, cycle_length=min(16, len(instructions)),
                               block_length=16, num_parallel_calls=tf.data.AUTOTUNE,
                               deterministic=True)
    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

  return read_epoch


def _examples_per_epoch(total: int, global_batch_size: int, process_count: int,
                        steps_per_epoch: int | None) -> int:
  """Examples each process reads per epoch: steps_per_epoch local batches."""
  if steps_per_epoch is None:
    if total < 0:
      raise DatasetError("train_dataset needs steps_per_epoch, or a dataset of known "
                         "length (tf.data.experimental.assert_cardinality)")
    steps_per_epoch = total // global_batch_size
    if steps_per_epoch < 1:
      raise DatasetError(f"{total} training examples do not fill one batch of "
                         f"{global_batch_size}")
  if steps_per_epoch < 1:
    raise DatasetError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
  per_epoch = steps_per_epoch * (global_batch_size // process_count)
  if 0 <= total and total // process_count < per_epoch:
    raise DatasetError(f"{steps_per_epoch} steps per epoch need {per_epoch} examples "
                       f"per process, but the smallest of the {process_count} parts of "
                       f"{total} has {total // process_count}")
  return per_epoch


def _train_order(tf, read_epoch, *, examples_per_epoch: int, start: int, file_seed: int,
                 shuffle_seed: int, shuffle_buffer: int):
  """This process's training examples from position ``start`` of its stream on, as
  (index, (encoded, label)), index = the position.

  The stream is epochs 0, 1, ... of ``examples_per_epoch`` examples each. Epoch e
  is a pure function of (seeds, e): ``read_epoch`` with a file order seeded by (file
  seed, e), through a buffer seeded by (shuffle seed, e) (reshuffle_each_iteration
  does not apply: each epoch is its own dataset, read once), the first
  ``examples_per_epoch`` of it. So starting at ``start`` builds the epochs from
  ``start // examples_per_epoch`` on and drops the first ``start %
  examples_per_epoch`` examples of that one, rather than reading any earlier epoch.
  """
  n = examples_per_epoch
  start_epoch, skip = divmod(start, n)
  file_key = tf.constant([file_seed, 0], tf.int64)
  shuffle_key = tf.constant([shuffle_seed, 0], tf.int64)

  def epoch(e):
    examples = read_epoch(tf.random.experimental.stateless_fold_in(file_key, e))
    if shuffle_buffer > 1:
      # A scalar from the whole (seed, e) key (fold_in's first element ignores e).
      seed = tf.random.stateless_uniform(
          [], tf.random.experimental.stateless_fold_in(shuffle_key, e), minval=None,
          maxval=None, dtype=tf.int64)
      examples = examples.shuffle(shuffle_buffer, seed=seed,
                                  reshuffle_each_iteration=False)
    return tf.data.Dataset.zip((tf.data.Dataset.range(e * n, (e + 1) * n), examples))

  return tf.data.Dataset.counter(start_epoch).flat_map(epoch).skip(skip)


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
