"""Tests for input_pipeline/recipe.py: one recipe from the config, and where its ops run.

The central property: for every config and every variant its docstring names, the plan
holds exactly the ops the config's ``augment`` group asks for, on the input path the
config runs on (a streamed ImageNet config: the host pipeline), and nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from configs import common
from input_pipeline import recipe
from input_pipeline.recipe import Recipe, RecipeError
from tests import test_configs
from training import config as config_lib

STREAMED = ("imagenet2012", "imagenette")  # datasets whose images vary in size


def _expected_ops(r: Recipe, host: bool) -> list[str]:
  """What the fields ask for, written out independently of ``recipe.plan``."""
  ops = ["decode"] if host else []
  if r.crop_padding:
    ops.append("translate")
  if r.inception_crop:
    ops.append("random_resized_crop")
  if tuple(r.scale_jitter) != (0, 0):
    ops += ["resize_shorter", "random_crop"]
  if r.flip:
    ops.append("alternate_flip" if r.flip_mode == "alternate" else "flip")
  if r.distort_prob:
    ops.append("distort")
  if r.rand_augment:
    ops.append("rand_augment")
  elif r.color_jitter:
    ops.append("color_jitter")
  if r.lighting:
    ops.append("lighting")
  if r.random_erasing:
    ops.append("random_erasing")
  ops.append("normalize")
  if r.mixup_prob and (r.mixup or r.cutmix):
    ops.append("mixup_cutmix")
  return ops


def _plan_for(config, dense_eval=True):
  r = Recipe.from_config(config.augment)
  host = config.dataset in STREAMED
  size = config.image_size or (config.synthetic.shape[0] if config.dataset == "synthetic"
                               else 32)
  channels = 3 if host else (config.synthetic.shape[-1] if config.dataset == "synthetic"
                             else 1)
  if r.lighting:
    channels = 3
  plan = recipe.plan(r, source="host" if host else "device", image_size=size,
                     channels=channels, stored_size=size, mean=(0.5,) * channels,
                     std=(0.25,) * channels, num_classes=10,
                     label_smoothing=config.label_smoothing, dense_eval=dense_eval)
  return r, host, plan


@pytest.mark.parametrize("spec", test_configs._specs(),  # pylint: disable=protected-access
                         ids=lambda s: os.path.basename(s))
def test_plan_holds_exactly_the_ops_the_config_asks_for(spec):
  config = config_lib.load_config(spec)
  r, host, plan = _plan_for(config)
  assert plan.op_names() == _expected_ops(r, host), plan.describe()
  # The crop and flip of a streamed dataset run on the host, the rest on the device.
  if host:
    assert {o.name for o in plan.train_host} <= {"decode", "random_resized_crop",
                                                   "resize_shorter", "random_crop", "flip"}
    assert plan.eval_host[0].name == "decode"
  # RandAugment with colour jitter: said, not silently dropped.
  if r.rand_augment and r.color_jitter:
    assert any("color_jitter" in n for n in plan.notes)
  lines = plan.describe()
  assert lines[0].startswith("train augmentation: ") and lines[1].startswith("eval: ")
  json.loads(plan.to_json(r))  # recipe.json is valid JSON


IMAGENET_PROTOCOLS = {
    # config: (train ops on the host, train ops on the device, eval ops on the device)
    "alexnet.py": (["decode", "resize_shorter", "random_crop", "flip"],
                   ["lighting", "normalize"], ["normalize"]),
    "vgg.py": (["decode", "resize_shorter", "random_crop", "flip"],
               ["lighting", "normalize"], ["normalize"]),
    "vgg.py:dense": (["decode", "resize_shorter", "random_crop", "flip"],
                     ["lighting", "normalize"], ["normalize", "dense"]),
    "googlenet.py": (["decode", "random_resized_crop", "flip"],
                     ["color_jitter", "normalize"], ["normalize"]),
    "bn_inception.py": (["decode", "random_resized_crop", "flip"],
                        ["color_jitter", "normalize"], ["normalize"]),
    "densenet121.py": (["decode", "random_resized_crop", "flip"],
                       ["color_jitter", "lighting", "normalize"], ["normalize"]),
    "resnet50.py": (["decode", "random_resized_crop", "flip"], ["normalize"], ["normalize"]),
    "resnet50.py:scale_aug": (["decode", "resize_shorter", "random_crop", "flip"],
                              ["lighting", "normalize"], ["normalize"]),
    "se_resnet50.py": (["decode", "random_resized_crop", "flip"], ["normalize"],
                       ["normalize"]),
    "mobilenet_v1.py": (["decode", "random_resized_crop", "flip"], ["normalize"],
                        ["normalize"]),
    "mobilenet_v2.py": (["decode", "random_resized_crop", "flip"], ["normalize"],
                        ["normalize"]),
    "convnext_t.py": (["decode", "random_resized_crop", "flip"],
                      ["rand_augment", "random_erasing", "normalize", "mixup_cutmix"],
                      ["normalize"]),
}


@pytest.mark.parametrize("spec", sorted(IMAGENET_PROTOCOLS))
def test_each_paper_has_its_own_protocol(spec):
  config = config_lib.load_config(os.path.join(test_configs.CONFIG_DIR, spec))
  assert config.dataset == "imagenet2012" and config.image_size == 224
  _, host, plan = _plan_for(config)
  want_host, want_device, want_eval = IMAGENET_PROTOCOLS[spec]
  assert host and [o.name for o in plan.train_host] == want_host
  assert [o.name for o in plan.train_device] == want_device
  assert [o.name for o in plan.eval_device] == want_eval
  assert [o.name for o in plan.eval_host] == ["decode", "resize_shorter", "center_crop"]


def test_printed_plans_of_alexnet_and_vgg():
  alexnet = config_lib.load_config(os.path.join(test_configs.CONFIG_DIR, "alexnet.py"))
  lines = _plan_for(alexnet)[2].describe()
  assert lines[0] == ("train augmentation: host: decode > resize_shorter(256, bilinear) > "
                      "random_crop(224) > flip | device: lighting(0.1) > normalize")
  assert lines[1] == ("eval: host: decode > resize_shorter(256, bilinear) > center_crop(224)"
                      " | device: normalize")
  alexnet.augment.eval_mode = "ten_crop"
  lines = _plan_for(alexnet)[2].describe()
  assert "center_crop(256) | device: ten_crop(224) > normalize" in lines[1]
  vgg = config_lib.load_config(os.path.join(test_configs.CONFIG_DIR, "vgg.py:dense"))
  lines = _plan_for(vgg)[2].describe()
  assert "resize_shorter(256..512, bilinear) > random_crop(224)" in lines[0]
  assert lines[1].endswith("dense(256,384,512, bilinear)")
  assert "resize_shorter(512, bilinear) > center_crop(512)" in lines[1]


@pytest.mark.parametrize("fields,message", [
    (dict(crop_padding=16, inception_crop=True), "two crops"),
    (dict(crop_padding=4, scale_jitter=(256, 480)), "two crops"),
    (dict(inception_crop=True, scale_jitter=(256, 480)), "two crops"),
    (dict(scale_jitter=(300, 256)), "scale_jitter"),
    (dict(crop_mode="mirror"), "crop_mode='mirror' is not one of"),
    (dict(flip=True, flip_mode="sideways"), "flip_mode='sideways' is not one of random"),
    (dict(flip_mode="alternate"), "flip_mode='alternate' says how to mirror, and flip is off"),
    (dict(eval_mode="dense"), "needs eval_scales"),
    (dict(eval_scales=(256,)), "only by eval_mode='dense'"),
    (dict(eval_mode="ten_crop"), "eval_crop_pct in (0, 1)"),
    (dict(rand_augment="rand-q9"), "rand_augment"),
    (dict(crop_scale=(0.5, 2.0)), "at most 1"),
    (dict(random_erasing=1.5), "random_erasing must be in [0, 1]"),
    (dict(distort_prob=1.5), "distort_prob must be in [0, 1]"),
    (dict(distort_prob=0.9, distort_scale=1.0), "distort_scale is a factor's distance"),
    (dict(distort_shear=-0.1), "distort_shear must be >= 0"),
    (dict(distort_prob=0.9, distort_translate=0.0, distort_scale=0.0,
          distort_squeeze=0.0, distort_shear=0.0), "distorts nothing"),
])
def test_recipes_that_make_no_sense_are_one_line_errors(fields, message):
  c = common.base()
  c.augment.update(fields)
  with pytest.raises(RecipeError) as e:
    Recipe.from_config(c.augment)
  assert message in str(e.value) and "\n" not in str(e.value)
  # The config check says the same, as a ConfigError.
  with pytest.raises(config_lib.ConfigError, match="config.augment"):
    config_lib.validate(c)


def test_ops_with_nowhere_to_run_are_refused():
  c = common.base()
  c.augment.crop_padding = 16
  r = Recipe.from_config(c.augment)
  with pytest.raises(RecipeError, match="vary in size"):
    recipe.plan(r, source="host", image_size=224, channels=3)
  c.augment.crop_padding = 0
  with pytest.raises(RecipeError, match="needs a crop"):  # no crop: not square
    recipe.plan(Recipe.from_config(c.augment), source="host", image_size=224, channels=3)
  c.augment.update(dict(inception_crop=True, lighting=0.1))
  with pytest.raises(RecipeError, match="1 channel"):
    recipe.plan(Recipe.from_config(c.augment), source="device", image_size=28, channels=1,
                stored_size=28)
  c.augment.update(dict(lighting=0.0, eval_mode="dense", eval_scales=(256,)))
  with pytest.raises(RecipeError, match="fully convolutionally"):
    recipe.plan(Recipe.from_config(c.augment), source="device", image_size=224,
                channels=3, stored_size=224, dense_eval=False)
  c.augment.update(dict(inception_crop=False, eval_mode="center", eval_scales=(),
                        scale_jitter=(200, 256)))
  with pytest.raises(RecipeError, match="below the 224-pixel crop"):
    recipe.plan(Recipe.from_config(c.augment), source="host", image_size=224, channels=3)
  c.augment.update(dict(scale_jitter=(256, 256), flip=True, flip_mode="alternate"))
  with pytest.raises(RecipeError, match="host pipeline does not track"):
    recipe.plan(Recipe.from_config(c.augment), source="host", image_size=224, channels=3)
  plan = recipe.plan(Recipe.from_config(c.augment), source="device", image_size=224,
                     channels=3, stored_size=256)
  assert "alternate_flip" in plan.op_names() and "flip" not in plan.op_names()


def test_distortions_run_on_the_device_on_either_path():
  """LeNet-5's distortions resample equal-size images in the step: after the crop on the
  device path, and after the host's crop (which makes the sizes equal) on the host path."""
  c = common.base()
  c.augment.update(dict(distort_prob=0.9, crop_padding=2))
  r = Recipe.from_config(c.augment)
  device = recipe.plan(r, source="device", image_size=32, channels=1, stored_size=32)
  assert device.op_names() == ["translate", "distort", "normalize"]
  assert device.describe()[0] == (
      "train augmentation: device: translate(2, constant) > distort(prob=0.9, "
      "translate=2, scale=0.15, squeeze=0.15, shear=0.3) > normalize")
  assert "distort" not in device.op_names("eval")
  c.augment.update(dict(crop_padding=0, inception_crop=True))
  host = recipe.plan(Recipe.from_config(c.augment), source="host", image_size=224,
                     channels=3)
  assert [o.name for o in host.train_host] == ["decode", "random_resized_crop"]
  assert [o.name for o in host.train_device] == ["distort", "normalize"]
  lenet5 = config_lib.load_config(os.path.join(test_configs.CONFIG_DIR, "lenet5.py:distort"))
  assert lenet5.augment.distort_prob == 0.9


def test_recipe_is_the_augment_group_field_for_field():
  """No renames: the dataclass fields are the config's field names, both ways."""
  c = common.base()
  assert set(c.augment) == {f.name for f in dataclasses.fields(Recipe)}
  c.augment.lighting = 0.1
  assert Recipe.from_config(c.augment).lighting == 0.1
  with c.augment.unlocked():
    c.augment.lightning = 0.1
  with pytest.raises(RecipeError, match="unknown field.*lightning"):
    Recipe.from_config(c.augment)


def test_overrides_reach_the_recipe():
  c = config_lib.load_config(os.path.join(test_configs.CONFIG_DIR, "vgg.py"))
  config_lib.apply_overrides(c, [("augment.scale_jitter", "256,256"),
                                 ("augment.eval_mode", "dense"),
                                 ("augment.eval_scales", "224,256")])
  r, _, plan = _plan_for(c)
  assert r.scale_jitter == (256, 256) and r.eval_scales == (224, 256)
  assert str(plan.train_host[1]) == "resize_shorter(256, bilinear)"
  assert str(plan.eval_device[-1]) == "dense(224,256, bilinear)"


def test_tiny_variants_keep_the_protocol_at_their_scale():
  alexnet = config_lib.load_config(os.path.join(test_configs.CONFIG_DIR, "alexnet.py:tiny"))
  assert alexnet.dataset == "synthetic" and tuple(alexnet.augment.scale_jitter) == (72, 72)
  _, host, plan = _plan_for(alexnet)
  assert not host and plan.op_names()[:2] == ["resize_shorter", "random_crop"]


def test_every_op_the_executors_know_declares_its_placement():
  import inspect  # pylint: disable=g-import-not-at-top
  from input_pipeline import augment, host  # pylint: disable=g-import-not-at-top
  device_source = inspect.getsource(augment.apply_ops)
  for name, where in recipe.PLACEMENT.items():
    if "device" in where and name not in ("decode", "dense", "random_crop"):
      assert f'"{name}"' in device_source, name  # the step can run it
    if "host" in where and name != "center_crop":
      assert name in host.HOST_TRAIN_OPS, name
