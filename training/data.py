"""Where the trainer's batches come from: the accelerator's memory, or a host pipeline.

Both sources give the trainer the same three things: facts about the data (``info``),
``train(state, metrics, step, num_steps)`` and ``evaluate(state, eval_fn)``.

- ``DeviceSource``: the whole dataset is loaded once and kept on the accelerator;
  shuffling, batching and every augmentation run inside the compiled step, so the step
  never waits on the host. For everything that fits in memory (MNIST to CIFAR, and
  ImageNet-sized images only as a subset).
- ``HostSource``: TFDS through tf.data on the CPUs (``input_pipeline.host``): decode,
  random-resized crop, flip, RandAugment, this process's share of each batch, prefetched
  onto the mesh. For ImageNet. TensorFlow is imported only here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import ml_collections
from jax.sharding import Mesh

import input_pipeline
from training import config as config_lib
from training import parallel
from training import steps as steps_lib

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
  if name in ("digits", "synthetic") or name.startswith("npz:"):
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


class DeviceSource:
  """The dataset in accelerator memory; batches are sliced inside the compiled step."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh, data_rng: jax.Array):
    ds = input_pipeline.load_dataset(
        config.dataset, data_dir=config.data_dir, image_size=config.image_size,
        pad=config.pad,
        synthetic=config.synthetic.to_dict() if config.dataset == "synthetic" else None,
        download=config.download)
    if config.num_train_examples:
      ds = input_pipeline.train_subset(ds, config.num_train_examples)
    self.info = DataInfo(name=ds.name, image_shape=ds.image_shape, num_classes=ds.num_classes,
                         num_train=len(ds.train_labels), num_test=len(ds.test_labels),
                         flip=ds.flip, mean=tuple(ds.mean), std=tuple(ds.std))
    self.description = "device-resident"
    self._ds, self._mesh, self._config, self._data_rng = ds, mesh, config, data_rng
    self._perm, self._perm_epoch = None, None
    self.device_loop = config.device_loop

  def step_config_overrides(self) -> dict[str, Any]:
    return {}  # every augmentation runs in the step

  def compile(self, train_step: Callable, eval_steps: dict[str, Callable],
              state_sharding: Any) -> None:
    config, mesh = self._config, self._mesh
    replicated = parallel.replicated(mesh)
    self.steps_per_epoch = input_pipeline.steps_per_epoch(self.info.num_train,
                                                         config.batch_size)
    self._train_fn = jax.jit(
        steps_lib.device_train_loop(train_step, config.batch_size, self.steps_per_epoch),
        donate_argnums=(0, 1), static_argnums=(4,),
        out_shardings=(state_sharding, replicated))
    self._eval_fns = {
        k: jax.jit(steps_lib.device_eval_step(f, config.eval_batch_size),
                   donate_argnums=(1,), out_shardings=replicated)
        for k, f in eval_steps.items()}
    self._perm_fn = jax.jit(
        functools.partial(input_pipeline.epoch_permutation, num_examples=self.info.num_train),
        out_shardings=replicated)
    self._data = input_pipeline.put_on_mesh(self._ds, mesh)
    self._num_eval = input_pipeline.num_eval_batches(self.info.num_test,
                                                     config.eval_batch_size)

  def train(self, state, metrics, step: int, num_steps: int):
    epoch = step // self.steps_per_epoch
    if epoch != self._perm_epoch:
      self._perm, self._perm_epoch = self._perm_fn(self._data_rng, epoch), epoch
    return self._train_fn(state, metrics, self._data, self._perm, num_steps)

  def evaluate(self, state, which: str):
    acc = steps_lib.zero_metrics(steps_lib.EVAL_METRICS)
    for i in range(self._num_eval):
      acc = self._eval_fns[which](state, acc, self._data, i)
    return acc

  def close(self) -> None:
    pass


class HostSource:
  """TFDS through tf.data on the host; one global batch per step, prefetched onto the mesh.

  Every process reads its own share of the files and builds its rows of each global batch
  (``jax.make_array_from_process_local_data``). Evaluation is exact: the last batch is
  padded and masked, so every example counts once. A resumed run reshuffles from a seed
  that depends on the step it resumes at, rather than replaying the interrupted stream.
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
    self._host, self._config, self._mesh = host, config, mesh
    self._data_seed = int(jax.random.randint(data_rng, (), 0, 2**31 - 1))
    self._source = host.open_builder(config.dataset, data_dir=config.data_dir,
                                     download=config.download)
    s = self._source
    size = config.image_size
    self.info = DataInfo(name=config.dataset, image_shape=(size, size, s.channels),
                         num_classes=s.num_classes, num_train=s.num_train,
                         num_test=s.num_eval, flip=s.flip, mean=None, std=None)
    self.description = f"host pipeline (tf.data; eval split {s.eval_split!r})"
    self.device_loop = False
    self._iterator = None

  def step_config_overrides(self) -> dict[str, Any]:
    # Done per image on the host; erasing, Mixup / CutMix and normalisation stay on device.
    return dict(inception_crop=False, crop_padding=0, flip=False, rand_augment="",
                color_jitter=0.0, eval_crop_pct=0.0, image_size=0)

  def compile(self, train_step: Callable, eval_steps: dict[str, Callable],
              state_sharding: Any) -> None:
    config = self._config
    replicated = parallel.replicated(self._mesh)
    self.steps_per_epoch = input_pipeline.steps_per_epoch(self.info.num_train,
                                                         config.batch_size)
    self._train_fn = jax.jit(train_step, donate_argnums=(0, 1),
                             out_shardings=(state_sharding, replicated))
    self._eval_fns = {k: jax.jit(f, donate_argnums=(1,), out_shardings=replicated)
                      for k, f in eval_steps.items()}

  def _train_iterator(self, step: int):
    c, a = self._config, self._config.augment
    ds = self._host.train_dataset(
        self._source, global_batch_size=c.batch_size, image_size=c.image_size,
        seed=self._data_seed + step, scale=tuple(a.crop_scale), ratio=tuple(a.crop_ratio),
        flip=a.flip, rand_augment=a.rand_augment or None, color_jitter=a.color_jitter,
        resize_method=a.resize_method, shuffle_buffer=c.host.shuffle_buffer)
    return self._host.to_global(ds, self._mesh, prefetch=c.host.prefetch)

  def train(self, state, metrics, step: int, num_steps: int):
    if self._iterator is None:
      self._iterator = self._train_iterator(step)
    for _ in range(num_steps):
      batch = next(self._iterator)
      state, metrics = self._train_fn(state, metrics, batch["images"], batch["labels"])
    return state, metrics

  def evaluate(self, state, which: str):
    c, a = self._config, self._config.augment
    ds = self._host.eval_dataset(self._source, global_batch_size=c.eval_batch_size,
                                 image_size=c.image_size, crop_pct=a.eval_crop_pct or 0.875,
                                 resize_method=a.resize_method)
    acc = steps_lib.zero_metrics(steps_lib.EVAL_METRICS)
    for batch in self._host.to_global(ds, self._mesh, prefetch=c.host.prefetch):
      acc = self._eval_fns[which](state, acc, batch["images"], batch["labels"], batch["mask"])
    return acc

  def close(self) -> None:
    self._iterator = None


def open_source(config: ml_collections.ConfigDict, mesh: Mesh, data_rng: jax.Array):
  """The source ``config.input_pipeline`` asks for (``auto``: see ``wants_host_pipeline``)."""
  cls = HostSource if wants_host_pipeline(config) else DeviceSource
  return cls(config, mesh, data_rng)


def normalization_stats(config: ml_collections.ConfigDict,
                        info: DataInfo) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel mean and std that normalise the raw [0, 255] pixels.

  ``dataset`` uses the training images' own statistics; a streamed dataset has none
  measured, so it uses ImageNet's (3 channels) or 0.5 / 0.25.
  """
  channels = info.image_shape[-1]
  norm = config.normalization
  if norm == "dataset" and info.mean is not None:
    return tuple(info.mean), tuple(info.std)
  if norm == "symmetric":  # [-1, 1], LeCun's input range
    return (0.5,) * channels, (0.5,) * channels
  if norm == "imagenet" or (norm == "dataset" and channels == 3):
    if channels != 3:
      raise config_lib.ConfigError(f"normalization='imagenet' needs 3-channel images; "
                       f"{info.name} has {channels}")
    return IMAGENET_MEAN, IMAGENET_STD
  if norm == "dataset":
    return (0.5,) * channels, (0.25,) * channels
  return (0.0,) * channels, (1.0,) * channels  # "unit": [0, 1]
