"""Pure train and eval steps.

A step takes the state and a batch and returns the new state and summed metrics; it
never touches the host. ``make_train_step`` / ``make_eval_step`` close over the static
pieces (model, optimizer, loss, augmentation) and return functions that train.py
compiles with ``jax.jit`` over the device mesh.

For device-resident datasets the batch is sliced out of the whole dataset inside the
same compiled step (``device_train_step``), so shuffling, augmentation, the forward and
backward passes and the update are one XLA program per step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

import input_pipeline
from training import losses


@flax.struct.dataclass
class TrainState:
  """Everything a step changes. ``ema`` is ``{"params", "batch_stats"}``, the
  exponential moving average of the weights, or ``{}`` when the recipe has none."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema: Any = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static choices baked into the compiled steps."""
  loss: str = "cross_entropy"
  label_smoothing: float = 0.0
  crop_padding: int = 0
  crop_mode: str = "constant"
  flip: bool = False
  erase_prob: float = 0.0
  mean: tuple[float, ...] = (0.0,)
  std: tuple[float, ...] = (1.0,)
  aux_loss_weight: float = 0.3  # for models with auxiliary classifiers (GoogLeNet)
  # BatchNorm batch statistics: "global" (over the whole batch, all devices: synchronised
  # BN) or "per_device" (each device normalises its own share, as the papers' multi-GPU
  # runs did; "ghost" batch norm).
  batchnorm_stats: str = "global"
  # The ImageNet recipes' augmentation, for device-resident data (a host pipeline does
  # the crop, flip, RandAugment and colour jitter itself; these stay off then).
  image_size: int = 0  # output of the random-resized crop and of the eval crop (0: input)
  inception_crop: bool = False  # random-resized crop instead of the padded translation
  crop_scale: tuple[float, float] = (0.08, 1.0)
  crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
  resize_method: str = "bilinear"  # bilinear | bicubic
  rand_augment: str = ""  # timm spec, e.g. "rand-m9-mstd0.5-inc1"; "" = off
  color_jitter: float = 0.0  # brightness = contrast = saturation strength (off with RA)
  erase_mode: str = "uniform"  # uniform (Zhong et al.) | pixel (timm: normal per pixel)
  eval_crop_pct: float = 0.0  # > 0: evaluate on resize(size / pct) + centre crop
  # Mixup / CutMix (timm's batch mode); they make soft targets, smoothed by
  # label_smoothing.
  mixup_alpha: float = 0.0
  cutmix_alpha: float = 0.0
  mixup_prob: float = 1.0
  mixup_switch_prob: float = 0.5
  num_classes: int = 0  # needed by Mixup / CutMix
  # Optimisation.
  grad_accum_steps: int = 1  # micro-batches per update: the batch runs in k pieces
  ema_decay: float = 0.0  # weight EMA decay per step (ConvNeXt: 0.9999); 0 = off
  ema_warmup: bool = False  # decay min(ema_decay, (1 + t) / (10 + t)), timm's warm-up

  @property
  def mixing(self) -> bool:
    return self.mixup_prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


def init_state(model: nn.Module, tx: optax.GradientTransformation, rng: jax.Array,
               image_shape: tuple[int, ...], ema: bool = False) -> TrainState:
  """A fresh state; with ``ema`` the moving average starts at the initial weights."""
  variables = model.init({"params": rng, "dropout": rng},
                         jnp.zeros((1, *image_shape), jnp.float32), train=False)
  params = variables["params"]
  batch_stats = variables.get("batch_stats", {})
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params),
                    ema={"params": params, "batch_stats": batch_stats} if ema else {})


def zero_metrics(names: tuple[str, ...]) -> dict[str, jax.Array]:
  return {k: jnp.zeros((), jnp.float32) for k in names}


TRAIN_METRICS = ("loss", "correct", "count")
EVAL_METRICS = ("loss", "top1", "top5", "count")


def _preprocess(cfg: StepConfig, rng: jax.Array | None, images: jax.Array) -> jax.Array:
  """Augmentation (training, ``rng`` given) or the eval crop, then normalisation."""
  x = images.astype(jnp.float32)
  if rng is not None:
    x = input_pipeline.augment(
        rng, x, crop_padding=cfg.crop_padding, crop_mode=cfg.crop_mode, flip=cfg.flip,
        erase_prob=cfg.erase_prob, erase_mode=cfg.erase_mode, mean=cfg.mean, std=cfg.std,
        inception_crop=cfg.inception_crop, size=cfg.image_size, crop_scale=cfg.crop_scale,
        crop_ratio=cfg.crop_ratio, resize_method=cfg.resize_method,
        rand_augment=cfg.rand_augment, jitter=cfg.color_jitter)
  elif cfg.eval_crop_pct:
    x = input_pipeline.center_crop(x, cfg.image_size or x.shape[1], cfg.eval_crop_pct,
                                   method=cfg.resize_method)
  return input_pipeline.normalize(x, jnp.asarray(cfg.mean), jnp.asarray(cfg.std))


def split_outputs(out: Any) -> tuple[jax.Array, tuple[jax.Array, ...]]:
  """``(logits, aux_logits)`` from a model's training output.

  A model with auxiliary classifiers (GoogLeNet) returns ``(logits, (aux1, ...))`` when
  ``train=True``; every other model returns logits alone. The reported training loss
  and accuracy are the main classifier's; the optimised loss adds
  ``aux_loss_weight`` times each auxiliary loss (GoogLeNet: 0.3).
  """
  if isinstance(out, tuple):
    logits, aux = out
    return logits, tuple(aux)
  return out, ()


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, cfg: StepConfig,
                    base_rng: jax.Array,
                    constrain: Callable[[Any], Any] = lambda x: x,
                    mesh: jax.sharding.Mesh | None = None) -> Callable:
  """Returns ``train_step(state, metrics, images, labels) -> (state, metrics)``.

  ``images`` are raw uint8 NHWC; ``metrics`` holds running sums since the last log.
  Randomness (augmentation, dropout) is derived from ``base_rng`` and the step number, so
  a resumed run draws exactly what an uninterrupted one would have.

  With ``cfg.batchnorm_stats == "per_device"`` the forward and backward passes run under
  ``shard_map`` over the batch axes of ``mesh``: each device's BatchNorm sees only its own
  examples, then the gradients and the running statistics are averaged over devices.
  """

  def loss_and_grads(params, batch_stats, x, targets, dropout_rng):
    def loss_fn(params):
      variables = {"params": params}
      if batch_stats:
        variables["batch_stats"] = batch_stats
      out, updates = model.apply(variables, x, train=True, rngs={"dropout": dropout_rng},
                                 mutable=["batch_stats"] if batch_stats else [])
      logits, aux_logits = split_outputs(out)
      loss_of = lambda z: losses.per_example_loss(
          cfg.loss, z.astype(jnp.float32), targets, cfg.label_smoothing).mean()
      loss = loss_of(logits)
      total = loss + cfg.aux_loss_weight * sum(loss_of(z) for z in aux_logits)
      return total, (loss, logits.astype(jnp.float32),
                     updates.get("batch_stats", batch_stats))

    (_, (loss, logits, new_stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(params)
    return loss, logits, new_stats, grads

  axes = tuple(mesh.axis_names) if mesh is not None else ()
  if cfg.batchnorm_stats == "per_device":
    if mesh is None:
      raise ValueError("batchnorm_stats='per_device' needs the device mesh")
    local = loss_and_grads

    def per_device(params, batch_stats, x, targets, dropout_rng):
      # Each device: its own examples, its own dropout masks, its own BN statistics.
      dropout_rng = jax.random.fold_in(dropout_rng, jax.lax.axis_index(axes))
      loss, logits, new_stats, grads = local(params, batch_stats, x, targets, dropout_rng)
      mean = lambda t: jax.lax.pmean(t, axes)
      # Equal shares, so the mean of the per-device means is the batch mean.
      return mean(loss), logits, mean(new_stats), mean(grads)

    batch = P(axes)
    loss_and_grads = jax.shard_map(
        per_device, mesh=mesh, in_specs=(P(), P(), batch, batch, P()),
        out_specs=(P(), batch, P(), P()), check_vma=False)
  elif cfg.batchnorm_stats != "global":
    raise ValueError(f"batchnorm_stats must be 'global' or 'per_device', "
                     f"got {cfg.batchnorm_stats!r}")
  k = cfg.grad_accum_steps
  if k < 1:
    raise ValueError(f"grad_accum_steps must be >= 1, got {k}")

  def accumulated(params, batch_stats, x, targets, dropout_rng):
    """The batch as k micro-batches, one after another; the mean of their gradients.

    Micro-batch j holds rows j, j + k, j + 2k, ... so that each one is still spread
    over every device. Only one micro-batch's activations are alive at a time. With
    BatchNorm each micro-batch normalises by its own statistics and updates the running
    ones in turn, as k separate forward passes in PyTorch would.
    """
    n = x.shape[0]
    if n % k:
      raise ValueError(f"batch {n} does not split into grad_accum_steps={k} micro-batches")
    micro = lambda t: t.reshape(n // k, k, *t.shape[1:]).swapaxes(0, 1)
    xs, ts = micro(x), micro(targets)
    if mesh is not None:
      spread = jax.sharding.NamedSharding(mesh, P(None, axes))
      xs, ts = (jax.lax.with_sharding_constraint(t, spread) for t in (xs, ts))

    def body(carry, inputs):
      stats, grad_sum, loss_sum = carry
      xi, ti, j = inputs
      loss, logits, stats, grads = loss_and_grads(
          params, stats, xi, ti, jax.random.fold_in(dropout_rng, j))
      grad_sum = jax.tree.map(jnp.add, grad_sum, grads)
      return (stats, grad_sum, loss_sum + loss), logits

    zeros = jax.tree.map(jnp.zeros_like, params)
    (stats, grad_sum, loss_sum), logits = jax.lax.scan(
        body, (batch_stats, zeros, jnp.zeros((), jnp.float32)),
        (xs, ts, jnp.arange(k)))
    logits = logits.swapaxes(0, 1).reshape(n, -1)  # back to the batch's row order
    return loss_sum / k, logits, stats, jax.tree.map(lambda g: g / k, grad_sum)

  forward_backward = loss_and_grads if k == 1 else accumulated

  def train_step(state: TrainState, metrics: dict, images: jax.Array, labels: jax.Array):
    images, labels = constrain((images, labels))
    rng = jax.random.fold_in(base_rng, state.step)
    aug_rng, mix_rng, dropout_rng = jax.random.split(rng, 3)
    x = _preprocess(cfg, aug_rng, images)
    targets = labels
    if cfg.mixing:
      x, targets = input_pipeline.mixup_cutmix(
          mix_rng, x, labels, cfg.num_classes, mixup_alpha=cfg.mixup_alpha,
          cutmix_alpha=cfg.cutmix_alpha, prob=cfg.mixup_prob,
          switch_prob=cfg.mixup_switch_prob, label_smoothing=cfg.label_smoothing)
    loss, logits, batch_stats, grads = forward_backward(
        state.params, state.batch_stats, x, targets, dropout_rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema
    if cfg.ema_decay:
      ema = update_ema(ema, {"params": params, "batch_stats": batch_stats}, state.step,
                       cfg.ema_decay, cfg.ema_warmup)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state, ema=ema)
    n = labels.shape[0]
    metrics = {
        "loss": metrics["loss"] + loss * n,
        # Against the original labels, also under Mixup / CutMix.
        "correct": metrics["correct"] + jnp.sum(jnp.argmax(logits, -1) == labels),
        "count": metrics["count"] + n,
    }
    return new_state, metrics

  return train_step


def update_ema(ema: Any, new: Any, step: jax.Array, decay: float,
               warmup: bool = False) -> Any:
  """``decay * ema + (1 - decay) * new`` for every leaf (timm's ModelEmaV2: weights and
  BatchNorm statistics alike). With ``warmup`` the decay is
  ``min(decay, (1 + step) / (10 + step))`` so that short runs are not dominated by the
  initial weights."""
  d = jnp.asarray(decay, jnp.float32)
  if warmup:
    t = step.astype(jnp.float32)
    d = jnp.minimum(d, (1.0 + t) / (10.0 + t))
  return jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema, new)


def make_eval_step(model: nn.Module, cfg: StepConfig,
                   constrain: Callable[[Any], Any] = lambda x: x,
                   use_ema: bool = False) -> Callable:
  """Returns ``eval_step(state, metrics, images, labels, mask) -> metrics``.

  Padded examples (``mask == False``) count nowhere, so every test example is counted
  exactly once. The loss is the training loss without label smoothing. ``use_ema``
  evaluates the moving average of the weights instead of the weights.
  """

  def eval_step(state: TrainState, metrics: dict, images, labels, mask):
    images, labels, mask = constrain((images, labels, mask))
    x = _preprocess(cfg, None, images)
    weights = state.ema if use_ema else {"params": state.params,
                                         "batch_stats": state.batch_stats}
    variables = {"params": weights["params"]}
    if weights["batch_stats"]:
      variables["batch_stats"] = weights["batch_stats"]
    logits = model.apply(variables, x, train=False).astype(jnp.float32)
    loss = losses.per_example_loss(cfg.loss, logits, labels)
    k = min(5, logits.shape[-1])
    topk = jax.lax.top_k(logits, k)[1]
    top1 = topk[:, 0] == labels
    top5 = jnp.any(topk == labels[:, None], axis=-1)
    m = mask.astype(jnp.float32)
    return {
        "loss": metrics["loss"] + jnp.sum(loss * m),
        "top1": metrics["top1"] + jnp.sum(top1 * m),
        "top5": metrics["top5"] + jnp.sum(top5 * m),
        "count": metrics["count"] + jnp.sum(m),
    }

  return eval_step


def device_train_loop(train_step: Callable, batch_size: int, steps_per_epoch: int) -> Callable:
  """Wraps ``train_step`` to run ``num_steps`` steps on the device-resident dataset.

  The steps run in one ``fori_loop`` inside one compiled call, so the host dispatches
  once per log interval instead of once per step; with batch size 1 (the 1989 recipe)
  that is a 10x speed-up. ``num_steps`` is static: calls must not cross an epoch, since
  ``perm`` is the permutation of one epoch. With ``num_steps=1`` there is no loop: on
  XLA:CPU a convolution inside a loop runs several times slower (LeNet-5 modern: 150
  against 1,010 images/s), so conv nets on a CPU train one step per call
  (``config.device_loop=False``).
  """

  def loop(state, metrics, data, perm, num_steps: int):
    def body(_, carry):
      state, metrics = carry
      images, labels = input_pipeline.train_batch(
          data["train_images"], data["train_labels"], perm,
          state.step % steps_per_epoch, batch_size)
      return train_step(state, metrics, images, labels)
    if num_steps == 1:  # no loop at all: XLA:CPU runs convolutions ~7x slower in loops
      return body(0, (state, metrics))
    return jax.lax.fori_loop(0, num_steps, body, (state, metrics))

  return loop


def device_eval_step(eval_step: Callable, batch_size: int) -> Callable:
  """Wraps ``eval_step`` to slice a padded, masked batch from the device dataset."""

  def step(state, metrics, data, batch_index):
    images, labels, mask = input_pipeline.eval_batch(
        data["test_images"], data["test_labels"], batch_index, batch_size)
    return eval_step(state, metrics, images, labels, mask)

  return step
