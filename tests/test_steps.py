"""The pure train and eval steps."""

import dataclasses
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from configs import common
from input_pipeline import recipe
from training import optim
from training import steps as steps_lib


class TinyBN(nn.Module):
  """Conv, BatchNorm, ReLU, dense: the least that has batch statistics (fast to compile)."""

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(4, (3, 3), strides=2)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
    return nn.Dense(10)(nn.relu(x).reshape(x.shape[0], -1))


def _setup(model_name="lenet1989", shape=(16, 16, 1), **model_kw):
  model = (TinyBN() if model_name == "tiny_bn"
           else models.create_model(model_name, num_classes=10, **model_kw))
  c = common.base()
  c.optimizer, c.learning_rate, c.schedule = "adam", 3e-3, "constant"
  tx = optim.create_optimizer(c, optim.create_schedule(c, 1))
  state = steps_lib.init_state(model, tx, jax.random.key(0), shape)
  return model, tx, state


def _batch(n=32, shape=(16, 16, 1)):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
  labels = rng.integers(0, 10, n).astype(np.int32)
  return jnp.asarray(images), jnp.asarray(labels)


def test_train_step_lowers_loss_on_fixed_batch():
  model, tx, state = _setup(activation="relu", output_activation=None)
  cfg = steps_lib.StepConfig.normalizing((0.5,), (0.5,), loss="cross_entropy")
  step = jax.jit(steps_lib.make_train_step(model, tx, cfg, jax.random.key(1)))
  images, labels = _batch()
  losses = []
  for _ in range(30):
    acc = steps_lib.zero_metrics(steps_lib.TRAIN_METRICS)
    state, acc = step(state, acc, images, labels)
    losses.append(float(acc["loss"] / acc["count"]))
  assert int(state.step) == 30
  assert losses[-1] < 0.5 * losses[0], losses
  assert float(acc["count"]) == 32


def test_train_step_updates_batch_stats_once_per_micro_batch():
  """The running statistics move every step; with two micro-batches (gradient
  accumulation) each normalises by its own statistics and updates them in turn."""
  model, tx, state = _setup("tiny_bn", shape=(8, 8, 3))
  images, labels = _batch(16, (8, 8, 3))
  out = {}
  for k in (1, 2):
    ops = (recipe.op("translate", padding=1, mode="constant"), recipe.op("flip"),
           recipe.op("normalize", mean=(0.5,) * 3, std=(0.25,) * 3))
    cfg = steps_lib.StepConfig(train_ops=ops, grad_accum_steps=k)
    step = jax.jit(steps_lib.make_train_step(model, tx, cfg, jax.random.key(1)))
    out[k] = _run(step, state, images, labels)[0]
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), state.batch_stats,
                         out[1].batch_stats)
  assert all(jax.tree.leaves(changed))
  # momentum 0.9: one update moves the mean by 0.1 of the batch mean, two by 0.19.
  m0 = np.asarray(state.batch_stats["BatchNorm_0"]["mean"])
  m1 = np.asarray(out[1].batch_stats["BatchNorm_0"]["mean"])
  m2 = np.asarray(out[2].batch_stats["BatchNorm_0"]["mean"])
  assert np.all(m0 == 0) and not np.allclose(m1, m2)
  assert np.abs(m2).sum() == pytest.approx(1.9 * np.abs(m1).sum(), rel=0.2)
  with pytest.raises(ValueError, match="micro-batches"):
    cfg = steps_lib.StepConfig.normalizing((0.5,) * 3, (0.25,) * 3, grad_accum_steps=3)
    jax.jit(steps_lib.make_train_step(model, tx, cfg, jax.random.key(1)))(
        state, steps_lib.zero_metrics(steps_lib.TRAIN_METRICS), images, labels)


def test_the_device_loop_gives_the_step_its_examples_and_their_epoch():
  """What alternate_flip needs: the indices of the step's examples and the epoch."""
  seen = {}

  def step(state, metrics, images, labels, example_ids=None, epoch=None):
    seen.update(images=images, labels=labels, ids=example_ids, epoch=epoch)
    return state, metrics

  loop = steps_lib.device_train_loop(step, batch_size=4, steps_per_epoch=3)
  perm = jnp.asarray(np.random.default_rng(0).permutation(12), jnp.int32)
  data = {"train_images": jnp.arange(12.0)[:, None, None, None] * jnp.ones((12, 2, 2, 1)),
          "train_labels": jnp.arange(12) + 100}
  state = types.SimpleNamespace(step=jnp.int32(7))  # epoch 2, its second batch
  loop(state, {}, data, perm, 1, False)
  assert int(seen["epoch"]) == 2
  np.testing.assert_array_equal(seen["ids"], perm[4:8])
  np.testing.assert_array_equal(seen["images"][:, 0, 0, 0], perm[4:8])
  np.testing.assert_array_equal(seen["labels"], perm[4:8] + 100)
  # The step passes them on to the plan's ops: without them, alternate_flip cannot run.
  model, tx, state = _setup()
  cfg = steps_lib.StepConfig.normalizing((0.5,), (0.5,))
  cfg = dataclasses.replace(cfg, train_ops=(recipe.op("alternate_flip"), *cfg.train_ops))
  train = jax.jit(steps_lib.make_train_step(model, tx, cfg, jax.random.key(0)))
  x, y = _batch(4)
  with pytest.raises(ValueError, match="alternate_flip needs the examples' indices"):
    train(state, steps_lib.zero_metrics(steps_lib.TRAIN_METRICS), x, y)
  new, _ = train(state, steps_lib.zero_metrics(steps_lib.TRAIN_METRICS), x, y,
                 jnp.arange(4), jnp.int32(0))
  assert int(new.step) == 1


def test_eval_step_masks_padding():
  model, _, state = _setup()
  cfg = steps_lib.StepConfig.normalizing((0.5,), (0.5,), loss="mse")
  step = jax.jit(steps_lib.make_eval_step(model, cfg))
  images, labels = _batch(8)
  full = step(state, steps_lib.zero_metrics(steps_lib.EVAL_METRICS), images, labels,
              jnp.ones(8, bool))
  mask = jnp.arange(8) < 5
  part = step(state, steps_lib.zero_metrics(steps_lib.EVAL_METRICS), images, labels, mask)
  first5 = step(state, steps_lib.zero_metrics(steps_lib.EVAL_METRICS), images[:5], labels[:5],
                jnp.ones(5, bool))
  assert float(full["count"]) == 8 and float(part["count"]) == 5
  for k in ("loss", "top1", "top5"):
    np.testing.assert_allclose(part[k], first5[k], rtol=1e-5)
  assert float(part["top1"]) <= float(part["top5"]) <= 5


def _run(step, state, images, labels, n=1):
  for _ in range(n):
    state, acc = step(state, steps_lib.zero_metrics(steps_lib.TRAIN_METRICS), images, labels)
  return state, acc


def test_grad_accumulation_equals_one_big_batch():
  """k micro-batches give the update of one k-times larger batch (no BatchNorm, no
  dropout: the only difference left is summation order)."""
  model, tx, state = _setup("lenet1989")
  images, labels = _batch(32)
  results = {}
  for k in (1, 4):
    cfg = steps_lib.StepConfig.normalizing((0.5,), (0.5,), grad_accum_steps=k)
    step = jax.jit(steps_lib.make_train_step(model, tx, cfg, jax.random.key(1)))
    results[k] = _run(step, state, images, labels, n=3)
  (s1, a1), (s4, a4) = results[1], results[4]
  np.testing.assert_allclose(a1["loss"], a4["loss"], rtol=1e-5)
  assert float(a1["correct"]) == float(a4["correct"]) and float(a4["count"]) == 32
  for p1, p4, p0 in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s4.params),
                        jax.tree.leaves(state.params)):
    assert not np.allclose(p1, p0)  # the steps moved the weights
    np.testing.assert_allclose(p4, p1, rtol=1e-5, atol=1e-7)


def test_ema_arithmetic_and_warmup():
  ema = {"w": jnp.array([0.0, 10.0])}
  new = {"w": jnp.array([1.0, 0.0])}
  out = steps_lib.update_ema(ema, new, jnp.array(100), 0.9)
  np.testing.assert_allclose(out["w"], [0.1, 9.0], rtol=1e-6)
  # Warm-up: decay min(0.9, (1 + t) / (10 + t)) = 0.1 at t = 0.
  out = steps_lib.update_ema(ema, new, jnp.array(0), 0.9, warmup=True)
  np.testing.assert_allclose(out["w"], [0.9, 1.0], rtol=1e-6)
  out = steps_lib.update_ema(ema, new, jnp.array(10**6), 0.9, warmup=True)
  np.testing.assert_allclose(out["w"], [0.1, 9.0], rtol=1e-5)


def test_train_step_keeps_an_ema_and_eval_reads_it():
  model = TinyBN()
  c = common.base()
  c.optimizer, c.learning_rate, c.schedule = "adam", 3e-3, "constant"
  tx = optim.create_optimizer(c, optim.create_schedule(c, 1))
  state = steps_lib.init_state(model, tx, jax.random.key(0), (8, 8, 3), ema=True)
  assert set(state.ema) == {"params", "batch_stats"}
  decay = 0.75
  cfg = steps_lib.StepConfig.normalizing((0.5,) * 3, (0.25,) * 3, ema_decay=decay)
  step = jax.jit(steps_lib.make_train_step(model, tx, cfg, jax.random.key(1)))
  images, labels = _batch(16, (8, 8, 3))
  s1, _ = _run(step, state, images, labels)
  s2, _ = _run(step, s1, images, labels)
  # After two steps: ema = d^2 w0 + d (1 - d) w1 + (1 - d) w2, for weights and BN stats.
  for tree in ("params", "batch_stats"):
    w0, w1, w2 = (getattr(s, tree) for s in (state, s1, s2))
    want = jax.tree.map(lambda a, b, c_: decay**2 * a + decay * (1 - decay) * b
                        + (1 - decay) * c_, w0, w1, w2)
    for got, exp in zip(jax.tree.leaves(s2.ema[tree]), jax.tree.leaves(want)):
      np.testing.assert_allclose(got, exp, rtol=1e-5, atol=1e-6)
  raw = jax.jit(steps_lib.make_eval_step(model, cfg))
  ema = jax.jit(steps_lib.make_eval_step(model, cfg, use_ema=True))
  mask = jnp.ones(16, bool)
  zero = lambda: steps_lib.zero_metrics(steps_lib.EVAL_METRICS)
  assert float(raw(s2, zero(), images, labels, mask)["loss"]) != pytest.approx(
      float(ema(s2, zero(), images, labels, mask)["loss"]), rel=1e-4)
  swapped = s2.replace(params=s2.ema["params"], batch_stats=s2.ema["batch_stats"])
  np.testing.assert_allclose(ema(s2, zero(), images, labels, mask)["loss"],
                             raw(swapped, zero(), images, labels, mask)["loss"], rtol=1e-6)


def test_train_step_with_the_full_recipe():
  """Random-resized crop, flip, RandAugment, erasing (pixel), Mixup/CutMix with soft
  targets and the eval crop together: a finite loss, moving weights, and the same step
  twice for the same state (randomness from the step number only)."""
  model, tx, state = _setup()
  c = common.base()
  c.augment.update(dict(inception_crop=True, flip=True, rand_augment="rand-m9-n1-mstd0.5-inc1",
                        random_erasing=0.25, erase_mode="pixel", mixup=0.8, cutmix=1.0,
                        eval_crop_pct=0.875, resize_method="bicubic"))
  c.label_smoothing = 0.1
  plan = recipe.plan(recipe.Recipe.from_config(c.augment), source="device", image_size=16,
                     channels=1, stored_size=16, mean=(0.5,), std=(0.25,), num_classes=10,
                     label_smoothing=0.1)
  assert plan.op_names() == ["random_resized_crop", "flip", "rand_augment", "random_erasing",
                             "normalize", "mixup_cutmix"]
  cfg = steps_lib.StepConfig.from_config(c, plan)
  step = jax.jit(steps_lib.make_train_step(model, tx, cfg, jax.random.key(1)))
  images, labels = _batch(16)
  a, acc = _run(step, state, images, labels)
  b, _ = _run(step, state, images, labels)
  assert np.isfinite(float(acc["loss"]))
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(x, y)
  assert any(not np.allclose(x, z) for x, z in zip(jax.tree.leaves(a.params),
                                                  jax.tree.leaves(state.params)))
  ev = jax.jit(steps_lib.make_eval_step(model, cfg))(
      a, steps_lib.zero_metrics(steps_lib.EVAL_METRICS), images, labels, jnp.ones(16, bool))
  assert float(ev["count"]) == 16 and np.isfinite(float(ev["loss"]))


class TinyDense(nn.Module):
  """A conv net with global average pooling and a ``dense`` method, as VGG's dense
  evaluation: the same weights applied fully convolutionally, then averaged over space."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    return self.scores(x).mean(axis=(1, 2))

  @nn.compact
  def scores(self, x):
    return nn.Conv(10, (3, 3), name="conv")(x)

  def dense(self, x):
    return 2.0 * self.scores(x).mean(axis=(1, 2))  # 2x: tells the two methods apart


def _eval(model, state, cfg, images, labels):
  step = jax.jit(steps_lib.make_eval_step(model, cfg))
  return step(state, steps_lib.zero_metrics(steps_lib.EVAL_METRICS), images, labels,
              jnp.ones(labels.shape[0], bool))


def test_ten_crop_eval_averages_the_softmax_of_ten_views():
  import input_pipeline  # pylint: disable=g-import-not-at-top
  model, _, state = _setup("tiny_bn", shape=(8, 8, 3))
  images, labels = _batch(6, (8, 8, 3))
  c = common.base()
  c.augment.update(dict(eval_crop_pct=0.8, eval_mode="ten_crop"))
  plan = recipe.plan(recipe.Recipe.from_config(c.augment), source="device", image_size=8,
                     channels=3, stored_size=8, mean=(0.5,) * 3, std=(0.25,) * 3)
  assert [o.name for o in plan.eval_device] == ["resize_square", "ten_crop", "normalize"]
  m = _eval(model, state, steps_lib.StepConfig.from_config(c, plan), images, labels)
  views = input_pipeline.ten_crop(input_pipeline.augment.resize_square(images, 10), 8)
  x = input_pipeline.normalize(views.reshape(60, 8, 8, 3), (0.5,) * 3, (0.25,) * 3)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  logits = model.apply(variables, x, train=False).reshape(6, 10, 10)
  probs = np.asarray(jax.nn.softmax(logits, -1)).mean(axis=1)
  want_loss = -np.log(probs[np.arange(6), np.asarray(labels)]).sum()
  np.testing.assert_allclose(m["loss"], want_loss, rtol=1e-5)
  assert float(m["top1"]) == float((probs.argmax(-1) == np.asarray(labels)).sum())
  assert float(m["count"]) == 6


def test_dense_eval_runs_the_dense_method_at_every_scale_and_flip():
  model = TinyDense()
  images, labels = _batch(4, (8, 8, 3))
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  state = steps_lib.TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                               batch_stats={}, opt_state=())
  c = common.base()
  c.augment.update(dict(eval_mode="dense", eval_scales=(8, 12)))
  plan = recipe.plan(recipe.Recipe.from_config(c.augment), source="device", image_size=8,
                     channels=3, stored_size=8, mean=(0.5,) * 3, std=(0.25,) * 3,
                     dense_eval=True)
  m = _eval(model, state, steps_lib.StepConfig.from_config(c, plan), images, labels)
  x = (np.asarray(images, np.float32) / 255 - 0.5) / 0.25
  outs = []
  for q in (8, 12):
    xq = jax.image.resize(x, (4, q, q, 3), "bilinear", antialias=True)
    for v in (xq, xq[:, :, ::-1]):
      outs.append(model.apply(variables, v, method="dense"))
  probs = np.asarray(jax.nn.softmax(jnp.stack(outs, 1), -1)).mean(axis=1)
  want_loss = -np.log(probs[np.arange(4), np.asarray(labels)]).sum()
  np.testing.assert_allclose(m["loss"], want_loss, rtol=1e-5)


@pytest.mark.parametrize("name,shape,optimizer", [("lenet1989", (16, 16, 1), "sgd"),
                                                  ("lenet5_modern", (28, 28, 1), "adamw")])
def test_the_initial_state_compiled_for_compile_time_is_bitwise_the_default_one(
    name, shape, optimizer):
  """``jit_init`` compiles the initial state faster (on a CPU: XLA's optimisation level
  1); its values must be bitwise those of XLA's default level, 2. The two models draw
  from every initialiser kind of the zoo's defaults: uniform (LeNet-1989's +-2.4/F),
  truncated normal (Flax's lecun_normal), zeros and constants."""
  c = common.base()
  c.optimizer = optimizer
  tx = optim.create_optimizer(c, optim.create_schedule(c, 1))
  model = models.create_model(name, num_classes=10)
  init_fn = lambda key: steps_lib.init_state(model, tx, key, shape, ema=True)
  where = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  key = jax.random.key(3)
  fast = steps_lib.jit_init(init_fn, where)(key)
  default = jax.jit(init_fn, compiler_options={"xla_backend_optimization_level": 2})(key)
  fast, default = jax.tree.leaves(fast), jax.tree.leaves(default)
  assert len(fast) == len(default) > 4
  for a, b in zip(fast, default):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("ema_decay", [0.0, 0.99])
def test_state_initializer_keeps_a_moving_average_only_where_the_config_asks(ema_decay):
  config = common.base()
  config.ema_decay = ema_decay
  model = models.create_model("lenet1989", num_classes=10)
  tx = optim.create_optimizer(config, optim.create_schedule(config, 1))
  init = steps_lib.state_initializer(model, tx, [16, 16, 1], config)
  state = jax.eval_shape(init, jax.random.key(0))
  want = jax.eval_shape(lambda k: steps_lib.init_state(model, tx, k, (16, 16, 1),
                                                       ema=bool(ema_decay)),
                        jax.random.key(0))
  assert jax.tree.structure(state) == jax.tree.structure(want)
  if ema_decay:
    assert jax.tree.structure(state.ema["params"]) == jax.tree.structure(state.params)
  else:
    assert state.ema == {}
