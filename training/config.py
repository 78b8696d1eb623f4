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
import difflib
import importlib.util
import inspect
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
  module_spec.loader.exec_module(module)
  get_config = getattr(module, "get_config", None)
  if get_config is None:
    raise ConfigError(f"config file {path!r} defines no get_config()")
  takes_arg = bool(inspect.signature(get_config).parameters)
  if arg and not takes_arg:
    raise ConfigError(f"config file {path!r} takes no argument, got {arg!r}")
  config = get_config(arg or None) if takes_arg else get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"get_config() in {path!r} must return an ml_collections.ConfigDict")
  return config


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[tuple[str, str]]) -> ml_collections.ConfigDict:
  """Applies ``(dotted.key, raw_value)`` pairs in place and returns the config."""
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
    field_type = _field_type(parent, leaf)
    value = _parse(key, raw, current, field_type)
    try:
      parent[leaf] = value
    except (TypeError, ValueError) as e:
      raise ConfigError(f"cannot set config.{key} to {raw!r}: {e}") from None
  return config


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
  # Untyped placeholder: take a Python literal when it is one, else the string.
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
    "normalization": ("dataset", "symmetric", "unit", "imagenet"),
    "loss": ("cross_entropy", "mse"),
    "optimizer": ("sgd", "adam", "adamw", "lamb", "rmsprop"),
    "schedule": ("constant", "step", "cosine"),
    "augment.crop_mode": ("constant", "reflect", "edge"),
    "augment.resize_method": ("bilinear", "bicubic"),
    "augment.erase_mode": ("uniform", "pixel"),
    "batchnorm_stats": ("global", "per_device"),
    "input_pipeline": ("auto", "device", "host"),
}
POSITIVE = ("mesh.fsdp", "num_epochs", "batch_size", "eval_batch_size", "eval_every_epochs",
            "checkpoint_every_epochs", "keep_checkpoints", "grad_accum_steps",
            "host.shuffle_buffer", "host.prefetch")
NON_NEGATIVE = ("learning_rate", "weight_decay", "label_smoothing", "warmup_epochs", "pad",
                "augment.crop_padding", "log_every_steps", "stop_after_steps",
                "min_learning_rate", "num_train_examples", "aux_loss_weight", "grad_clip_norm",
                "lr_base_batch_size", "augment.color_jitter", "augment.mixup",
                "augment.cutmix", "augment.eval_crop_pct")
PROBABILITIES = ("augment.random_erasing", "augment.mixup_prob", "augment.mixup_switch_prob",
                 "ema_decay", "layer_decay")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks choices and ranges; raises ConfigError naming the field and the fix."""
  def get(key):
    node = config
    for part in key.split("."):
      node = node[part]
    return node

  for key, options in CHOICES.items():
    if get(key) not in options:
      raise ConfigError(f"config.{key}={get(key)!r} is not one of {', '.join(options)}")
  for key in POSITIVE:
    if get(key) <= 0:
      raise ConfigError(f"config.{key} must be positive, got {get(key)}")
  for key in NON_NEGATIVE:
    if get(key) < 0:
      raise ConfigError(f"config.{key} must be >= 0, got {get(key)}")
  if not 0 <= config.label_smoothing < 1:
    raise ConfigError(f"config.label_smoothing must be in [0, 1), got {config.label_smoothing}")
  for key in PROBABILITIES:
    if not 0 <= get(key) <= 1:
      raise ConfigError(f"config.{key} must be in [0, 1], got {get(key)}")
  if config.augment.eval_crop_pct > 1:
    raise ConfigError("config.augment.eval_crop_pct is the crop's share of the resized "
                      f"image, in (0, 1] (0.875 is standard); got {config.augment.eval_crop_pct}")
  for key in ("crop_scale", "crop_ratio"):
    lo_hi = tuple(config.augment[key])
    if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
      raise ConfigError(f"config.augment.{key} must be (min, max) with 0 < min <= max, "
                        f"got {lo_hi}")
  if config.augment.rand_augment:
    from input_pipeline import randaugment  # pylint: disable=g-import-not-at-top
    try:
      randaugment.parse(config.augment.rand_augment)
    except ValueError as e:
      raise ConfigError(f"config.augment.rand_augment: {e}") from None
  if config.batch_size % config.grad_accum_steps:
    raise ConfigError(f"config.batch_size={config.batch_size} does not split into "
                      f"grad_accum_steps={config.grad_accum_steps} equal micro-batches")
  if (config.augment.mixup or config.augment.cutmix) and config.loss != "cross_entropy":
    raise ConfigError("Mixup / CutMix make soft targets, which need loss=cross_entropy")
  if config.loss == "mse" and config.label_smoothing:
    raise ConfigError("config.label_smoothing only applies to loss=cross_entropy")
