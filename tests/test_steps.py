"""The pure train and eval steps."""

import jax
import jax.numpy as jnp
import numpy as np

import models
from configs import common
from training import optim
from training import steps as steps_lib


def _setup(model_name="lenet1989", shape=(16, 16, 1), **model_kw):
  model = models.create_model(model_name, num_classes=10, **model_kw)
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
  cfg = steps_lib.StepConfig(loss="cross_entropy", mean=(0.5,), std=(0.5,))
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


def test_train_step_updates_batch_stats():
  model, tx, state = _setup("resnet20", shape=(8, 8, 3), width=4)
  cfg = steps_lib.StepConfig(mean=(0.5,) * 3, std=(0.25,) * 3, crop_padding=1, flip=True)
  step = jax.jit(steps_lib.make_train_step(model, tx, cfg, jax.random.key(1)))
  images, labels = _batch(16, (8, 8, 3))
  before = jax.tree.map(np.asarray, state.batch_stats)
  state, _ = step(state, steps_lib.zero_metrics(steps_lib.TRAIN_METRICS), images, labels)
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), before, state.batch_stats)
  assert all(jax.tree.leaves(changed))


def test_eval_step_masks_padding():
  model, _, state = _setup()
  cfg = steps_lib.StepConfig(loss="mse", mean=(0.5,), std=(0.5,))
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
