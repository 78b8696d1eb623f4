"""Config files, ``file.py:arg`` variants, typed overrides and their errors."""

import glob
import os

import pytest

from training import config as config_lib


def test_load_and_variant():
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")
  assert c.model == "lenet1989" and c.dataset == "digits"
  usps = config_lib.load_config(f"{ROOT}/configs/lenet1989.py:usps")
  assert usps.dataset.startswith("npz:") and usps.dataset.endswith("usps.npz")
  tiny = config_lib.load_config(f"{ROOT}/configs/resnet20_cifar.py:tiny")
  assert tiny.dataset == "synthetic" and tiny.model_kwargs.width == 4


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [p for p in sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
           if not p.endswith(("__init__.py", "common.py"))]


def test_configs_found():
  assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_config_is_valid(path):
  config_lib.validate(config_lib.load_config(path))


def test_overrides_parse_by_field_type():
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")
  config_lib.apply_overrides(c, [
      ("num_epochs", "5"), ("learning_rate", "3e-4"), ("augment.flip", "true"),
      ("decay_epochs", "30,60"), ("data_dir", "/tmp/x"), ("image_size", "16"),
      ("optimizer", "adamw"), ("model_kwargs.activation", "relu"),
      ("model_kwargs.h3_dropout", "0.5")])
  assert c.num_epochs == 5 and isinstance(c.num_epochs, int)
  assert c.learning_rate == pytest.approx(3e-4)
  assert c.augment.flip is True
  assert tuple(c.decay_epochs) == (30, 60)
  assert c.data_dir == "/tmp/x" and c.image_size == 16
  assert c.model_kwargs.activation == "relu" and c.model_kwargs.h3_dropout == 0.5
  # An int is accepted where a float is declared.
  config_lib.apply_overrides(c, [("learning_rate", "1")])
  assert c.learning_rate == 1.0 and isinstance(c.learning_rate, float)


def test_split_override_args():
  rest, ov = config_lib.split_override_args(
      ["--config", "c.py", "--config.a=1", "--config.b", "2", "--workdir", "w"])
  assert rest == ["--config", "c.py", "--workdir", "w"]
  assert ov == [("a", "1"), ("b", "2")]


@pytest.mark.parametrize("key,value,match", [
    ("nokey", "1", r"unknown config key 'nokey'"),
    ("num_epoch", "1", r"Did you mean num_epochs"),
    ("augment.flipp", "1", r"config.augment has no field 'flipp'"),
    ("num_epochs", "1.5", r"config.num_epochs is an int; got '1.5'"),
    ("learning_rate", "fast", r"is a float"),
    ("augment.flip", "maybe", r"is a bool"),
    ("augment", "1", r"group of fields"),
])
def test_override_errors(key, value, match):
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.apply_overrides(c, [(key, value)])


def test_file_errors(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="config file not found"):
    config_lib.load_config(str(tmp_path / "nope.py"))
  bad = tmp_path / "bad.py"
  bad.write_text("x = 1\n")
  with pytest.raises(config_lib.ConfigError, match="no get_config"):
    config_lib.load_config(str(bad))


@pytest.mark.parametrize("key,value,match", [
    ("optimizer", "lbfgs", "is not one of sgd, adam, adamw"),
    ("batch_size", "0", "must be positive"),
    ("dtype", "float16", "is not one of float32, bfloat16"),
    ("label_smoothing", "0.1", "only applies to loss=cross_entropy"),
])
def test_validate(key, value, match):
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")  # loss=mse
  config_lib.apply_overrides(c, [(key, value)])
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(c)
