"""Every config file, with each variant its docstring names, loads, validates, and builds
its model with its own model_kwargs (a typo in a config fails here, not in a long run)."""

from __future__ import annotations

import glob
import os
import re

import pytest

import models
from training import config as config_lib

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs")


def _specs() -> list[str]:
  specs = []
  for path in sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py"))):
    name = os.path.basename(path)
    if name in ("__init__.py", "common.py"):
      continue
    specs.append(path)
    with open(path) as f:
      text = f.read()
    # Variants named on the docstring's command lines: --config configs/x.py:arg
    for arg in sorted(set(re.findall(rf"configs/{re.escape(name)}:([\w=,.\-]+)", text))):
      specs.append(f"{path}:{arg}")
  return specs


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: os.path.basename(s))
def test_config_validates_and_builds_its_model(spec):
  config = config_lib.load_config(spec)
  config_lib.validate(config)
  num_classes = config.synthetic.num_classes if config.dataset == "synthetic" else 10
  # Raises UnknownModelError / TypeError for a wrong model name or model field.
  models.create_model(config.model, num_classes=num_classes, **config.model_kwargs.to_dict())
