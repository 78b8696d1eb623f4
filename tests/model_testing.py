"""Helpers shared by the model tests: abstract parameter counts and a short fit."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from configs import common
from training import optim
from training import steps as steps_lib


def count_params(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree))


def abstract_init(model, shape, dtype=jnp.float32):
  """``model.init``'s variables as shapes only (jax.eval_shape: traced, not compiled)."""
  x = jax.ShapeDtypeStruct(shape, dtype)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def random_variables(model, shape, seed: int = 0):
  """Real-valued variables for ``model`` without compiling its init: He-scaled random
  kernels, random BatchNorm parameters and statistics, small random biases."""
  rng = np.random.default_rng(seed)

  def fill(path, a):
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      return rng.normal(0.0, math.sqrt(2.0 / math.prod(a.shape[:-1])), a.shape)
    if "'var'" in name or "'scale'" in name:
      return rng.uniform(0.5, 1.5, a.shape)
    return rng.normal(0.0, 0.1, a.shape)

  return jax.tree_util.tree_map_with_path(lambda p, a: jnp.asarray(fill(p, a), jnp.float32),
                                          abstract_init(model, shape))


def compile_at_level_0(fn, *args):
  """``jax.jit(fn)`` compiled for ``args`` at XLA's lowest backend optimisation level:
  about half the compile time of a large graph on a CPU, for a program a test runs once
  or twice."""
  return jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})


def fast_key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl="unsafe_rbg")  # initialises faster than threefry on CPU


def train_on_fixed_batch(model, image_shape, steps: int = 8, batch: int = 16):
  """``steps`` Adam (1e-3) train steps on one fixed random uint8 batch of 10 classes.

  Returns ``(initial, losses, final)``: the state before and after, as NumPy trees, and
  the loss of every step.
  """
  c = common.base()
  c.optimizer, c.learning_rate, c.schedule = "adam", 1e-3, "constant"
  tx = optim.create_optimizer(c, optim.create_schedule(c, 1))
  state = jax.jit(lambda k: steps_lib.init_state(model, tx, k, image_shape))(fast_key(0))
  channels = image_shape[-1]
  cfg = steps_lib.StepConfig.normalizing((0.5,) * channels, (0.25,) * channels)
  step = jax.jit(steps_lib.make_train_step(model, tx, cfg, fast_key(1)))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (batch, *image_shape), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, batch).astype(np.int32))
  initial = jax.tree.map(np.asarray, state)
  losses = []
  for _ in range(steps):
    state, acc = step(state, steps_lib.zero_metrics(steps_lib.TRAIN_METRICS), images, labels)
    losses.append(float(acc["loss"] / acc["count"]))
  return initial, losses, jax.tree.map(np.asarray, state)
