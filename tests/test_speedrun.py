"""The speedrun's pieces: test-time flip averaging (``eval_mode=flip``), the config, and
``benchmarks/speedrun.py`` with train.py's training-time clock."""

import functools
import json
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import input_pipeline
import models
from benchmarks import speedrun
from configs import common
from input_pipeline import recipe
from training import config as config_lib
from training import host_memory
from training import optim
from training import steps as steps_lib

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "speedrun_fashion_mnist.py")


def test_flip_views_stack_the_image_and_its_mirror():
  x = jnp.arange(2 * 3 * 4 * 1, dtype=jnp.uint8).reshape(2, 3, 4, 1)
  v = np.asarray(input_pipeline.flip_views(x))
  assert v.shape == (2, 2, 3, 4, 1)
  np.testing.assert_array_equal(v[:, 0], np.asarray(x))
  np.testing.assert_array_equal(v[:, 1], np.asarray(x)[:, :, ::-1])


def test_flip_translate_views_are_the_image_shifted_and_mirrored():
  x = jnp.arange(2 * 4 * 5 * 1, dtype=jnp.float32).reshape(2, 4, 5, 1)
  v = np.asarray(input_pipeline.flip_translate_views(x))
  assert v.shape == (2, 6, 4, 5, 1)
  xn = np.asarray(x)
  np.testing.assert_array_equal(v[:, 0], xn)
  np.testing.assert_array_equal(v[:, 1, 1:, 1:], xn[:, :-1, :-1])  # one pixel down-right
  np.testing.assert_array_equal(v[:, 1, 0, 1:], xn[:, 1, :-1])  # the edge is reflected
  np.testing.assert_array_equal(v[:, 2, :-1, :-1], xn[:, 1:, 1:])  # one pixel up-left
  for i in range(3):
    np.testing.assert_array_equal(v[:, 3 + i], v[:, i, :, ::-1])


def test_translate_views_are_the_nine_one_pixel_shifts():
  x = jnp.arange(1, 1 + 2 * 4 * 5 * 1, dtype=jnp.float32).reshape(2, 4, 5, 1)
  xn = np.asarray(x)
  v = np.asarray(input_pipeline.translate_views(x))  # zero fill (background)
  assert v.shape == (2, 9, 4, 5, 1)
  np.testing.assert_array_equal(v[:, 4], xn)
  for k in range(9):
    di, dj = k // 3 - 1, k % 3 - 1  # view k shows pixel (i + di, j + dj) at (i, j)
    rolled = np.roll(xn, (-di, -dj), axis=(1, 2))
    inside = np.zeros((4, 5), bool)
    inside[max(0, -di):4 - max(0, di), max(0, -dj):5 - max(0, dj)] = True
    np.testing.assert_array_equal(v[:, k][:, inside], rolled[:, inside])
    assert (v[:, k][:, ~inside] == 0).all()
  # The wrap fill is a circular shift, as the training shifts with crop_mode=wrap.
  w = np.asarray(input_pipeline.translate_views(x, "wrap"))
  np.testing.assert_array_equal(w[:, 0], np.roll(xn, (1, 1), axis=(1, 2)))
  with pytest.raises(ValueError, match="crop mode"):
    input_pipeline.translate_views(x, "nearest")


@pytest.mark.parametrize("mode,views_op,map_j", [("flip", "flip_views", None),
                                                  ("flip_translate", "flip_translate_views", None),
                                                  ("translate", "translate_views", None),
                                                  ("flip", "flip_views", 0.5)])
def test_multi_view_eval_averages_the_softmax_of_the_views(mode, views_op, map_j):
  c = common.base()
  c.augment.eval_mode = mode
  c.map_j = map_j  # LeNet-5's MAP criterion: a constant logit -j in each view's softmax
  plan = recipe.plan(recipe.Recipe.from_config(c.augment), source="device", image_size=12,
                     channels=1, stored_size=12, mean=(0.5,), std=(0.25,))
  assert [o.name for o in plan.eval_device] == [views_op, "normalize"]
  model = models.create_model("airbench94", num_classes=10, widths=(4, 8, 8))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (6, 12, 12, 1)), jnp.uint8)
  labels = jnp.asarray(rng.integers(0, 10, 6), jnp.int32)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 12, 12, 1)), train=False)
  state = steps_lib.TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                               batch_stats=variables["batch_stats"], opt_state=())
  step = jax.jit(steps_lib.make_eval_step(model, steps_lib.StepConfig.from_config(c, plan)))
  m = step(state, steps_lib.zero_metrics(steps_lib.EVAL_METRICS), images, labels,
           jnp.ones(6, bool))
  x = input_pipeline.normalize(images, (0.5,), (0.25,))
  # The views are taken before normalisation, as the plan orders them (a zero-filled
  # border is background).
  views = input_pipeline.normalize(getattr(input_pipeline, views_op)(images), (0.5,), (0.25,))
  extra = [] if map_j is None else [np.full((6, 1), -map_j, np.float32)]
  softmax = lambda v: np.asarray(jax.nn.softmax(np.concatenate(
      [np.asarray(model.apply(variables, v, train=False))] + extra, -1), -1))
  probs = sum(softmax(views[:, i]) for i in range(views.shape[1])) / views.shape[1]
  np.testing.assert_allclose(m["loss"], -np.log(probs[np.arange(6), labels]).sum(), rtol=1e-5)
  # Accuracy ranks the classes only (never the MAP criterion's constant).
  assert float(m["top1"]) == float((probs[:, :10].argmax(-1) == np.asarray(labels)).sum())
  # The other views count: averaging differs from the image alone.
  assert not np.allclose(softmax(x), probs, atol=1e-4)


def test_speedrun_configs_hold_the_recipe():
  for arg, side, batch, widths, views, ema in (
      ("", 28, 256, (64, 128, 256), "flip_translate", 0.99),
      ("gpu", 32, 1024, (64, 256, 256), "flip", 0.0)):
    checked = config_lib.check(f"{CONFIG}:{arg}")
    c = checked.config
    assert checked.image_shape == (side, side, 1)
    assert c.batch_size == batch
    assert tuple(checked.model.widths) == widths
    assert (c.optimizer, c.momentum, c.nesterov, c.label_smoothing) == ("sgd", 0.85, True, 0.2)
    assert (c.augment.flip, c.augment.crop_padding, c.augment.eval_mode) == (True, 2, views)
    assert c.ema_decay == ema  # the CPU run reports its weights' moving average
    # airbench's peak lr 1.5 at batch 1024, scaled; its triangle ends at 0.07 of the peak.
    assert c.learning_rate * batch / c.lr_base_batch_size == pytest.approx(1.5 * batch / 1024)
    assert c.min_learning_rate == pytest.approx(0.07 * 1.5 * batch / 1024)
    assert c.warmup_epochs == pytest.approx(0.23 * c.num_epochs)
  with pytest.raises(config_lib.ConfigError, match="cpu or gpu"):
    config_lib.check(f"{CONFIG}:cpu,gpu")


def test_the_muon_variant_changes_the_optimizer_of_the_filters_and_the_epochs_only():
  sgd = config_lib.load_config(CONFIG).to_dict()
  muon = config_lib.check(f"{CONFIG}:muon").config.to_dict()
  changed = {k for k in sgd if sgd[k] != muon[k]}
  # The warm-up and the checkpoint follow the epochs; the SGD fields stay, for the rest.
  assert changed == {"optimizer", "muon", "num_epochs", "warmup_epochs",
                     "checkpoint_every_epochs"}
  assert (muon["optimizer"], muon["num_epochs"]) == ("muon", 6)
  assert muon["muon"] == dict(sgd["muon"], learning_rate=0.08, beta=0.6, normalize=True)
  assert config_lib.load_config(f"{CONFIG}:muon,epochs=8").num_epochs == 8
  with pytest.raises(config_lib.ConfigError, match="muon is a CPU variant"):
    config_lib.check(f"{CONFIG}:muon,gpu")


def test_whiten_and_bias64_add_airbenchs_init_frozen_layer_and_bias_rate_only():
  muon = config_lib.load_config(f"{CONFIG}:muon").to_dict()
  both = config_lib.check(f"{CONFIG}:muon,whiten,bias64").config.to_dict()
  assert {k for k in muon if muon[k] != both[k]} == {"data_init_images", "freeze", "lr_mults"}
  assert both["data_init_images"] == 5000
  assert both["freeze"] == "whiten/kernel,whiten/bias:2"
  assert both["lr_mults"] == "*/norm*/bias:64"
  whiten = config_lib.load_config(f"{CONFIG}:muon,whiten")
  assert (whiten.freeze, whiten.lr_mults) == (both["freeze"], "")


def _torch_sgd(p, grads, rates, decay, momentum=0.85):
  """torch.optim.SGD(nesterov=True, weight_decay=decay) on the given gradients, in numpy."""
  buf, out = None, []
  for g, lr in zip(grads, rates):
    d = g + decay * p
    buf = d if buf is None else momentum * buf + d
    p = p - lr * (d + momentum * buf)
    out.append(p)
  return out


def test_airbench94_muon_steps_each_group_as_its_sgd_on_the_summed_loss():
  """The biases, the head and the whitening bias move as airbench94_muon.py's SGD groups
  move them (rates 0.053, 0.67, 0.053, decay 2e-6 * batch / rate, the summed loss), the
  whitening bias at a rate that reaches 0 at its own last epoch."""
  checked = config_lib.check(f"{CONFIG}:airbench94_muon,tiny")
  c, model = checked.config, checked.model
  assert (model.head_unit_std, model.scaling_factor) == (True, 1 / 16)  # tiny widths 8/16/16
  per_epoch = c.synthetic.num_train // c.batch_size
  total, whiten_steps = c.num_epochs * per_epoch, per_epoch  # the tiny variant's 1 epoch
  schedule = optim.create_schedule(c, per_epoch)
  tx = optim.create_optimizer(c, schedule, per_epoch)
  params = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(
      jnp.zeros((1, *checked.image_shape)))["params"]
  assert float(jnp.std(params["head"]["kernel"], ddof=1)) == pytest.approx(1.0, rel=1e-5)
  rng = np.random.default_rng(0)
  grads = [jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
           for _ in range(whiten_steps + 2)]
  @jax.jit
  def step(p, state, g):
    updates, state = tx.update(g, state, p)
    return optax.apply_updates(p, updates), state

  state, p, ours = tx.init(params), params, []
  for g in grads:
    p, state = step(p, state, g)
    ours.append(p)
  b = c.batch_size
  for path, rate, own_steps in ((("group2", "norm1", "bias"), 0.053, total),
                                (("head", "kernel"), 0.67, total),
                                (("whiten", "bias"), 0.053, whiten_steps)):
    leaf = lambda tree: np.asarray(functools.reduce(lambda t, k: t[k], path, tree), np.float64)
    rates = [rate * (1 - s / own_steps) if s < own_steps else 0.0 for s in range(len(grads))]
    want = _torch_sgd(leaf(params), [b * leaf(g) for g in grads], rates, 2e-6 * b / rate)
    for s, (got, expected) in enumerate(zip(map(leaf, ours), want)):
      np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6, err_msg=f"{path} step {s}")
  np.testing.assert_array_equal(ours[-1]["whiten"]["kernel"], params["whiten"]["kernel"])
  full = config_lib.load_config(f"{CONFIG}:airbench94_muon")
  assert (full.batch_size, full.num_epochs, full.model_kwargs.widths) == (2000, 8, (64, 256, 256))
  assert full.model_kwargs.scaling_factor == 1 / 256
  assert (full.muon.learning_rate, full.muon.beta, full.muon.ns_steps) == (0.24, 0.6, 3)
  with pytest.raises(config_lib.ConfigError, match="airbench94_muon.*drop muon, bias64"):
    config_lib.load_config(f"{CONFIG}:airbench94_muon,muon,bias64")


def test_rgb_gives_the_anchors_three_channels_normalised_as_airbench():
  checked = config_lib.check(f"{CONFIG}:airbench94_muon,rgb,tiny")
  assert (checked.config.grey_to_rgb, checked.config.normalization) == (True, "cifar10")
  assert checked.image_shape == (28, 28, 3)  # tiny's synthetic grey, repeated
  assert checked.abstract_state.params["whiten"]["kernel"].shape == (2, 2, 3, 24)
  one = config_lib.check(f"{CONFIG}:airbench94_muon,tiny")
  assert (one.config.grey_to_rgb, one.config.normalization, one.image_shape) == (
      False, "dataset", (28, 28, 1))
  full = config_lib.load_config(f"{CONFIG}:airbench94_muon,rgb")
  assert config_lib.data_shape(full) == ((32, 32, 3), 10)  # the anchor's 32x32x3


def test_warmup_and_final_rate_follow_overrides_of_epochs_and_batch():
  # The triangle is a shape: 23% of the epochs up, down to 0.07 of the peak. Overriding
  # the length or the batch on the command line moves both with it.
  c = config_lib.apply_overrides(config_lib.load_config(CONFIG),
                                 [("num_epochs", "16"), ("batch_size", "512")])
  assert c.warmup_epochs == pytest.approx(0.23 * 16)
  assert c.min_learning_rate == pytest.approx(0.07 * 1.5 * 512 / 1024)
  # An explicit override of the warm-up wins over the reference, and leaves the rest.
  c = config_lib.apply_overrides(config_lib.load_config(CONFIG),
                                 [("warmup_epochs", "1.0"), ("num_epochs", "16")])
  assert (c.warmup_epochs, c.num_epochs) == (1.0, 16)
  convnext = os.path.join(os.path.dirname(CONFIG), "convnext_t.py")
  c = config_lib.apply_overrides(config_lib.load_config(convnext), [("num_epochs", "30")])
  assert c.warmup_epochs == pytest.approx(2.0)  # ConvNeXt's 20 of 300 epochs


def test_speedrun_tool_reports_what_train_py_measured(tmp_path, capsys):
  workdir = str(tmp_path / "sr")
  assert speedrun.main(["--config", f"{CONFIG}:tiny", "--seeds", "1", "--cpu_devices", "2",
                        "--workdir", workdir, "--target", "5"]) == 0
  out = capsys.readouterr().out
  with open(os.path.join(workdir, "speedrun.json")) as f:
    report = json.load(f)
  with open(os.path.join(workdir, "seed0", "summary.json")) as f:
    summary = json.load(f)
  (run,) = report["runs"]
  # The config keeps a moving average of the weights: that is the network reported.
  assert run["weights"] == "ema"
  assert run["top1"] == pytest.approx(100 * summary["ema_eval_top1"])
  assert run["top1_raw"] == pytest.approx(100 * summary["eval_top1"])
  # Training time: the steps after the first, less evaluation: inside the run's wall time.
  assert 0 < run["train_sec"] < summary["wall_time_this_run_sec"] < run["wall_sec"]
  # train.py's start-up (config check, data, initial state) and its loop, both inside
  # the time from command to accuracy that the tool measured around the process.
  startup = summary["startup_time_this_run_sec"]
  assert 0 < startup and startup + summary["wall_time_this_run_sec"] < run["wall_sec"]
  assert [p["epoch"] for p in run["curve"]] == [1, 2]  # tiny evaluates every epoch
  assert 0 < run["curve"][0]["train_sec"] < run["curve"][1]["train_sec"] <= run["train_sec"]
  assert f"seed 0: {run['top1']:.2f}% (EMA weights; raw {run['top1_raw']:.2f}%)" in out
  # --cpu_devices 2: the run's batch went over two devices, and the record says so.
  assert summary["devices"] == run["devices"] == 2
  assert "--xla_force_host_platform_device_count=2" in run["xla_flags"]
  # train.py, run as a command, re-executed itself with malloc's huge pages where they
  # apply (training/host_memory.py), and the record has the tunables it ran with.
  assert run["glibc_tunables"] == (
      host_memory.tunables_with_huge_pages(os.environ, platform.libc_ver(),
                                           host_memory.thp_mode())
      or os.environ.get("GLIBC_TUNABLES", ""))
  assert "devices: 2 (1 seed)" in out
  with open(os.path.join(workdir, "speedrun.md")) as f:
    assert "| 0 | 2 |" in f.read()
  assert os.path.getsize(os.path.join(workdir, "speedrun.png")) > 10_000
  # Seeds added later are reported with the earlier ones.
  with open(os.path.join(workdir, "seed0.json")) as f:
    assert json.load(f) == run
  later = dict(run, seed=7, top1=run["top1"] + 1.0)
  with open(os.path.join(workdir, "seed7.json"), "w") as f:
    json.dump(later, f)
  assert [r["seed"] for r in speedrun.all_seeds(workdir)] == [0, 7]
  # Again into the same folder: refused, nothing overwritten.
  before = os.path.getmtime(os.path.join(workdir, "seed0", "summary.json"))
  assert speedrun.main(["--config", f"{CONFIG}:tiny", "--seeds", "1",
                        "--workdir", workdir]) == 2
  assert "seed0 exists" in capsys.readouterr().err
  assert os.path.getmtime(os.path.join(workdir, "seed0", "summary.json")) == before


@pytest.mark.parametrize("args,message", [
    (["--config", "configs/no_such.py"], "config file not found"),
    (["--config.lr=0.1"], "lr"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--cpu_devices", "-1"], "--cpu_devices must be"),
])
def test_bad_input_is_one_line_before_any_run(args, message, tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    speedrun.main([*args, "--workdir", str(tmp_path / "sr")])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0]
  assert not (tmp_path / "sr").exists()


def test_cpu_devices_and_a_device_count_in_xla_flags_are_one_error(tmp_path, capsys,
                                                                    monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
  with pytest.raises(SystemExit) as e:
    speedrun.main(["--cpu_devices", "2", "--workdir", str(tmp_path / "sr")])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "give --cpu_devices or that flag" in err[0]
  assert not (tmp_path / "sr").exists()
  # Without a count of its own, the flag adds the two-device trick to the flags there are.
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=1")
  env = speedrun.run_env(2)
  assert env["XLA_FLAGS"].split() == ["--xla_backend_optimization_level=1",
                                      "--xla_force_host_platform_device_count=2",
                                      "--xla_cpu_multi_thread_eigen=false"]
  assert speedrun.run_env(0)["XLA_FLAGS"] == "--xla_backend_optimization_level=1"
