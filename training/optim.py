"""Optimizers and learning-rate schedules from the config, through optax.

Weight decay applies to convolution and dense kernels only: biases (the untied biases of
LeNet-1989 too) and norm scales are left alone, as in every modern recipe.
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine")


def decay_mask(params: Any) -> Any:
  """True for leaves that get weight decay: those named ``kernel``."""
  def is_kernel(path, _):
    last = path[-1]
    return getattr(last, "key", getattr(last, "name", None)) == "kernel"
  return jax.tree_util.tree_map_with_path(is_kernel, params)


def create_schedule(config: ml_collections.ConfigDict,
                    steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up (optional) followed by a constant, step or cosine schedule."""
  lr = config.learning_rate
  total = config.num_epochs * steps_per_epoch
  warmup = int(round(config.warmup_epochs * steps_per_epoch))
  if config.schedule == "constant":
    main = optax.constant_schedule(lr)
  elif config.schedule == "step":
    boundaries = {int(round(e * steps_per_epoch)) - warmup: config.decay_factor
                  for e in config.decay_epochs}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  elif config.schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(total - warmup, 1),
                                       alpha=config.min_learning_rate / lr if lr else 0.0)
  else:
    raise ValueError(f"unknown schedule {config.schedule!r}; use one of {SCHEDULES}")
  if warmup <= 0:
    return main
  ramp = optax.linear_schedule(0.0, lr, warmup)
  return optax.join_schedules([ramp, main], [warmup])


def create_optimizer(config: ml_collections.ConfigDict,
                     schedule: optax.Schedule) -> optax.GradientTransformation:
  """SGD (momentum, Nesterov) with L2 decay, Adam with L2 decay, AdamW, or RMSProp
  (TensorFlow's, with L2 decay); optionally
  after clipping the gradients' global norm to ``config.grad_clip_norm`` (ViT: 1.0)."""
  tx = _base_optimizer(config, schedule)
  if config.get("grad_clip_norm"):
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx


def _base_optimizer(config: ml_collections.ConfigDict,
                    schedule: optax.Schedule) -> optax.GradientTransformation:
  name, wd = config.optimizer, config.weight_decay
  if name == "sgd":
    tx = optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov)
    # Classic coupled L2: decay is added to the gradient before momentum.
    return optax.chain(optax.add_decayed_weights(wd, decay_mask), tx) if wd else tx
  if name == "adam":
    tx = optax.adam(schedule, b1=config.b1, b2=config.b2, eps=config.eps)
    return optax.chain(optax.add_decayed_weights(wd, decay_mask), tx) if wd else tx
  if name == "rmsprop":
    # TensorFlow 1's RMSProp, as the MobileNet and Inception papers trained: eps inside
    # the square root, the mean square starting at 1, momentum applied after the rate.
    tx = optax.rmsprop(schedule, decay=config.rms_decay, eps=config.eps, initial_scale=1.0,
                       eps_in_sqrt=True, momentum=config.momentum or None)
    return optax.chain(optax.add_decayed_weights(wd, decay_mask), tx) if wd else tx
  if name == "adamw":
    return optax.adamw(schedule, b1=config.b1, b2=config.b2, eps=config.eps,
                       weight_decay=wd, mask=decay_mask)
  raise ValueError(f"unknown optimizer {name!r}; use one of {OPTIMIZERS}")
