"""Every config file, with each variant its docstring names, loads, validates, and builds
its model with its own model_kwargs (a typo in a config fails here, not in a long run)."""

from __future__ import annotations

import glob
import os
import re

import jax
import jax.numpy as jnp
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
  # The check train.py and launch/sweep.py run: a ConfigError for a wrong model name or
  # field, or an input the network cannot take. Traced, not compiled.
  checked = config_lib.check(spec)
  config = checked.config
  assert checked.num_params > 0
  if config.image_size:
    assert checked.image_shape[:2] == (config.image_size + 2 * config.pad,) * 2
  if config.dataset == "synthetic":
    assert checked.image_shape == tuple(config.synthetic.shape)
    assert checked.num_classes == config.synthetic.num_classes
  elif config.dataset == "imagenet2012":
    assert checked.image_shape == (config.image_size, config.image_size, 3)
    assert checked.num_classes == 1000
  # The count is the model's own init (without the optimizer and EMA around it).
  model = models.create_model(config.model, num_classes=checked.num_classes,
                              **config.model_kwargs.to_dict())
  variables = jax.eval_shape(
      lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)},
                         jnp.zeros((1, *checked.image_shape)), train=False))
  assert checked.num_params == sum(x.size for x in jax.tree.leaves(variables["params"]))


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


# ------------------------------------------------------------------ config arguments


@pytest.mark.parametrize("spec,message", [
    ("resnet50.py:tinny", r"unknown config argument 'tinny'; did you mean tiny\? Valid "
                          r"arguments: depth=18\|34\|50\|101\|152, .*convnext_recipe, tiny$"),
    ("vgg.py:depth=18", r"depth=18 is not valid: depth is one of 11, 13, 16, 19$"),
    ("vgg.py:depth=x", r"depth=x is not valid: depth is one of 11, 13, 16, 19$"),
    ("vgg.py:bn=3", r"'bn' is a flag and takes no value \(got bn=3\)"),
    ("vgg.py:depth", r"'depth' needs a value: depth=11\|13\|16\|19$"),
    ("vgg.py:tiny,tiny", r"'tiny' is given twice"),
    ("mobilenet_v2.py:width=wide", r"width=wide: width takes a float"),
    ("convnext_t.py:size=xl", r"size=xl is not valid \(did you mean size=l\?\): size is one "
                              r"of t, s, b, l"),
    ("lecun1989_nets.py:net=7", r"net=7 is not valid: net is one of 1, 2, 3, 4, 5"),
    ("resnet50.py:depth=18,convnext_recipe", r"convnext_recipe is ResNet-50"),
    ("densenet121.py:noaug", r"noaug is the paper's CIFAR setting"),
    ("alexnet.py:bn,torchvision", r"two different networks"),
])
def test_a_bad_config_argument_is_one_line_naming_the_fix(spec, message):
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load_config(os.path.join(CONFIG_DIR, spec))
  text = str(e.value)
  assert "\n" not in text and text.startswith(os.path.join(CONFIG_DIR, spec) + ": "), text
  assert re.search(message, text), text


def test_config_arguments_are_typed():
  vgg = config_lib.load_config(os.path.join(CONFIG_DIR, "vgg.py:depth=16,bn"))
  assert vgg.model == "vgg16_bn"
  r = config_lib.load_config(os.path.join(CONFIG_DIR, "resnet50.py:depth=18,batch=512"))
  assert r.model == "resnet18" and r.batch_size == 512 and isinstance(r.batch_size, int)
  m = config_lib.load_config(os.path.join(CONFIG_DIR, "mobilenet_v1.py:width=0.5,epochs=3"))
  assert m.model_kwargs.width_multiplier == 0.5 and m.num_epochs == 3


def test_imagenet_sgd_recipe():
  """The shared SGD lines hold each paper's numbers."""
  for name, want in [
      ("alexnet.py", (128, 0.01, 5e-4, 90, (30, 60, 80), 0.1, "step")),
      ("vgg.py", (256, 0.01, 5e-4, 74, (30, 50, 65), 0.1, "step")),
      ("mobilenet_v1.py", (256, 0.1, 4e-5, 150, (), 0.1, "cosine")),
      ("mobilenet_v2.py", (256, 0.045, 4e-5, 300, tuple(range(1, 300)), 0.98, "step"))]:
    c = config_lib.load_config(os.path.join(CONFIG_DIR, name))
    got = (c.batch_size, c.learning_rate, c.weight_decay, c.num_epochs,
           tuple(c.decay_epochs), c.decay_factor, c.schedule)
    assert got == want and (c.optimizer, c.momentum) == ("sgd", 0.9), name
  for name, batch, lr in (("mobilenet_v1.py:paper", 32, 0.01),
                          ("mobilenet_v2.py:paper", 96, 0.045)):
    c = config_lib.load_config(os.path.join(CONFIG_DIR, name))
    assert (c.optimizer, c.rms_decay, c.momentum, c.eps) == ("rmsprop", 0.9, 0.9, 1.0)
    assert (c.batch_size, c.learning_rate) == (batch, lr), name


def _config_files() -> list[str]:
  return sorted(p for p in glob.glob(os.path.join(CONFIG_DIR, "*.py"))
                if os.path.basename(p) not in ("__init__.py", "common.py"))


@pytest.mark.parametrize("path", _config_files(), ids=os.path.basename)
def test_every_config_has_a_tiny_variant_that_is_tiny(path):
  """``:tiny`` runs in seconds on a CPU: synthetic data, at most 512 training images
  seen, small images, and at most 250M multiply-adds per image (GoogLeNet's paper net,
  which has no width option and needs 80x80 for its auxiliary heads, is the largest:
  196M)."""
  import analysis  # pylint: disable=g-import-not-at-top
  checked = config_lib.check(f"{path}:tiny")
  c = checked.config
  assert c.dataset == "synthetic", c.dataset
  assert c.synthetic.num_train * c.num_epochs <= 512
  assert max(checked.image_shape[:2]) <= 80
  macs = analysis.count_macs(checked.model, (1, *checked.image_shape))
  assert 0 < macs <= 250e6, macs
