"""Where the trainer's batches come from: the accelerator's memory, or a host pipeline.

Both sources give the trainer the same things: facts about the data (``info``, and
``kind``, which the data plan places its ops by), the un-compiled functions to
``jax.jit`` around its steps (``train_loop``, ``eval_loop``; train.py compiles them, in
one place), and ``train(train_fn, state, metrics, step, num_steps)`` /
``evaluate(eval_fn, state)`` that feed the compiled functions.

- ``DeviceSource``: the whole dataset is loaded once and kept on the accelerator;
  shuffling, batching and every augmentation run inside the compiled step, so the step
  never waits on the host. For everything that fits in memory (MNIST to CIFAR, and
  ImageNet-sized images only as a subset).
- ``HostSource``: TFDS through tf.data on the CPUs (``input_pipeline.host``): the plan's
  host ops (decode, the crop, flip), this process's share of each batch, prefetched onto
  the mesh; the rest of the plan runs in the step. For ImageNet. TensorFlow is imported
  only here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

import input_pipeline
from training import config as config_lib
from training import parallel
from training import steps as steps_lib

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# CIFAR-10's per-channel (RGB) mean and std, the constants airbench's loaders normalise
# with (airbench94_muon.py: CIFAR_MEAN, CIFAR_STD), whatever images they are given.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# The named per-channel constants of ``config.normalization``, for 3-channel images.
CHANNEL_STATS = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD),
                 "cifar10": (CIFAR10_MEAN, CIFAR10_STD)}


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """What the trainer needs to know about a dataset.

  Attributes:
    name: the dataset name it was opened by.
    image_shape: (H, W, C) of the images the model sees.
    num_classes: labels are in [0, num_classes).
    num_train: training examples (one epoch).
    num_test: evaluation examples.
    flip: whether a horizontal flip keeps the label.
    mean: per-channel mean of the training images in [0, 1] units (None: not measured).
    std: per-channel standard deviation, same units.
  """
  name: str
  image_shape: tuple[int, ...]
  num_classes: int
  num_train: int
  num_test: int
  flip: bool
  mean: tuple[float, ...] | None
  std: tuple[float, ...] | None


def wants_host_pipeline(config: ml_collections.ConfigDict) -> bool:
  """``input_pipeline``: device | host | auto (host for TFDS datasets whose images vary in
  size, such as imagenet2012 and imagenette, which need a decode-and-crop per image)."""
  if config.input_pipeline != "auto":
    return config.input_pipeline == "host"
  name = config.dataset
  if not input_pipeline.datasets.from_tfds(name):
    return False
  if config.data_dir is not None and not os.path.isdir(config.data_dir):
    return False  # the loader's error names the missing directory
  from input_pipeline import datasets  # pylint: disable=g-import-not-at-top
  _, tfds = datasets._import_tf()  # pylint: disable=protected-access
  try:
    builder = tfds.builder(name[len("tfds:"):] if name.startswith("tfds:") else name,
                           data_dir=config.data_dir)
    shape = tuple(builder.info.features["image"].shape)
  except Exception:  # pylint: disable=broad-except
    return False  # unknown name, no image feature, ...: the loader says what is wrong
  return None in shape[:2]


def load_in_memory(config: ml_collections.ConfigDict) -> input_pipeline.ArrayDataset:
  """The dataset as ``DeviceSource`` holds it: loaded, subset, background class added,
  grey repeated as RGB."""
  ds = input_pipeline.load_dataset(
      config.dataset, data_dir=config.data_dir, image_size=config.image_size,
      pad=config.pad,
      synthetic=config.synthetic.to_dict() if config.dataset == "synthetic" else None,
      download=config.download)
  if config.num_train_examples:
    ds = input_pipeline.train_subset(ds, config.num_train_examples)
  if config.get("background_class"):
    ds = input_pipeline.add_background_class(ds)
  if config.get("grey_to_rgb"):
    ds = input_pipeline.grey_to_rgb(ds)
  return ds


def fresh_metrics(names: tuple[str, ...], mesh: Mesh) -> dict[str, jax.Array]:
  """Zeroed sums (``steps.TRAIN_METRICS`` or ``EVAL_METRICS``), placed where the steps
  return them (replicated), so that a step's first call sees the same input shardings as
  the later ones: one program, not two."""
  return jax.device_put(steps_lib.zero_metrics(names), parallel.replicated(mesh))


class DeviceSource:
  """The dataset in accelerator memory; batches are sliced inside the compiled step."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh, data_rng: jax.Array):
    ds = load_in_memory(config)
    self.info = DataInfo(name=ds.name, image_shape=ds.image_shape, num_classes=ds.num_classes,
                         num_train=len(ds.train_labels), num_test=len(ds.test_labels),
                         flip=ds.flip, mean=tuple(ds.mean), std=tuple(ds.std))
    self.description = "device-resident"
    self._ds, self._mesh, self._config, self._data_rng = ds, mesh, config, data_rng
    self._perm, self._perm_epoch = None, None
    self._limit = parallel.DispatchLimit(mesh)
    self.device_loop = config.device_loop
    self.steps_per_epoch = input_pipeline.steps_per_epoch(self.info.num_train,
                                                         config.batch_size)

  kind = "device"

  def first_train_images(self, n: int) -> np.ndarray:
    """The first ``n`` training images as stored (uint8 NHWC, on the host)."""
    return np.asarray(self._ds.train_images[:n])

  def train_loop(self, train_step: Callable) -> Callable:
    """``(state, metrics, data, perm, num_steps, looped) -> (state, metrics)``; ``looped``
    (``num_steps > 1``) static."""
    return steps_lib.device_train_loop(train_step, self._config.batch_size,
                                       self.steps_per_epoch)

  train_static_argnums = (5,)

  def eval_loop(self, eval_step: Callable) -> Callable:
    return steps_lib.device_eval_step(eval_step, self._config.eval_batch_size)

  def start(self, plan, start_step: int) -> None:
    """Puts the data on the mesh; the plan runs entirely in the step."""
    del plan, start_step  # every op is a device op; the order is a function of the step
    self._perm_fn = jax.jit(
        functools.partial(input_pipeline.epoch_permutation, num_examples=self.info.num_train),
        out_shardings=parallel.replicated(self._mesh))
    self._data = input_pipeline.put_on_mesh(self._ds, self._mesh)
    self._num_eval = input_pipeline.num_eval_batches(self.info.num_test,
                                                     self._config.eval_batch_size)

  def train(self, train_fn: Callable, state, metrics, step: int, num_steps: int):
    epoch = step // self.steps_per_epoch
    if epoch != self._perm_epoch:
      self._perm, self._perm_epoch = self._perm_fn(self._data_rng, epoch), epoch
    return self._limit(train_fn(state, metrics, self._data, self._perm, np.int32(num_steps),
                                num_steps > 1))

  def evaluate(self, eval_fn: Callable, state):
    acc = fresh_metrics(steps_lib.EVAL_METRICS, self._mesh)
    for i in range(self._num_eval):
      acc = self._limit(eval_fn(state, acc, self._data, i))
    return acc

  def pass_start_loop(self, fn: Callable, num_examples: int) -> Callable:
    """``(state, data, perm) -> fn(state, images, labels)`` on the first ``num_examples``
    training examples of the pass's order (SDLM's curvature estimate, "on 500 samples
    before each training pass")."""
    def loop(state, data, perm):
      return fn(state, *input_pipeline.train_batch(
          data["train_images"], data["train_labels"], perm, 0, num_examples))
    return loop

  def pass_start(self, fn: Callable, state, epoch: int):
    """Runs a compiled ``pass_start_loop`` for ``epoch`` (before its first step)."""
    if epoch != self._perm_epoch:
      self._perm, self._perm_epoch = self._perm_fn(self._data_rng, epoch), epoch
    return fn(state, self._data, self._perm)

  def close(self) -> None:
    pass


class HostSource:
  """TFDS through tf.data on the host; one global batch per step, prefetched onto the mesh.

  Every process reads its own share of the files and builds its rows of each global batch
  (``jax.make_array_from_process_local_data``). Evaluation is exact: the last batch is
  padded and masked, so every example counts once. The order of the training stream is
  a function of (seed, epoch), so a resumed run sees exactly the batches an
  uninterrupted one would have seen next (with the same process count).
  """

  def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh, data_rng: jax.Array):
    from input_pipeline import host  # pylint: disable=g-import-not-at-top
    if config.num_train_examples:
      raise input_pipeline.DatasetError(
          "num_train_examples selects a subset of an in-memory dataset; with the host "
          "pipeline use a TFDS split slice instead, or --config.input_pipeline=device")
    if config.pad:
      raise input_pipeline.DatasetError("pad is not supported by the host pipeline; "
                                        "use --config.input_pipeline=device")
    if not config.image_size:
      raise input_pipeline.DatasetError(
          f"the host pipeline crops {config.dataset} to image_size; set "
          "--config.image_size (e.g. 224)")
    if config.device_loop:
      raise config_lib.ConfigError(
          f"{config_lib.DEVICE_LOOP_NEEDS_DEVICE_DATA}; the host pipeline streams "
          f"{config.dataset} (use --config.input_pipeline=device for a dataset that fits in "
          "memory)")
    self._host, self._config, self._mesh = host, config, mesh
    self._limit = parallel.DispatchLimit(mesh)
    self._data_seed = int(jax.random.randint(data_rng, (), 0, 2**31 - 1))
    self._source = host.open_builder(config.dataset, data_dir=config.data_dir,
                                     download=config.download)
    s = self._source
    size = config.image_size
    self.info = DataInfo(name=config.dataset, image_shape=(size, size, s.channels),
                         num_classes=s.num_classes, num_train=s.num_train,
                         num_test=s.num_eval, flip=s.flip, mean=None, std=None)
    self.description = f"host pipeline (tf.data; eval split {s.eval_split!r})"
    self.device_loop = False  # validate() and the check above: the config says so too
    self.steps_per_epoch = input_pipeline.steps_per_epoch(self.info.num_train,
                                                         config.batch_size)
    self._iterator, self._plan = None, None

  kind = "host"
  train_static_argnums = ()

  def train_loop(self, train_step: Callable) -> Callable:
    return train_step  # one step per global batch from the host

  def eval_loop(self, eval_step: Callable) -> Callable:
    return eval_step

  def start(self, plan, start_step: int) -> None:
    """Opens the training stream at ``start_step`` with the plan's host ops."""
    c = self._config
    self._plan = plan
    ds = self._host.train_dataset(
        self._source, global_batch_size=c.batch_size, image_size=c.image_size,
        seed=self._data_seed, start_step=start_step,
        steps_per_epoch=self.steps_per_epoch, ops=plan.train_host,
        shuffle_buffer=c.host.shuffle_buffer)
    self._iterator = self._host.to_global(ds, self._mesh, prefetch=c.host.prefetch)

  def train(self, train_fn: Callable, state, metrics, step: int, num_steps: int):
    for _ in range(num_steps):
      batch = next(self._iterator)
      state, metrics = self._limit(
          train_fn(state, metrics, batch["images"], batch["labels"]))
    return state, metrics

  def evaluate(self, eval_fn: Callable, state):
    c = self._config
    ds = self._host.eval_dataset(self._source, global_batch_size=c.eval_batch_size,
                                 ops=self._plan.eval_host)
    acc = fresh_metrics(steps_lib.EVAL_METRICS, self._mesh)
    for batch in self._host.to_global(ds, self._mesh, prefetch=c.host.prefetch):
      acc = self._limit(eval_fn(state, acc, batch["images"], batch["labels"], batch["mask"]))
    return acc

  def close(self) -> None:
    self._iterator = None


def open_source(config: ml_collections.ConfigDict, mesh: Mesh, data_rng: jax.Array):
  """The source ``config.input_pipeline`` asks for (``auto``: see ``wants_host_pipeline``)."""
  cls = HostSource if wants_host_pipeline(config) else DeviceSource
  return cls(config, mesh, data_rng)


# LeNet-5's input levels: background (raw 0) -> -0.1 and ink (raw 255) -> 1.175, i.e.
# (x / 255 - 0.078) / 0.784. The paper says this makes the mean roughly 0 and the
# variance roughly 1; on MNIST padded to 32 it gives mean 0.03 and std 0.35.
LENET5_MEAN = 0.1 / 1.275
LENET5_STD = 1.0 / 1.275


def normalization_stats(config: ml_collections.ConfigDict,
                        info: DataInfo) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel mean and std that normalise the raw [0, 255] pixels.

  ``dataset`` uses the training images' own statistics; a streamed dataset has none
  measured, so it uses ImageNet's (3 channels) or 0.5 / 0.25. ``imagenet`` and
  ``cifar10`` are those datasets' per-channel constants, for 3-channel images: what
  pretrained weights expect, and what airbench normalises any input with. On grey images
  repeated as RGB (``grey_to_rgb``) the per-channel constants keep the channels apart:
  they differ by an affine map instead of being equal (benchmarks/README.md, "The
  anchor's three repeated channels").
  """
  channels = info.image_shape[-1]
  norm = config.normalization
  if norm == "dataset" and info.mean is not None:
    return tuple(info.mean), tuple(info.std)
  if norm == "symmetric":  # [-1, 1], LeCun's input range
    return (0.5,) * channels, (0.5,) * channels
  if norm == "lenet5":  # background -0.1, ink 1.175 (LeCun et al. 1998, Sec. III.A)
    return (LENET5_MEAN,) * channels, (LENET5_STD,) * channels
  if norm in CHANNEL_STATS or (norm == "dataset" and channels == 3):
    if channels != 3:
      raise config_lib.ConfigError(
          f"normalization={norm!r} needs 3-channel images; {info.name} has {channels} "
          f"(--config.grey_to_rgb=true repeats a grey channel as three)")
    return CHANNEL_STATS.get(norm, CHANNEL_STATS["imagenet"])  # streamed RGB: ImageNet's
  if norm == "dataset":
    return (0.5,) * channels, (0.25,) * channels
  return (0.0,) * channels, (1.0,) * channels  # "unit": [0, 1]
