"""Config files, ``file.py:arg`` variants, typed overrides and their errors."""

import glob
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

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
      ("schedule", "step"), ("decay_epochs", "30,60"), ("dataset", "mnist"),
      ("data_dir", "/tmp/x"),
      ("image_size", "16"),
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


@pytest.mark.parametrize("overrides,message", [
    ([("b1", "0.5")], "config.b1=0.5 is not read when optimizer='sgd'; it applies to "
                      "optimizer adam, adamw, lamb"),
    ([("optimizer", "sdlm"), ("momentum", "0.9")], "config.momentum=0.9 is not read when "
                                                   "optimizer='sdlm'"),
    ([("rms_decay", "0.5"), ("optimizer", "adam")], "config.rms_decay=0.5 is not read"),
    ([("optimizer", "adam"), ("nesterov", "true")], "config.nesterov=True is not read"),
    ([("min_learning_rate", "1e-5")], "config.min_learning_rate=1e-05 is not read when "
                                      "schedule='constant'; it applies to schedule cosine, "
                                      "linear"),
    ([("decay_factor", "0.5"), ("schedule", "cosine")], "config.decay_factor=0.5 is not read"),
    ([("synthetic.num_train", "64")], "config.synthetic.num_train=64 is not read when "
                                      "dataset='digits'; it applies to dataset synthetic"),
])
def test_an_override_that_nothing_reads_is_an_error(overrides, message):
  # lenet1989.py: SGD without momentum, a constant rate. The optimizer or schedule that
  # would read the field may come before or after it on the command line.
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")
  with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
    config_lib.apply_overrides(c, overrides)


@pytest.mark.parametrize("spec,overrides,message", [
    ("lenet1989.py", [("aux_loss_weight", "0.5")],
     "config.aux_loss_weight=0.5 is not read: model 'lenet1989' has no auxiliary "
     "classifiers (GoogLeNet has). Drop the override"),
    # The heads turned off, before or after the weight on the command line.
    ("googlenet.py:tiny", [("aux_loss_weight", "0.5"), ("model_kwargs.aux_logits", "false")],
     "has model_kwargs.aux_logits=False. Drop the override, or set "
     "--config.model_kwargs.aux_logits=true"),
    ("googlenet.py:tiny", [("model_kwargs.aux_logits", "false"), ("aux_loss_weight", "1")],
     "config.aux_loss_weight=1.0 is not read"),
])
def test_an_aux_loss_weight_without_auxiliary_classifiers_is_an_error(spec, overrides,
                                                                       message):
  c = config_lib.load_config(f"{ROOT}/configs/{spec}")
  with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
    config_lib.apply_overrides(c, overrides)


def test_an_aux_loss_weight_that_is_read_or_zero_passes():
  c = config_lib.apply_overrides(config_lib.load_config(f"{ROOT}/configs/googlenet.py:tiny"),
                                 [("aux_loss_weight", "0.5")])
  assert c.aux_loss_weight == 0.5 and c.model_kwargs.get("aux_logits", True)
  c = config_lib.apply_overrides(config_lib.load_config(f"{ROOT}/configs/lenet1989.py"),
                                 [("aux_loss_weight", "0")])  # asks for nothing
  assert c.aux_loss_weight == 0


def test_overrides_that_are_read_or_that_empty_a_field_pass():
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")
  config_lib.apply_overrides(c, [("optimizer", "adamw"), ("b1", "0.8"), ("eps", "1e-6"),
                                 ("schedule", "cosine"), ("min_learning_rate", "1e-5")])
  assert (c.b1, c.eps, c.min_learning_rate) == (0.8, 1e-6, 1e-5)
  # Emptying a list another recipe set asks for nothing (experiments/data_scaling.py).
  config_lib.apply_overrides(c, [("decay_epochs", "()")])
  assert tuple(c.decay_epochs) == ()
  # A config file may keep a field of the optimizer it switched from: lenet1989.py:sdlm
  # keeps the SGD recipe's momentum 0.
  assert config_lib.load_config(f"{ROOT}/configs/lenet1989.py:sdlm").momentum == 0.0
  config_lib.check(f"{ROOT}/configs/lenet1989.py:sdlm,tiny")


def test_read_only_by_says_which_optimizers_and_schedules_read_each_field():
  """READ_ONLY_BY against training/optim.py itself: changing a field changes the updates
  (or the rates) of exactly the optimizers (schedules) it names."""
  from configs import common  # pylint: disable=g-import-not-at-top
  from training import optim  # pylint: disable=g-import-not-at-top
  params = {"conv": {"kernel": jnp.linspace(-1, 1, 72).reshape(3, 3, 2, 4)},
            "head": {"kernel": jnp.linspace(1, 2, 8).reshape(4, 2), "bias": jnp.ones(2)}}
  other = {"momentum": 0.5, "nesterov": True, "b1": 0.5, "b2": 0.9, "eps": 0.5,
           "rms_decay": 0.5, "decay_epochs": (1,), "decay_factor": 0.5,
           "decay_factors": (0.25,), "min_learning_rate": 0.05}

  def config(**fields):
    c = common.base()
    c.update(dict(learning_rate=0.1, weight_decay=0.0, num_epochs=4, **fields))
    return c

  def updates(c):  # two steps, each with other gradients (Adam's betas need two)
    tx = optim.create_optimizer(c, optim.create_schedule(c, steps_per_epoch=2))
    state = tx.init(params)
    out = []
    for i in range(2):
      u, state = tx.update(jax.tree.map(lambda p: jnp.cos(3 * p + i), params), state, params)
      out.append(u)
    return out

  def rates(c):
    schedule = optim.create_schedule(c, steps_per_epoch=2)
    return [float(schedule(i)) for i in range(8)]

  def run(picker, **fields):  # the optimizer's updates or the schedule's rates
    if picker == "optimizer":
      return jax.tree.leaves(updates(config(**fields)))
    return [rates(config(**fields))]

  baselines = {}
  for key, (picker, readers) in config_lib.READ_ONLY_BY.items():
    if picker == "dataset":  # the data loader's fields
      continue
    extra = {"decay_epochs": (1,)} if key.startswith("decay_factor") else {}
    for choice in config_lib.CHOICES[picker]:
      fields = {picker: choice, **extra}
      name = (picker, choice, tuple(extra))
      if name not in baselines:
        baselines[name] = run(picker, **fields)
      changed = run(picker, **fields, **{key: other[key]})
      moved = any(not np.allclose(x, y) for x, y in zip(baselines[name], changed))
      assert moved == (choice in readers), (key, choice)


@pytest.mark.parametrize("overrides,unread", [
    ([("augment.crop_scale", "0.5,1.0")], "augment.crop_scale=(0.5, 1.0)"),  # no inception_crop
    ([("augment.mixup_prob", "0.5")], "augment.mixup_prob=0.5"),  # no Mixup or CutMix
    ([("augment.distort_shear", "0.1")], "augment.distort_shear=0.1"),  # distort_prob=0
    ([("augment.crop_mode", "wrap")], "augment.crop_mode='wrap'"),  # no translation
    # turned on, then off again by a later override: what it turned on reads nothing
    ([("augment.inception_crop", "true"), ("augment.crop_scale", "0.5,1.0"),
      ("augment.inception_crop", "false")], "augment.crop_scale=(0.5, 1.0)"),
])
def test_an_augment_override_that_changes_no_planned_op_is_an_error(overrides, unread):
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")  # no augmentation
  with pytest.raises(config_lib.ConfigError,
                     match=re.escape(f"config.{unread} changes nothing in this run's data "
                                     "augmentation")):
    config_lib.apply_overrides(c, overrides)


@pytest.mark.parametrize("overrides", [
    [("augment.crop_padding", "2"), ("augment.crop_mode", "wrap")],
    [("augment.eval_mode", "translate"), ("augment.crop_mode", "edge")],  # the views' fill
    [("augment.distort_prob", "0.9"), ("augment.distort_shear", "0.1")],
    [("augment.inception_crop", "true"), ("augment.crop_scale", "0.5,1.0")],
    [("augment.crop_padding", "0")],  # the value it has: nothing to tell
])
def test_augment_overrides_that_change_the_plan_pass(overrides):
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")
  config_lib.apply_overrides(c, overrides)
  config_lib.validate(c)


@pytest.mark.parametrize("key,value,message", [
    ("momentum", "-0.5", "config.momentum must be >= 0, got -0.5"),
    ("b2", "-0.1", "config.b2 must be in [0, 1), got -0.1"),
    ("b1", "1.0", "config.b1 must be in [0, 1), got 1.0"),
    ("eps", "-1", "config.eps must be >= 0"),
    ("rms_decay", "2", "config.rms_decay must be in [0, 1], got 2.0"),
    ("ema_decay", "1", "config.ema_decay must be in [0, 1), got 1.0"),  # never moves
    ("decay_factor", "0", "config.decay_factor must be positive, got 0.0"),
    ("decay_factors", "0.5,0", "config.decay_factors=(0.5, 0) must all be positive"),
    ("synthetic.num_train", "0", "config.synthetic.num_train must be positive, got 0"),
    ("synthetic.num_test", "-3", "config.synthetic.num_test must be positive, got -3"),
])
def test_optimizer_and_synthetic_ranges(key, value, message):
  # Each field with the optimizer, schedule or dataset that reads it.
  reader = {"b1": "adam", "b2": "adam", "eps": "adam", "rms_decay": "rmsprop"}.get(key)
  overrides = [("optimizer", reader)] if reader else []
  if key.startswith("decay_factor"):
    overrides += [("schedule", "step"), ("decay_epochs", "5,10")]
  if key.startswith("synthetic."):
    overrides += [("dataset", "synthetic")]
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")
  config_lib.apply_overrides(c, overrides + [(key, value)])
  with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
    config_lib.validate(c)


@pytest.mark.parametrize("num_epochs,warmup,ok", [
    ("10", "2", True), ("10", "0", True), ("2", "0", True), ("2", "1.9", True),
    ("2", "2", False), ("2", "5", False),
])
def test_a_warm_up_as_long_as_the_run_is_an_error(num_epochs, warmup, ok):
  # mobilenet_v1 warms up for 5 epochs; shortened to 2 its rate would never reach
  # learning_rate, and its cosine would never start.
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")
  config_lib.apply_overrides(c, [("schedule", "cosine"), ("num_epochs", num_epochs),
                                 ("warmup_epochs", warmup)])
  if ok:
    config_lib.validate(c)
    return
  with pytest.raises(config_lib.ConfigError, match=re.escape(
      f"config.warmup_epochs={float(warmup)} is not shorter than num_epochs={num_epochs}: "
      "the rate would never leave its warm-up. Lower --config.warmup_epochs")):
    config_lib.validate(c)


@pytest.mark.parametrize("schedule,overrides,peak", [
    ("cosine", [("learning_rate", "0.01")], None),
    ("linear", [("learning_rate", "0.01")], None),
    # the linear scaling rule's peak: 0.1 x 32 / 256
    ("cosine", [("learning_rate", "0.1"), ("lr_base_batch_size", "256"),
                ("batch_size", "32")], "0.0125"),
    ("cosine", [("learning_rate", "0.1")], ""),  # above the minimum: passes
    ("linear", [("learning_rate", "0.02")], ""),  # equal: a constant rate, passes
])
def test_a_minimum_rate_above_the_peak_is_an_error(schedule, overrides, peak):
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")
  config_lib.apply_overrides(c, [("schedule", schedule), ("min_learning_rate", "0.02"),
                                 *overrides])
  if peak == "":
    config_lib.validate(c)
    return
  with pytest.raises(config_lib.ConfigError, match=re.escape(
      f"config.min_learning_rate=0.02 is above the peak rate {peak or '0.01'}: the "
      f"{schedule} schedule would rise, not decay")):
    config_lib.validate(c)


@pytest.mark.parametrize("overrides,message", [
    ([("data_dir", "/data/tfds")], "config.data_dir='/data/tfds' is not read: dataset "
                                   "'digits' is not loaded by TFDS"),
    ([("dataset", "npz:x.npz"), ("download", "true")], "config.download=True is not read"),
    ([("host.prefetch", "4")],
     "config.host.prefetch=4 is not read: this run keeps 'digits' on the device"),
    ([("dataset", "cifar10"), ("host.shuffle_buffer", "100")],  # fits: kept on the device
     "config.host.shuffle_buffer=100 is not read"),
    ([("ema_warmup", "true")], "config.ema_warmup=True is not read: ema_decay=0 keeps no "
                               "moving average"),
    # ... and what they read passes
    ([("dataset", "mnist"), ("data_dir", "/data/tfds"), ("download", "true")], None),
    ([("input_pipeline", "host"), ("host.prefetch", "4")], None),
    ([("dataset", "tfds:imagenette"), ("host.prefetch", "4")], None),  # sizes vary: host
    ([("dataset", "not_in_the_table"), ("host.prefetch", "4")], None),  # decided by data
    ([("ema_decay", "0.99"), ("ema_warmup", "true")], None),
    ([("device_loop", "true")], None),
    ([("download", "false"), ("data_dir", "None")], None),  # asks for nothing
])
def test_a_data_or_ema_override_that_is_not_read_is_an_error(overrides, message):
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")  # digits, on the device
  if message is None:
    config_lib.apply_overrides(c, overrides)
    return
  with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
    config_lib.apply_overrides(c, overrides)


@pytest.mark.parametrize("overrides", [
    [("input_pipeline", "host")],  # the config file's device_loop=True, lost before
    [("dataset", "tfds:imagenette"), ("image_size", "64"), ("device_loop", "true")],
])
def test_a_device_loop_over_streamed_data_is_an_error(overrides):
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")  # device_loop=True
  config_lib.apply_overrides(c, overrides)
  with pytest.raises(config_lib.ConfigError, match=re.escape(
      "config.device_loop=True runs a log interval's steps in one call over batches held "
      "on the device (--config.device_loop=False runs one step per call); this run "
      "streams them through the host pipeline")):
    config_lib.validate(c)
  config_lib.apply_overrides(c, [("device_loop", "false")])
  config_lib.validate(c)


def test_a_new_model_field_parses_true_and_false_as_bools():
  # model_kwargs fields the config does not set have no declared type here: "false" must
  # not reach the model as a truthy string.
  checked = config_lib.check(f"{ROOT}/configs/speedrun_fashion_mnist.py:tiny", [
      ("model_kwargs.bn_fast_variance", "false"), ("model_kwargs.head_unit_std", "True")])
  assert checked.model.bn_fast_variance is False and checked.model.head_unit_std is True


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
    ("map_j", "5", "map_j is a term of the cross-entropy, but loss=mse"),
    ("muon.learning_rate", "0.1", "config.muon.learning_rate is set but optimizer=sgd"),
    ("muon.normalize", "True", "config.muon.normalize is set but optimizer=sgd"),
])
def test_validate(key, value, match):
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")  # loss=mse
  config_lib.apply_overrides(c, [(key, value)])
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(c)


@pytest.mark.parametrize("key,value,match", [
    ("muon.learning_rate", "0", "config.muon.learning_rate must be positive"),
    ("muon.ns_steps", "0", "config.muon.ns_steps must be positive"),
    ("muon.beta", "1.0", r"config.muon.beta must be in \[0, 1\)"),
    ("muon.weight_decay", "-0.1", "config.muon.weight_decay must be >= 0"),
    ("learning_rate", "0", "learning_rate=0 with optimizer=muon"),
])
def test_validate_muon(key, value, match):
  c = config_lib.load_config(f"{ROOT}/configs/speedrun_fashion_mnist.py")
  config_lib.apply_overrides(c, [("optimizer", "muon"), (key, value)])
  with pytest.raises(config_lib.ConfigError, match=match):
    config_lib.validate(c)


# ------------------------------------------------------------- config arguments (common)


def test_parse_arg_types_and_errors():
  from configs import common  # pylint: disable=g-import-not-at-top
  spec = dict(depth=(11, 13, 16, 19), version=("v1", "v1.5"), width=float, batch=int,
              name=str, tiny=bool)
  assert common.parse_arg(None, **spec) == {}
  assert common.parse_arg("depth=13, tiny,width=0.5,batch=64,version=v1.5,name=a", **spec) == {
      "depth": 13, "tiny": True, "width": 0.5, "batch": 64, "version": "v1.5", "name": "a"}
  assert type(common.parse_arg("depth=13", **spec)["depth"]) is int
  for arg, match in [("tinny", r"^unknown config argument 'tinny'; did you mean tiny\? Valid "
                               r"arguments: depth=11\|13\|16\|19, version=v1\|v1.5, "
                               r"width=<float>, batch=<int>, name=<str>, tiny$"),
                     ("zzz", r"^unknown config argument 'zzz'\. Valid arguments"),
                     ("depth=12", r"depth=12 is not valid: depth is one of 11, 13, 16, 19$"),
                     ("version=v15", r"version=v15 is not valid \(did you mean version=v1.5\?\)"),
                     ("batch=1.5", r"batch=1.5: batch takes an int \(batch=<int>\)"),
                     ("batch=", r"'batch' needs a value: batch=<int>"),
                     ("tiny=yes", r"'tiny' is a flag and takes no value"),
                     ("batch=1,batch=2", r"given twice")]:
    with pytest.raises(config_lib.ConfigError, match=match):
      common.parse_arg(arg, **spec)
  with pytest.raises(config_lib.ConfigError, match="Valid arguments: none"):
    common.parse_arg("tiny")  # a config that takes no words
  with pytest.raises(TypeError, match="non-empty tuple of choices"):
    common.parse_arg("x", x=list)


def test_lenet1989_modern_tuned_is_the_held_out_choice_of_its_data():
  from configs import lenet1989_modern  # pylint: disable=g-import-not-at-top
  for data in ("usps", "mnist16"):
    base, tuned = (lenet1989_modern.get_config(a) for a in (data, f"{data},tuned"))
    settings = lenet1989_modern.TUNED[data]
    flat_base, flat_tuned = config_lib.flatten(base), config_lib.flatten(tuned)
    for key, value in settings.items():
      assert flat_tuned[key] == value and flat_base[key] != value, key
    # Nothing else moves (the data included).
    assert (base.eval_every_epochs, tuned.eval_every_epochs) == (1, 10)  # nine views cost
    flat = lambda c: {k: v for k, v in config_lib.flatten(c).items()
                      if k not in settings and k != "eval_every_epochs"}
    assert flat(tuned) == flat(base)
  with pytest.raises(config_lib.ConfigError, match="give one of them too"):
    lenet1989_modern.get_config("tuned")


# -------------------------------------------------------------------------------- check


def test_check_a_tiny_config_without_data():
  checked = config_lib.check(f"{ROOT}/configs/resnet20_cifar.py:tiny",
                             [("model_kwargs.width", "8"), ("dtype", "bfloat16")])
  assert checked.config.model_kwargs.width == 8
  assert checked.image_shape == (16, 16, 3) and checked.num_classes == 10
  assert checked.model.dtype == jnp.bfloat16
  state = checked.abstract_state  # traced only: shapes, no values
  assert all(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(state))
  assert checked.num_params == sum(x.size for x in jax.tree.leaves(state.params))
  assert checked.num_params > 0 and state.batch_stats  # ResNet: BatchNorm statistics
  assert jax.tree.leaves(state.params)[0].dtype == jnp.float32  # params stay float32


@pytest.mark.parametrize("dataset,image_size,pad,shape,classes", [
    ("imagenet2012", 224, 0, (224, 224, 3), 1000),
    ("imagenette/160px-v2", 128, 0, (128, 128, 3), 10),
    ("cifar100", None, 0, (32, 32, 3), 100),
    ("tfds:mnist", None, 2, (32, 32, 1), 10),
    ("digits", 28, 2, (32, 32, 1), 10),
    ("emnist/letters", None, 0, (28, 28, 1), 37),
    ("npz:/nowhere/fashion_mnist.npz", None, 2, (32, 32, 1), 10),  # by its stem
    ("some_new_tfds_set", 64, 0, (64, 64, 3), 10),  # not known: 3 channels, 10 classes
])
def test_data_shape_from_the_config(dataset, image_size, pad, shape, classes):
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")
  c.dataset, c.image_size, c.pad = dataset, image_size, pad
  assert config_lib.data_shape(c) == (shape, classes)


def test_grey_to_rgb_gives_a_grey_dataset_three_channels_and_refuses_others():
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")
  c.dataset, c.pad, c.grey_to_rgb = "npz:/nowhere/fashion_mnist.npz", 2, True
  assert config_lib.data_shape(c) == ((32, 32, 3), 10)
  c.dataset = "cifar10"
  with pytest.raises(config_lib.ConfigError, match="cifar10 has 3 channels; drop grey_to_rgb"):
    config_lib.data_shape(c)
  c.dataset, c.image_size = "imagenette/160px-v2", 128  # streamed: the host pipeline
  with pytest.raises(config_lib.ConfigError, match="grey_to_rgb repeats the channel of a "
                     "dataset held in memory; this run streams"):
    config_lib.validate(c)


def test_data_shape_reads_an_unknown_npz_header(tmp_path):
  path = tmp_path / "blobs.npz"
  np.savez(path, x_train=np.zeros((4, 12, 12, 3), np.uint8), y_train=np.array([0, 1, 2, 6]),
           x_test=np.zeros((2, 12, 12, 3), np.uint8), y_test=np.array([0, 1]))
  c = config_lib.load_config(f"{ROOT}/configs/lenet1989.py")
  c.dataset = f"npz:{path}"
  assert config_lib.data_shape(c) == ((12, 12, 3), 7)


@pytest.mark.parametrize("spec,overrides,match", [
    ("lenet1989.py", [("model", "lenet1989x")], r"^config.model: unknown model 'lenet1989x'"),
    ("lenet1989.py", [("model_kwargs.bogus", "1")], r"^config.model_kwargs: .*bogus"),
    ("resnet20_cifar.py", [("dataset", "imagenet2012")],
     r"imagenet2012 has images of varying size: set --config.image_size"),
    ("vgg.py:tiny", [("synthetic.shape", "8,8,3")],
     r"^config.model=vgg11 cannot initialise on \(8, 8, 3\) inputs: ValueError: .*too small"),
    ("lenet1989.py", [("num_epochs", "0")], "must be positive"),
    ("speedrun_fashion_mnist.py:tiny", [("model_kwargs.scaling_factor", "1/256")],
     r"^config.model_kwargs: model 'airbench94': scaling_factor='1/256' is a str, but "
     r"the field takes a float$"),
])
def test_check_errors_are_one_line(spec, overrides, match):
  with pytest.raises(config_lib.ConfigError, match=match) as e:
    config_lib.check(f"{ROOT}/configs/{spec}", overrides)
  assert "\n" not in str(e.value)


def test_importing_the_config_module_stays_light():
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = ("import sys, training.config; "
          "print(sorted(m for m in ('jax', 'flax', 'models', 'optax') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                       text=True, check=True).stdout
  assert out.strip() == "[]"


def test_data_shape_reads_uint8_labels(tmp_path):
  """shared/data's files store labels as uint8 (max(initial=-1) overflows on them)."""
  path = tmp_path / "u8.npz"
  np.savez(path, x_train=np.zeros((4, 12, 12, 1), np.uint8),
           y_train=np.array([0, 1, 2, 3], np.uint8), x_test=np.zeros((2, 12, 12, 1), np.uint8),
           y_test=np.array([0, 1], np.uint8))
  c = config_lib.load_config("configs/lenet1989.py")
  c.dataset = f"npz:{path}"
  assert config_lib.data_shape(c) == ((12, 12, 1), 4)
