"""Building blocks shared by more than one model family.

A block lives here once two families need it (timm's rule: reused, never copied).
Family-specific layers stay in their family's file.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def scaled_tanh(x: Array) -> Array:
  """LeCun's scaled hyperbolic tangent, ``1.7159 * tanh(2x / 3)``.

  The constants make f(+-1) = +-1 and put the maximum of the second derivative at
  +-1, so +-1 targets sit in the well-behaved part of the curve (LeCun et al. 1989;
  "Efficient BackProp", 1998).
  """
  return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


def _identity(x: Array) -> Array:
  return x


_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "scaled_tanh": scaled_tanh,
    "relu": jax.nn.relu,
    # Exact (erf) GELU, as PyTorch's nn.GELU default that the reference models use.
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "sigmoid": jax.nn.sigmoid,
    "identity": _identity,
}


def get_activation(name: str) -> Callable[[Array], Array]:
  """Returns the elementwise activation called ``name``.

  Models take activations by name so that an ablation (tanh -> relu) is a config
  change rather than a code change.
  """
  try:
    return _ACTIVATIONS[name]
  except KeyError:
    raise ValueError(
        f"unknown activation {name!r}; valid names: {', '.join(sorted(_ACTIVATIONS))}"
    ) from None
