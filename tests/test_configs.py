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


# ConvNeXt's ImageNet-1k recipe (Liu et al. 2022, Table 5; REFERENCE.md "Training
# recipes"), field by field as this codebase names them.
CONVNEXT_RECIPE = {
    "num_epochs": 300, "batch_size": 4096, "optimizer": "adamw", "learning_rate": 4e-3,
    "lr_base_batch_size": 4096, "b1": 0.9, "b2": 0.999, "weight_decay": 0.05,
    "schedule": "cosine", "warmup_epochs": 20.0, "min_learning_rate": 1e-6,
    "label_smoothing": 0.1, "ema_decay": 0.9999, "grad_clip_norm": 0.0,
    "image_size": 224, "dataset": "imagenet2012",
    "augment.inception_crop": True, "augment.crop_scale": (0.08, 1.0),
    "augment.crop_ratio": (3 / 4, 4 / 3), "augment.resize_method": "bicubic",
    "augment.flip": True, "augment.rand_augment": "rand-m9-mstd0.5-inc1",
    "augment.mixup": 0.8, "augment.cutmix": 1.0, "augment.mixup_prob": 1.0,
    "augment.mixup_switch_prob": 0.5, "augment.random_erasing": 0.25,
    "augment.erase_mode": "pixel", "augment.color_jitter": 0.4,
    "augment.eval_crop_pct": 0.875,
    "model_kwargs.drop_path_rate": 0.1, "model_kwargs.layer_scale_init": 1e-6,
}


def _get(config, key):
  for part in key.split("."):
    config = config[part]
  return config


def test_convnext_t_holds_the_papers_recipe():
  from training import optim  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(os.path.join(CONFIG_DIR, "convnext_t.py"))
  for key, want in CONVNEXT_RECIPE.items():
    got = _get(config, key)
    assert (tuple(got) == pytest.approx(want) if isinstance(want, tuple)
            else got == want), f"config.{key} = {got!r}, the paper's recipe has {want!r}"
  assert optim.peak_learning_rate(config) == pytest.approx(4e-3)
  config.batch_size = 1024  # the scaling rule follows a batch override
  assert optim.peak_learning_rate(config) == pytest.approx(1e-3)
  # The drop-path rates of the larger sizes (Appendix A.1).
  for size, rate in (("s", 0.4), ("b", 0.5), ("l", 0.5)):
    c = config_lib.load_config(os.path.join(CONFIG_DIR, f"convnext_t.py:size={size}"))
    assert c.model == f"convnext_{size}" and c.model_kwargs.drop_path_rate == rate


def test_resnet50_convnext_recipe_is_the_roadmaps_first_step():
  classic = config_lib.load_config(os.path.join(CONFIG_DIR, "resnet50.py"))
  assert (classic.optimizer, classic.learning_rate, classic.lr_base_batch_size) == (
      "sgd", 0.1, 256)
  assert classic.decay_epochs == (30, 60, 80) and classic.augment.inception_crop
  assert not classic.augment.rand_augment and not classic.augment.mixup
  config = config_lib.load_config(os.path.join(CONFIG_DIR, "resnet50.py:convnext_recipe"))
  assert config.model == "roadmap_resnet50"
  for key, want in CONVNEXT_RECIPE.items():
    if key.startswith("model_kwargs.layer_scale"):
      continue
    got = _get(config, key)
    assert (tuple(got) == pytest.approx(want) if isinstance(want, tuple)
            else got == want), f"config.{key} = {got!r}, the recipe has {want!r}"
