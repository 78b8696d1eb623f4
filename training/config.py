"""Config files and ``--config.key=value`` overrides, with one-line errors.

A config file is a Python file with ``get_config(arg=None)`` returning an
``ml_collections.ConfigDict``. ``path.py:arg`` passes ``arg`` (a string such as
``"tiny"`` or ``"res=128,tiny"``) to ``get_config``, so variants are a word on the
command line, not new files (the big_vision convention).

Overrides are parsed against the type of the field they replace: an ``int`` field takes
``3`` but not ``1.5``, a ``float`` takes ``3`` or ``3e-4``, a ``bool`` takes
``true/false/1/0``, a tuple takes ``2,3`` or ``(2, 3)``. An unknown key or a value of
the wrong type is a :class:`ConfigError` naming the key and the fix.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import inspect
import json
import math
import os
from typing import Any, Sequence

import ml_collections


FREE_FORM = "model_kwargs"  # a group that accepts new keys from the command line


class ConfigError(ValueError):
  """A bad config file, key or value. The message is one line for the user."""


def load_config(spec: str) -> ml_collections.ConfigDict:
  """Loads ``path.py`` or ``path.py:arg`` and returns ``get_config([arg])``."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"config file not found: {path!r}. "
                      "Pass a file from configs/, e.g. --config configs/lenet1989.py")
  module_spec = importlib.util.spec_from_file_location("_config_module", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"config file {path!r} cannot be loaded: {type(e).__name__}: "
                      f"{_first_line(e)}. Fix the file, or pass another one") from None
  get_config = getattr(module, "get_config", None)
  if get_config is None:
    raise ConfigError(f"config file {path!r} defines no get_config()")
  takes_arg = bool(inspect.signature(get_config).parameters)
  if arg and not takes_arg:
    raise ConfigError(f"config file {path!r} takes no argument, got {arg!r}")
  try:
    config = get_config(arg or None) if takes_arg else get_config()
  except ValueError as e:  # ConfigError from common.parse_arg, or the config's own check
    raise ConfigError(f"{spec}: {e}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"get_config() in {path!r} must return an ml_collections.ConfigDict")
  return config


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[tuple[str, str]]) -> ml_collections.ConfigDict:
  """Applies ``(dotted.key, raw_value)`` pairs in place and returns the config."""
  previous = {}  # each augment field's value before its first override
  for key, raw in overrides:
    if key.startswith(FREE_FORM + ".") and key.count(".") == 1:
      # Model fields are checked by the model itself (create_model names the valid ones).
      leaf = key.split(".", 1)[1]
      if leaf not in config[FREE_FORM]:
        with config[FREE_FORM].unlocked():
          config[FREE_FORM][leaf] = _parse(key, raw, None, None)
        continue
    parent, leaf = _resolve(config, key)
    current = parent[leaf]
    if key.startswith("augment."):
      previous.setdefault(key, current)
    field_type = _field_type(parent, leaf)
    value = _parse(key, raw, current, field_type)
    try:
      parent[leaf] = value
    except (TypeError, ValueError) as e:
      raise ConfigError(f"cannot set config.{key} to {raw!r}: {e}") from None
  _check_overrides_are_read(config, [key for key, _ in overrides])
  _check_data_overrides_are_read(config, [key for key, _ in overrides])
  _check_augment_overrides_are_read(config, previous)
  if any(key == "aux_loss_weight" for key, _ in overrides):
    _check_aux_loss_weight_is_read(config)
  return config


def _check_aux_loss_weight_is_read(config: ml_collections.ConfigDict) -> None:
  """``aux_loss_weight`` weights the losses of auxiliary classifiers, which only a model
  with an ``aux_logits`` field set (GoogLeNet's, ``models/inception.py``) has: an override
  on any other model changes nothing, and is an error. An override to 0 asks for nothing
  and passes; an unknown model or field is left to ``check``'s own message."""
  if config.aux_loss_weight == 0:
    return
  import models  # pylint: disable=g-import-not-at-top  (heavy: only for this override)
  try:  # the module's fields only: nothing is initialised, so any class count will do
    model = models.create_model(config.model, num_classes=2,
                                **config.model_kwargs.to_dict())
  except (models.UnknownModelError, TypeError, ValueError):  # check() says which
    return
  if getattr(model, "aux_logits", False):
    return
  why = ("has model_kwargs.aux_logits=False. Drop the override, or set "
         "--config.model_kwargs.aux_logits=true" if hasattr(model, "aux_logits")
         else "has no auxiliary classifiers (GoogLeNet has). Drop the override")
  raise ConfigError(f"config.aux_loss_weight={config.aux_loss_weight!r} is not read: model "
                    f"{config.model!r} {why}")


# Fields that only some optimizers, schedules or datasets read: (the field that picks,
# the values that read it). training/optim.py is where the optimizers' and schedules'
# are read (tests/test_config.py checks this table against it).
READ_ONLY_BY = {
    "momentum": ("optimizer", ("sgd", "rmsprop", "muon")),  # muon: its SGD for the rest
    "nesterov": ("optimizer", ("sgd", "muon")),
    "b1": ("optimizer", ("adam", "adamw", "lamb")),
    "b2": ("optimizer", ("adam", "adamw", "lamb")),
    "eps": ("optimizer", ("adam", "adamw", "lamb", "rmsprop")),
    "rms_decay": ("optimizer", ("rmsprop",)),
    "decay_epochs": ("schedule", ("step",)),
    "decay_factor": ("schedule", ("step",)),
    "decay_factors": ("schedule", ("step",)),
    "min_learning_rate": ("schedule", ("cosine", "linear")),
    **{f"synthetic.{k}": ("dataset", ("synthetic",))
       for k in ("shape", "num_classes", "num_train", "num_test", "seed")},
}


def _check_overrides_are_read(config: ml_collections.ConfigDict, keys: Sequence[str]) -> None:
  """An override of a field that this run's optimizer, schedule or dataset does not read
  would change nothing, silently: it is an error. A config file may leave such fields
  set for a variant it switched away from, so only overrides are checked; and an
  override that empties a field (``--config.decay_epochs=()`` under a cosine schedule,
  clearing what the recipe it came from set) asks for nothing to be read."""
  for key in keys:
    if key not in READ_ONLY_BY:
      continue
    picker, readers = READ_ONLY_BY[key]
    parent, leaf = _resolve(config, key)
    if config[picker] in readers or parent[leaf] == ():
      continue
    raise ConfigError(
        f"config.{key}={parent[leaf]!r} is not read when {picker}={config[picker]!r}; it "
        f"applies to {picker} {', '.join(readers)}. Drop the override, or set "
        f"--config.{picker} to one of those")


def _check_data_overrides_are_read(config: ml_collections.ConfigDict,
                                   keys: Sequence[str]) -> None:
  """Overrides that the run's data or its weights' average would not read: ``data_dir``
  and ``download`` for a dataset that TFDS does not load (digits, synthetic, an npz
  file), ``host.*`` for a run whose dataset is kept on the device, ``ema_warmup`` with
  no moving average (``device_loop`` on the host pipeline: ``validate``). An override
  to False, None or "" asks for nothing and passes."""
  from input_pipeline import datasets  # pylint: disable=g-import-not-at-top
  name = config.dataset
  from_tfds = datasets.from_tfds(name)
  # "auto" on a dataset the table does not know is decided from the data: not here.
  known = not from_tfds or name.removeprefix("tfds:").split("/")[0] in DATASET_SHAPES
  source = expected_source(config) if known or config.input_pipeline != "auto" else None
  on_device = source == "device"
  for key in dict.fromkeys(keys):
    parent, leaf = _resolve(config, key)
    value = parent[leaf]
    if value in (False, None, ""):
      continue
    if key in ("data_dir", "download") and not from_tfds:
      why = (f"dataset {name!r} is not loaded by TFDS (data_dir and download are TFDS's)."
             " Drop the override")
    elif key.startswith("host.") and on_device:
      why = (f"this run keeps {name!r} on the device, and only the host pipeline reads "
             "host.*. Drop the override, or set --config.input_pipeline=host")
    elif key == "ema_warmup" and not config.ema_decay:
      why = ("ema_decay=0 keeps no moving average. Drop the override, or set "
             "--config.ema_decay")
    else:
      continue
    raise ConfigError(f"config.{key}={value!r} is not read: {why}")


def _check_augment_overrides_are_read(config: ml_collections.ConfigDict,
                                      previous: dict[str, Any]) -> None:
  """An augment override that leaves the run's planned data ops as they were with the
  field's earlier value (``input_pipeline.recipe.plan``, which reads every augment
  field) changes nothing: e.g. ``crop_scale`` without ``inception_crop``, ``mixup_prob``
  without Mixup or CutMix, ``distort_shear`` with ``distort_prob=0``. It is an error.
  Where the recipe or the data cannot be planned yet, validate() and check() say why."""
  from input_pipeline import recipe  # pylint: disable=g-import-not-at-top

  def ops(c):
    p = data_plan(c, *data_shape(c), dense_eval=True)
    return p.train_host, p.train_device, p.eval_host, p.eval_device

  planned = None  # the run's ops, planned once
  for key, before in previous.items():
    parent, leaf = _resolve(config, key)
    after = parent[leaf]
    if after == before:
      continue
    try:
      planned = planned or ops(config)
      parent[leaf] = before
      try:
        unchanged = ops(config) == planned
      finally:
        parent[leaf] = after
    except (ConfigError, recipe.RecipeError, ValueError, TypeError, KeyError):
      continue
    if unchanged:
      raise ConfigError(
          f"config.{key}={after!r} changes nothing in this run's data augmentation (its "
          f"planned ops are the same as with {before!r}, given the other augment "
          "fields); drop the override, or also turn on what reads it")


def _resolve(config: ml_collections.ConfigDict, key: str):
  parts = key.split(".")
  node = config
  for depth, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      here = ".".join(parts[:depth])
      options = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      close = difflib.get_close_matches(part, options, n=3)
      hint = f" Did you mean {', '.join(close)}?" if close else ""
      where = f"config.{here}" if here else "the config"
      raise ConfigError(f"unknown config key {key!r}: {where} has no field {part!r}.{hint} "
                        f"Valid fields: {', '.join(sorted(options))}")
    if depth < len(parts) - 1:
      node = node[part]
  return node, parts[-1]


def _field_type(parent: ml_collections.ConfigDict, leaf: str) -> type | None:
  """The declared type of a field; placeholders (``None`` values) keep theirs."""
  ref = parent.get_ref(leaf)
  field_type = ref.get_type()
  if field_type is type(None):
    return None
  return field_type


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse(key: str, raw: str, current: Any, field_type: type | None) -> Any:
  """Turns the command-line string into a value of the field's type."""
  def bad(expected: str) -> ConfigError:
    return ConfigError(f"config.{key} is {expected}; got {raw!r}. "
                       f"Example: --config.{key}={_example(current, field_type)}")

  if raw.lower() in ("none", "null") and (current is None or field_type is not None):
    return None
  if field_type is bool:
    if raw.lower() in _TRUE:
      return True
    if raw.lower() in _FALSE:
      return False
    raise bad("a bool (true/false)")
  if field_type is int:
    try:
      return int(raw)
    except ValueError:
      raise bad("an int") from None
  if field_type is float:
    try:
      return float(raw)
    except ValueError:
      raise bad("a float") from None
  if field_type is str:
    return raw
  if field_type in (tuple, list):
    text = raw if raw.strip().startswith(("(", "[")) else f"({raw},)"
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise bad(f"a {field_type.__name__} such as 1,2,3") from None
    return field_type(value)
  if isinstance(current, ml_collections.ConfigDict):
    raise ConfigError(f"config.{key} is a group of fields ({', '.join(sorted(current))}); "
                      f"override one of them, e.g. --config.{key}.{sorted(current)[0]}=...")
  # Untyped placeholder (a new model_kwargs field): true/false as for a typed bool (the
  # model checks the field's type), else a Python literal when it is one, else the string.
  if raw.lower() in ("true", "false"):
    return raw.lower() == "true"
  try:
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return raw


def _example(current: Any, field_type: type | None) -> str:
  if current is not None:
    return str(current).replace(" ", "")
  return {bool: "true", int: "1", float: "0.1", str: "name"}.get(field_type, "value")


def split_override_args(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Separates ``--config.key=value`` / ``--config.key value`` from the other args."""
  rest, overrides = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config."):
      body = arg[len("--config."):]
      if "=" in body:
        key, value = body.split("=", 1)
      elif i + 1 < len(argv):
        key, value = body, argv[i + 1]
        i += 1
      else:
        raise ConfigError(f"{arg} needs a value: {arg}=VALUE")
      overrides.append((key, value))
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


CHOICES = {
    "dtype": ("float32", "bfloat16"),
    "conv_backend": ("xla", "onednn"),
    "normalization": ("dataset", "symmetric", "unit", "imagenet", "cifar10", "lenet5"),
    "loss": ("cross_entropy", "mse"),
    "optimizer": ("sgd", "adam", "adamw", "lamb", "rmsprop", "sdlm", "muon"),
    "schedule": ("constant", "step", "cosine", "linear"),
    "batchnorm_stats": ("global", "per_device"),
    "input_pipeline": ("auto", "device", "host"),
    "sdlm.curvature": ("loss", "rbf_mle"),
}
POSITIVE = ("mesh.fsdp", "num_epochs", "batch_size", "eval_batch_size", "eval_every_epochs",
            "checkpoint_every_epochs", "keep_checkpoints", "grad_accum_steps",
            "host.shuffle_buffer", "host.prefetch", "sdlm.mu", "sdlm.num_samples",
            "muon.learning_rate", "muon.ns_steps", "decay_factor", "synthetic.num_train",
            "synthetic.num_test", "synthetic.num_classes")
NON_NEGATIVE = ("learning_rate", "weight_decay", "label_smoothing", "warmup_epochs", "pad",
                "log_every_steps", "stop_after_steps", "checkpoint_every_minutes",
                "min_learning_rate", "num_train_examples", "aux_loss_weight", "grad_clip_norm",
                "lr_base_batch_size", "muon.weight_decay", "data_init_images", "momentum",
                "eps")
PROBABILITIES = ("layer_decay", "rms_decay")  # in [0, 1]
# in [0, 1): PyTorch's betas; an EMA decay of 1 would keep the initial weights
BELOW_ONE = ("label_smoothing", "b1", "b2", "muon.beta", "ema_decay")


# What device_loop needs; validate() and the host pipeline (train.py's ``auto`` choice
# for a dataset the config alone cannot place) raise it.
DEVICE_LOOP_NEEDS_DEVICE_DATA = (
    "config.device_loop=True runs a log interval's steps in one call over batches held "
    "on the device (--config.device_loop=False runs one step per call)")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks choices and ranges; raises ConfigError naming the field and the fix."""
  def get(key):
    node = config
    for part in key.split("."):
      node = node[part]
    return node

  for key, value in flatten(config).items():
    if isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f"config.{key}={value} is not a finite number; give a real value")

  for key, options in CHOICES.items():
    if get(key) not in options:
      raise ConfigError(f"config.{key}={get(key)!r} is not one of {', '.join(options)}")
  for key in POSITIVE:
    if get(key) <= 0:
      raise ConfigError(f"config.{key} must be positive, got {get(key)}")
  for key in NON_NEGATIVE:
    if get(key) < 0:
      raise ConfigError(f"config.{key} must be >= 0, got {get(key)}")
  if config.warmup_epochs and config.warmup_epochs >= config.num_epochs:
    # The schedule would end inside its warm-up (training/optim.create_schedule): the
    # rate never reaches learning_rate and the decay after it never runs.
    raise ConfigError(f"config.warmup_epochs={config.warmup_epochs} is not shorter than "
                      f"num_epochs={config.num_epochs}: the rate would never leave its "
                      "warm-up. Lower --config.warmup_epochs or raise --config.num_epochs")
  for key in PROBABILITIES:
    if not 0 <= get(key) <= 1:
      raise ConfigError(f"config.{key} must be in [0, 1], got {get(key)}")
  for key in BELOW_ONE:
    if not 0 <= get(key) < 1:
      raise ConfigError(f"config.{key} must be in [0, 1), got {get(key)}")
  # The augmentation recipe checks its own fields and their combinations.
  from input_pipeline import recipe  # pylint: disable=g-import-not-at-top
  try:
    augment = recipe.Recipe.from_config(config.augment)
  except recipe.RecipeError as e:
    raise ConfigError(str(e)) from None
  if config.batch_size % config.grad_accum_steps:
    raise ConfigError(f"config.batch_size={config.batch_size} does not split into "
                      f"grad_accum_steps={config.grad_accum_steps} equal micro-batches")
  if augment.mixing and config.loss != "cross_entropy":
    raise ConfigError("Mixup / CutMix make soft targets, which need loss=cross_entropy")
  if config.loss == "mse" and config.label_smoothing:
    raise ConfigError("config.label_smoothing only applies to loss=cross_entropy")
  if config.get("map_j") is not None and config.loss != "cross_entropy":
    raise ConfigError(f"config.map_j is a term of the cross-entropy, but loss={config.loss}; "
                      "use --config.loss=cross_entropy or --config.map_j=None")
  in_memory = {"config.background_class adds examples to a dataset held in memory":
                   config.get("background_class"),
               "config.grey_to_rgb repeats the channel of a dataset held in memory":
                   config.get("grey_to_rgb"),
               "optimizer=sdlm estimates its curvature on training images held on the "
               "device": config.optimizer == "sdlm",
               "config.data_init_images initialises the model from training images held "
               "in memory": config.data_init_images,
               DEVICE_LOOP_NEEDS_DEVICE_DATA: config.device_loop}
  for what in (w for w, wanted in in_memory.items() if wanted):
    if expected_source(config) == "host":
      raise ConfigError(f"{what}; this run streams them through the host pipeline (use "
                        "--config.input_pipeline=device for a dataset that fits in memory)")
  if config.conv_backend == "onednn":
    if config.dtype != "float32":
      raise ConfigError(f"config.conv_backend='onednn' runs float32 convolutions, and "
                        f"dtype={config.dtype}; use --config.dtype=float32 or "
                        "--config.conv_backend=xla")
    if config.optimizer == "sdlm":
      raise ConfigError("config.conv_backend='onednn' with optimizer=sdlm: SDLM's "
                        "curvature follows XLA's convolutions through the network; use "
                        "--config.conv_backend=xla")
  profile = tuple(config.get("profile_steps", ()) or ())
  if profile and (len(profile) != 2 or not all(isinstance(v, int) for v in profile)
                  or not 0 <= profile[0] < profile[1]):
    raise ConfigError(f"config.profile_steps={profile} must be two step numbers a < b "
                      "(e.g. --config.profile_steps=10,20), or () for no trace")
  from training import optim  # pylint: disable=g-import-not-at-top
  try:
    optim.decay_factors(config)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  for group in ("sdlm", "muon"):  # an optimizer's own fields, set for another optimizer
    if config.optimizer != group and group in config:
      from configs import common  # pylint: disable=g-import-not-at-top
      default = common.base()[group].to_dict()
      changed = sorted(k for k, v in config[group].to_dict().items() if default.get(k) != v)
      if changed:
        raise ConfigError(f"config.{group}.{changed[0]} is set but optimizer="
                          f"{config.optimizer}; it applies only to --config.optimizer={group}")
  if config.optimizer == "muon" and not config.learning_rate:
    # The filters' rate is the schedule scaled to muon.learning_rate at its peak: a peak
    # of 0 leaves no schedule to follow.
    raise ConfigError("config.learning_rate=0 with optimizer=muon: the filters' rate "
                      "follows the schedule scaled to its peak, and a zero peak has no "
                      "shape; give learning_rate > 0 (the other parameters' rate)")
  if (config.optimizer == "sdlm" and config.sdlm.curvature == "rbf_mle"
      and config.model != "lenet5"):
    raise ConfigError(f"config.sdlm.curvature='rbf_mle' is the curvature of LeNet-5's RBF "
                      f"output; model={config.model} has none. Use sdlm.curvature='loss'")
  if (config.schedule in ("cosine", "linear")
      and config.min_learning_rate > optim.peak_learning_rate(config)):
    raise ConfigError(
        f"config.min_learning_rate={config.min_learning_rate} is above the peak rate "
        f"{optim.peak_learning_rate(config):g}: the {config.schedule} schedule would rise, "
        "not decay. Lower --config.min_learning_rate or raise --config.learning_rate")


# ------------------------------------------------------------------------------- check

# What the model check needs to know of a dataset without opening it: (native side or
# None when the images vary in size, channels, classes). Keyed like
# input_pipeline.KNOWN_DATASETS (TFDS base name; npz files by their file stem).
DATASET_SHAPES: dict[str, tuple[int | None, int, int]] = {
    "digits": (16, 1, 10),  # scikit-learn's 8x8 digits, loaded at 16x16
    "usps": (16, 1, 10),
    "mnist16": (16, 1, 10),  # mnist16:<path to mnist.npz>
    "mnist": (28, 1, 10),
    "fashion_mnist": (28, 1, 10),
    "kmnist": (28, 1, 10),
    "emnist": (28, 1, 62),  # emnist/byclass, TFDS's default; other configs below
    "svhn_cropped": (32, 3, 10),
    "cifar10": (32, 3, 10),
    "cifar100": (32, 3, 100),
    "stl10": (96, 3, 10),
    "imagenette": (None, 3, 10),
    "imagenet2012": (None, 3, 1000),
}
_EMNIST_CLASSES = {"byclass": 62, "bymerge": 47, "balanced": 47, "letters": 37, "digits": 10,
                   "mnist": 10}
# A dataset not in the table (and not a readable npz file): 3 channels, 10 classes, the
# config's image_size or else this side. The check still traces the model; train.py reads
# the real figures from the data.
_FALLBACK_SHAPE = (32, 3, 10)


@dataclasses.dataclass(frozen=True)
class Checked:
  """A config that loads, validates and builds its model, and what the check found.

  Attributes:
    config: the loaded, overridden and validated config.
    model: the Flax module, as train.py creates it (``config.dtype`` compute dtype).
    num_params: parameters of a fresh init (``params`` only, no BatchNorm statistics).
    image_shape: (H, W, C) the model sees, from the config (``data_shape``).
    num_classes: the model's outputs, from the config (``data_shape``).
    abstract_state: the initial ``training.steps.TrainState`` as
      ``jax.ShapeDtypeStruct`` leaves (traced with ``jax.eval_shape``, never run).
  """
  config: ml_collections.ConfigDict
  model: Any
  num_params: int
  image_shape: tuple[int, int, int]
  num_classes: int
  abstract_state: Any
  plan: Any = None


def expected_source(config: ml_collections.ConfigDict) -> str:
  """The input path a run of ``config`` takes, from the config alone: ``host`` when it
  says so, or (``auto``) for datasets whose images vary in size; else ``device``."""
  if config.input_pipeline != "auto":
    return config.input_pipeline
  name = config.dataset
  key = (name[len("tfds:"):] if name.startswith("tfds:") else name).split("/")[0]
  known = DATASET_SHAPES.get(key.split(":")[0])
  return "host" if known is not None and known[0] is None else "device"


def data_shape(config: ml_collections.ConfigDict) -> tuple[tuple[int, int, int], int]:
  """``((H, W, C), num_classes)`` of ``config.dataset`` as train.py will feed it, read
  from the config alone (ImageNet need not be present).

  ``synthetic``: ``config.synthetic``. Otherwise the side is ``config.image_size``, else
  the dataset's native size, plus ``2 * config.pad``; channels and classes come from
  ``DATASET_SHAPES`` (TFDS base name, or an npz file's stem), or, for an npz file not in
  it, from the file's ``x_train`` header and labels; else 3 channels and 10 classes (and
  a side of 32 without image_size). A dataset of variable-size images (imagenet2012,
  imagenette) without image_size is a ConfigError, as it is for train.py. With
  ``grey_to_rgb`` a one-channel dataset has 3 channels (any other is a ConfigError).
  """
  shape, num_classes = _stored_shape(config)
  if config.get("grey_to_rgb"):
    if shape[-1] != 1:
      raise ConfigError(f"config.grey_to_rgb repeats one grey channel as three, and "
                        f"{config.dataset} has {shape[-1]} channels; drop grey_to_rgb")
    shape = (*shape[:2], 3)
  return shape, num_classes


def _stored_shape(config: ml_collections.ConfigDict) -> tuple[tuple[int, int, int], int]:
  """``data_shape`` before ``grey_to_rgb``."""
  name = config.dataset
  if name == "synthetic":
    shape = tuple(int(s) for s in config.synthetic.shape)
    if len(shape) != 3:
      raise ConfigError(f"config.synthetic.shape must be (H, W, C), got {shape}")
    return shape, int(config.synthetic.num_classes) + bool(config.get("background_class"))
  if name.startswith("npz:"):
    key = os.path.splitext(os.path.basename(name[4:]))[0]
    facts = DATASET_SHAPES.get(key) or _npz_shape(name[4:]) or _FALLBACK_SHAPE
  else:
    tfds_name = name[len("tfds:"):] if name.startswith("tfds:") else name
    key, _, variant = tfds_name.partition("/")
    key = key.split(":")[0]
    facts = DATASET_SHAPES.get(key, _FALLBACK_SHAPE)
    if key == "emnist" and variant:
      facts = (*facts[:2], _EMNIST_CLASSES.get(variant.split(":")[0], facts[2]))
  native, channels, num_classes = facts
  side = config.image_size or native
  if not side:
    raise ConfigError(f"{name} has images of varying size: set --config.image_size "
                      "(e.g. 224)")
  side += 2 * config.pad
  return (side, side, channels), num_classes + bool(config.get("background_class"))


def _npz_shape(path: str) -> tuple[int, int, int] | None:
  """(side, channels, classes) from an npz file's x_train header and its labels, or None
  when the file cannot be read. Only the labels are decompressed, not the images."""
  import zipfile  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  try:
    with zipfile.ZipFile(path) as z, z.open("x_train.npy") as f:
      read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                     (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(f)]
      shape, _, _ = read_header(f)
    with np.load(path) as arrays:
      # Labels may be uint8: widen before the -1 start, which uint8 cannot hold.
      num_classes = int(max(arrays["y_train"].astype(np.int64).max(initial=-1),
                            arrays["y_test"].astype(np.int64).max(initial=-1))) + 1
  except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
    return None
  if len(shape) not in (3, 4) or shape[1] != shape[2]:
    return None
  return shape[1], (shape[3] if len(shape) == 4 else 1), num_classes


def check(config: str | ml_collections.ConfigDict,
          overrides: Sequence[tuple[str, str]] = ()) -> Checked:
  """The one config check of train.py, launch/sweep.py's pre-flight and the tests.

  Loads ``config`` (a ``path.py[:arg]`` spec; a ConfigDict is used as is and changed in
  place), applies the ``(dotted.key, raw_value)`` overrides, validates, builds the model
  (``models.create_model``) for the config's input (``data_shape``) and traces the
  initial train state (``training.steps.init_state`` with the config's optimizer) with
  ``jax.eval_shape``: nothing is compiled or run, and the dataset is not opened. Any
  problem is a one-line ConfigError.
  """
  import jax  # pylint: disable=g-import-not-at-top  (heavy: only when checking)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import kernels  # pylint: disable=g-import-not-at-top
  import models  # pylint: disable=g-import-not-at-top
  from training import optim  # pylint: disable=g-import-not-at-top
  from training import steps  # pylint: disable=g-import-not-at-top

  if isinstance(config, str):
    config = load_config(config)
  apply_overrides(config, overrides)
  validate(config)
  image_shape, num_classes = data_shape(config)
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.dtype]
  try:
    model = models.create_model(config.model, num_classes=num_classes, dtype=dtype,
                                **config.model_kwargs.to_dict())
  except models.UnknownModelError as e:
    raise ConfigError(f"config.model: {e}") from None
  except (TypeError, ValueError) as e:  # a field the model lacks, or a bad value
    raise ConfigError(f"config.model_kwargs: {_first_line(e)}") from None
  # The schedule's values do not matter here (the optimizer state only counts steps);
  # one step per epoch stands in for the dataset's size.
  try:
    tx = optim.create_optimizer(config, optim.create_schedule(config, steps_per_epoch=1))
  except optim.LayerDecayError as e:
    raise ConfigError(f"config.layer_decay: {e}") from None
  except optim.ParameterSpecError as e:
    raise ConfigError(str(e)) from None
  if config.data_init_images and models.data_init(config.model) is None:
    raise ConfigError(f"config.data_init_images={config.data_init_images}: model "
                      f"{config.model!r} has no data-dependent init; set it to 0")
  init = steps.state_initializer(model, tx, image_shape, config)
  try:
    with kernels.conv_backend(config.conv_backend):  # a convolution it cannot run: here
      abstract = jax.eval_shape(lambda: init(jax.random.key(0)))
  except kernels.KernelError as e:
    raise ConfigError(str(e)) from None
  except optim.LayerDecayError as e:
    raise ConfigError(f"config.layer_decay: {e}") from None
  except optim.ParameterSpecError as e:  # an entry that names no parameter
    raise ConfigError(str(e)) from None
  except getattr(models, "ModelOptionError", ()) as e:  # options checked in setup()
    raise ConfigError(f"config.model_kwargs: {_first_line(e)}") from None
  except (TypeError, ValueError) as e:  # e.g. an input too small for the network
    raise ConfigError(f"config.model={config.model} cannot initialise on "
                      f"{image_shape} inputs: {type(e).__name__}: {_first_line(e)}") from e
  num_params = sum(x.size for x in jax.tree.leaves(abstract.params))
  # The data plan on the path the run will take.
  from input_pipeline import recipe  # pylint: disable=g-import-not-at-top
  try:
    plan = data_plan(config, image_shape, num_classes, dense_eval=hasattr(model, "dense"))
  except recipe.RecipeError as e:
    raise ConfigError(str(e)) from None
  return Checked(config=config, model=model, num_params=int(num_params),
                 image_shape=tuple(image_shape), num_classes=num_classes,
                 abstract_state=abstract, plan=plan)


def data_plan(config: ml_collections.ConfigDict, image_shape: Sequence[int],
              num_classes: int, dense_eval: bool):
  """The config's data plan (``input_pipeline.recipe.plan``) on the path the run will
  take, for images of ``image_shape``. Normalisation statistics stand in: they do not
  change where an op runs."""
  from input_pipeline import recipe  # pylint: disable=g-import-not-at-top
  channels = image_shape[-1]
  return recipe.plan(recipe.Recipe.from_config(config.augment),
                     source=expected_source(config), image_size=image_shape[0],
                     channels=channels, stored_size=image_shape[0],
                     mean=(0.5,) * channels, std=(0.25,) * channels,
                     num_classes=num_classes, label_smoothing=config.label_smoothing,
                     dense_eval=dense_eval)


def _first_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  return lines[0] if lines else type(e).__name__


# ------------------------------------------------------------------ one experiment per workdir

# Fields that do not change what a run computes: where and how often it logs, evaluates
# and saves, when this segment stops, how the work is spread, where the data is read
# from, which library runs the convolutions (equal at float32 rounding). Everything else (model, data, batch, schedule, optimizer, augmentation, seed...)
# makes another experiment.
NOT_THE_EXPERIMENT = (
    "log_every_steps", "eval_every_epochs", "checkpoint_every_epochs",
    "checkpoint_every_minutes", "keep_checkpoints",
    "stop_after_steps", "device_loop", "allow_config_change", "data_dir", "download",
    "profile_steps",
    "host.prefetch", "eval_batch_size", "mesh.fsdp", "init_from", "conv_backend",
)


def flatten(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict[str, Any]:
  """``{"augment.flip": True, ...}``: every leaf under its dotted key."""
  out = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(flatten(value, name + "."))
    else:
      out[name] = value
  return out


def experiment_changes(recorded: dict[str, Any], config: ml_collections.ConfigDict | dict
                       ) -> list[tuple[str, Any, Any]]:
  """``(key, recorded value, new value)`` for each field of the experiment that differs
  between a workdir's ``config.json`` and ``config`` (``NOT_THE_EXPERIMENT`` aside).
  Fields only one side has (a config.json written before a field existed) are not
  compared."""
  old = flatten(recorded)
  if isinstance(config, ml_collections.ConfigDict):
    config = json.loads(config.to_json_best_effort())
  new = flatten(config)
  changes = []
  for key in sorted(set(old) & set(new)):
    if key in NOT_THE_EXPERIMENT or key.split(".")[0] in NOT_THE_EXPERIMENT:
      continue
    if old[key] != new[key]:
      changes.append((key, old[key], new[key]))
  return changes


def describe_changes(changes: list[tuple[str, Any, Any]], most: int = 6) -> str:
  shown = [f"{k} {json.dumps(a)} -> {json.dumps(b)}" for k, a, b in changes[:most]]
  more = f" and {len(changes) - most} more" if len(changes) > most else ""
  return ", ".join(shown) + more
