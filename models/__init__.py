"""Model zoo: one registry, one door in.

    from models import create_model
    model = create_model("lenet1989", num_classes=10)
    variables = model.init(rng, x, train=False)   # x: NHWC
    logits = model.apply(variables, x, train=False)

Each architecture family lives in its own module and registers its variants with
``@register``. A registered entry is a callable (usually a ``functools.partial`` of one
Flax module class) that takes ``num_classes`` and keyword overrides.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable

import flax.linen as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


class UnknownModelError(ValueError):
  """Raised for a model name that is not registered."""


def register(name: str, builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
  """Registers ``builder`` (a module class or partial) under ``name``."""
  if name in _REGISTRY:
    raise ValueError(f"model {name!r} is registered twice")
  _REGISTRY[name] = builder
  return builder


def list_models() -> list[str]:
  return sorted(_REGISTRY)


def create_model(name: str, *, num_classes: int, **overrides: Any) -> nn.Module:
  """Builds the registered model ``name`` with ``num_classes`` outputs.

  ``overrides`` are fields of the model's Flax module (for example ``dtype``,
  ``activation``); an unknown field is an error that names the valid ones.
  """
  if name not in _REGISTRY:
    close = difflib.get_close_matches(name, _REGISTRY, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} Available: {', '.join(list_models())}")
  builder = _REGISTRY[name]
  try:
    return builder(num_classes=num_classes, **overrides)
  except TypeError as e:
    fields = _module_fields(builder)
    raise TypeError(
        f"model {name!r} does not take {sorted(set(overrides) - fields) or overrides}: "
        f"{e}. Its fields are: {', '.join(sorted(fields))}") from None


def _module_fields(builder: Callable[..., nn.Module]) -> set[str]:
  cls = getattr(builder, "func", builder)
  names = set(getattr(cls, "__dataclass_fields__", {}))
  return names - {"parent", "name"}


# Importing the family modules fills the registry.
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
