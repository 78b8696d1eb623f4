"""Which library runs the models' convolutions: XLA's own, or oneDNN's on a CPU.

Every convolution of the zoo goes through :func:`models.layers.conv_general_dilated`
(``layers.Conv`` is flax's ``nn.Conv`` with it), which asks :func:`current` when it is
traced. ``config.conv_backend`` chooses, and train.py holds the choice for the whole run:

    with kernels.conv_backend("onednn"):
      ...  # every step traced here runs oneDNN's convolutions (kernels/onednn.py)

The choice is read at trace time: a function already traced and cached by ``jax.jit``
keeps the backend it was traced with, so set it before building the steps.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

BACKENDS = ("xla", "onednn")


class KernelError(ValueError):
  """A backend cannot run here, or cannot run this convolution: one line, with the fix."""


_current = "xla"


def current() -> str:
  """The backend that convolutions traced now will use."""
  return _current


@contextlib.contextmanager
def conv_backend(name: str, devices: Sequence[Any] | None = None) -> Iterator[None]:
  """Convolutions traced inside run on ``name`` ('xla' or 'onednn'); restored on exit.
  With ``devices`` (the programs' devices), first checks that the backend runs there
  (oneDNN: one CPU device, its package and a compiler) and raises KernelError if not."""
  global _current
  if name not in BACKENDS:
    raise ValueError(f"unknown conv_backend {name!r}; valid values: {', '.join(BACKENDS)}")
  if name == "onednn" and devices is not None:
    from kernels import onednn  # pylint: disable=g-import-not-at-top  (it imports this)
    onednn.check(len(devices), devices[0].platform)
  before, _current = _current, name
  try:
    yield
  finally:
    _current = before
