"""Model zoo: one registry, one door in.

    from models import create_model
    model = create_model("lenet1989", num_classes=10)
    variables = model.init(rng, x, train=False)   # x: NHWC
    logits = model.apply(variables, x, train=False)

Each architecture family lives in its own module and registers its variants with
``@register``. A registered entry is a callable (usually a ``functools.partial`` of one
Flax module class) that takes ``num_classes`` and keyword overrides.

A module checks its options when it is built: a bad one raises :class:`ModelOptionError`
(a ``ValueError``), one line naming the field, the value and the valid values.

A family that supports layer-wise learning-rate decay registers its variants with
``layer_groups=``: a function from the model's top-level parameter names to
``(layer id of each name, number of layers L)``, next to the module it describes (as
timm's ``group_matcher`` and big_vision's ``lr_mults``). :func:`layer_groups` returns it,
or None for a family that declares none.
"""

from __future__ import annotations

import collections.abc
import difflib
import sys
import types
import typing
from typing import Any, Callable, Sequence

import flax.linen as nn
import numpy as np

# Top-level parameter names -> (layer id of each name, number of layers L): the stem and
# embeddings 0, blocks 1..L, what follows the last block L + 1.
LayerIds = Callable[[Sequence[str]], tuple[dict[str, int], int]]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_LAYER_GROUPS: dict[str, LayerIds | None] = {}
# Params and normalised training images (host NHWC) -> params: a family's data-dependent
# initialisation (airbench's whitening filters), which train.py applies with
# config.data_init_images > 0.
DataInit = Callable[[Any, Any], Any]
_DATA_INIT: dict[str, DataInit | None] = {}


class UnknownModelError(ValueError):
  """Raised for a model name that is not registered."""


class ModelOptionError(ValueError):
  """An invalid option (field) of a model's module, raised when the module is built; the
  message is one line that names the field, the value and the valid values."""


def register(name: str, builder: Callable[..., nn.Module], *,
             layer_groups: LayerIds | None = None,
             data_init: DataInit | None = None) -> Callable[..., nn.Module]:
  """Registers ``builder`` (a module class or partial) under ``name``, with the family's
  layer assignment for layer-wise learning-rate decay (``layer_groups``) and its
  data-dependent initialisation (``data_init``), if it has them."""
  if name in _REGISTRY:
    raise ValueError(f"model {name!r} is registered twice")
  _REGISTRY[name] = builder
  _LAYER_GROUPS[name] = layer_groups
  _DATA_INIT[name] = data_init
  return builder


def data_init(name: str) -> DataInit | None:
  """Model ``name``'s data-dependent initialisation, or None if its family has none."""
  _check_registered(name)
  return _DATA_INIT[name]


def layer_groups(name: str) -> LayerIds | None:
  """The layer assignment that model ``name``'s family declares, or None if it has none."""
  _check_registered(name)
  return _LAYER_GROUPS[name]


def list_models() -> list[str]:
  return sorted(_REGISTRY)


def create_model(name: str, *, num_classes: int, **overrides: Any) -> nn.Module:
  """Builds the registered model ``name`` with ``num_classes`` outputs.

  ``overrides`` are fields of the model's Flax module (for example ``dtype``,
  ``activation``); an unknown field is an error that names the valid ones, an invalid
  value a :class:`ModelOptionError` that names the model, the field and the valid values.
  """
  from models.layers import check_positive  # pylint: disable=g-import-not-at-top
  _check_registered(name)
  builder = _REGISTRY[name]
  try:
    check_positive(None, "num_classes", num_classes)
    _check_field_types(builder, overrides)
    return builder(num_classes=num_classes, **overrides)
  except ModelOptionError as e:
    raise ModelOptionError(f"model {name!r}: {e}") from None
  except TypeError as e:
    fields = _module_fields(builder)
    raise TypeError(
        f"model {name!r} does not take {sorted(set(overrides) - fields) or overrides}: "
        f"{e}. Its fields are: {', '.join(sorted(fields))}") from None


def _check_field_types(builder: Callable[..., nn.Module], overrides: dict[str, Any]) -> None:
  """A value whose type the field's annotation rules out is a ModelOptionError: a
  command-line ``--config.model_kwargs.flag=false`` taken as a string would otherwise be
  a truthy ``"false"`` inside the module. Fields typed beyond bool, int, float, str,
  tuples and their optional forms (callables, dtypes) are left to the module."""
  cls = getattr(builder, "func", builder)
  fields = getattr(cls, "__dataclass_fields__", {})
  for key, value in overrides.items():
    if key not in fields:
      continue  # the call names the unknown field
    hint = fields[key].type
    if isinstance(hint, str):  # postponed annotations: resolved where the class lives
      try:
        hint = eval(hint, vars(sys.modules[cls.__module__]))  # pylint: disable=eval-used
      except Exception:  # pylint: disable=broad-except  (a name only a type checker sees)
        continue
    if not _accepts(hint, value):
      raise ModelOptionError(
          f"{key}={value!r} is a {type(value).__name__}, but the field takes "
          f"{_type_name(hint)}")


def _accepts(hint: Any, value: Any) -> bool:
  origin = typing.get_origin(hint)
  if origin in (typing.Union, types.UnionType):
    return any(_accepts(arm, value) for arm in typing.get_args(hint))
  if hint is type(None):
    return value is None
  if hint is bool:
    return isinstance(value, (bool, np.bool_))
  if hint is int:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
  if hint is float:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)))
  if hint is str:
    return isinstance(value, str)
  if hint in (tuple, list) or origin in (tuple, list, collections.abc.Sequence):
    return isinstance(value, (tuple, list))
  if origin is typing.Literal:
    return value in typing.get_args(hint)
  return True  # Any, callables, dtypes, classes: the module checks them


def _type_name(hint: Any) -> str:
  names = {bool: "a bool (true/false)", int: "an int", float: "a float", str: "a string",
           type(None): "None"}
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    return " or ".join(_type_name(arm) for arm in typing.get_args(hint))
  if hint in names:
    return names[hint]
  return f"a {getattr(hint, '__name__', None) or str(hint)}"


def _check_registered(name: str) -> None:
  if name not in _REGISTRY:
    close = difflib.get_close_matches(name, _REGISTRY, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} Available: {', '.join(list_models())}")


def _module_fields(builder: Callable[..., nn.Module]) -> set[str]:
  cls = getattr(builder, "func", builder)
  names = set(getattr(cls, "__dataclass_fields__", {}))
  return names - {"parent", "name"}


# Importing the family modules fills the registry.
from models import airbench  # noqa: E402,F401
from models import alexnet  # noqa: E402,F401
from models import allcnn  # noqa: E402,F401
from models import convnext  # noqa: E402,F401
from models import densenet  # noqa: E402,F401
from models import inception  # noqa: E402,F401
from models import lecun1989_nets  # noqa: E402,F401
from models import lenet  # noqa: E402,F401
from models import mobilenet  # noqa: E402,F401
from models import resnet  # noqa: E402,F401
from models import roadmap  # noqa: E402,F401
from models import vgg  # noqa: E402,F401
from models import vit  # noqa: E402,F401
