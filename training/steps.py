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
import functools
from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

import input_pipeline
from input_pipeline import recipe as recipe_lib
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


def _identity_ops() -> tuple[recipe_lib.Op, ...]:
  return (recipe_lib.op("normalize", mean=(0.0,), std=(1.0,)),)


@dataclasses.dataclass(frozen=True)
class StepConfig:
  """Static choices baked into the compiled steps.

  ``train_ops`` / ``eval_ops`` are the device halves of the run's data plan
  (``input_pipeline.recipe.plan``): the step runs exactly these, in order. The other
  fields are the config's own, under the config's names (``from_config``).
  """
  train_ops: tuple[recipe_lib.Op, ...] = dataclasses.field(default_factory=_identity_ops)
  eval_ops: tuple[recipe_lib.Op, ...] = dataclasses.field(default_factory=_identity_ops)
  loss: str = "cross_entropy"
  label_smoothing: float = 0.0
  map_j: float | None = None  # LeNet-5's MAP criterion's constant j (losses.cross_entropy)
  aux_loss_weight: float = 0.3  # for models with auxiliary classifiers (GoogLeNet)
  # BatchNorm batch statistics: "global" (over the whole batch, all devices: synchronised
  # BN) or "per_device" (each device normalises its own share, as the papers' multi-GPU
  # runs did; "ghost" batch norm).
  batchnorm_stats: str = "global"
  grad_accum_steps: int = 1  # micro-batches per update: the batch runs in k pieces
  ema_decay: float = 0.0  # weight EMA decay per step (ConvNeXt: 0.9999); 0 = off
  ema_warmup: bool = False  # decay min(ema_decay, (1 + t) / (10 + t)), timm's warm-up

  @classmethod
  def from_config(cls, config: Any, plan: recipe_lib.Plan) -> "StepConfig":
    """The step of ``config`` with the device ops of ``plan``; every other field is the
    config field of the same name."""
    names = [f.name for f in dataclasses.fields(cls) if not f.name.endswith("_ops")]
    return cls(train_ops=plan.train_device, eval_ops=plan.eval_device,
               **{n: config[n] for n in names})

  @classmethod
  def normalizing(cls, mean, std, **fields) -> "StepConfig":
    """No augmentation, evaluation as is: only ``normalize(mean, std)`` (tests, tools)."""
    ops = (recipe_lib.op("normalize", mean=tuple(mean), std=tuple(std)),)
    return cls(train_ops=ops, eval_ops=ops, **fields)

  @property
  def mixing(self) -> bool:
    return any(o.name == "mixup_cutmix" for o in self.train_ops)

  @property
  def dense_scales(self) -> tuple[int, ...]:
    return next((o.kwargs["scales"] for o in self.eval_ops if o.name == "dense"), ())


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


def state_initializer(model: nn.Module, tx: optax.GradientTransformation,
                      image_shape: tuple[int, ...], config: Any
                      ) -> Callable[[jax.Array], TrainState]:
  """``rng -> init_state(...)`` for ``config``'s run (with the weights' moving average
  where ``config.ema_decay`` asks for one): what train.py compiles, the benchmark times
  and the config check traces."""
  return functools.partial(init_state, model, tx, image_shape=tuple(image_shape),
                           ema=bool(config.ema_decay))


def jit_init(init_fn: Callable[[jax.Array], TrainState], out_shardings: Any) -> Callable:
  """``jax.jit(init_fn)`` for the initial state, compiled for compile time: the program
  runs once, and what it costs is compiling it (threefry's hashing for every parameter).

  On a CPU it compiles at XLA's backend optimisation level 1 instead of 2: the initial
  state of LeNet-1989 compiled in 0.50 s against 1.93, ResNet-20 1.37 against 3.87,
  ResNet-50 4.55 against 7.78, GoogLeNet 8.7 against 19.3 (2-core CPU, jax 0.10.2,
  2026-12-06), and the values are bitwise the same (checked for LeNet-1989, LeNet-5,
  ResNet-20, ResNet-50, AlexNet, GoogLeNet, DenseNet-121, MobileNet v2, ConvNeXt-T,
  ViT-B/16 and airbench94 with SGD's state; tests/test_steps.py checks two). Other
  backends compile with their defaults (not measured there). Level 0 would compile
  faster still, but its values differ."""
  options = {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else {}
  return jax.jit(init_fn, out_shardings=out_shardings, compiler_options=options)


def zero_metrics(names: tuple[str, ...]) -> dict[str, jax.Array]:
  return {k: jnp.zeros((), jnp.float32) for k in names}


TRAIN_METRICS = ("loss", "correct", "count")
EVAL_METRICS = ("loss", "top1", "top5", "count")


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
          cfg.loss, z.astype(jnp.float32), targets, cfg.label_smoothing, cfg.map_j).mean()
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

  def train_step(state: TrainState, metrics: dict, images: jax.Array, labels: jax.Array,
                 example_ids: jax.Array | None = None, epoch: jax.Array | None = None):
    images, labels = constrain((images, labels))
    rng = jax.random.fold_in(base_rng, state.step)
    aug_rng, dropout_rng = jax.random.split(rng)
    # example_ids, epoch: the device pipeline's, for ops that follow an example over the
    # epochs (alternate_flip, whose coins are the run's: base_rng folded with 2^32 - 1, a
    # step the run never reaches).
    x, targets = input_pipeline.apply_ops(
        aug_rng, images, cfg.train_ops, labels, example_ids=example_ids, epoch=epoch,
        run_key=jax.random.fold_in(base_rng, 2**32 - 1))
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

  Multi-view protocols (``flip``, ``ten_crop``, ``dense``) average the softmax of the views, as
  the AlexNet and VGG papers did; top-k and the loss are then of the averaged
  distribution (cross-entropy: -log of the mean probability of the label; with
  ``loss='mse'`` the raw outputs are averaged instead).
  """
  views_ops = tuple(o for o in cfg.eval_ops if o.name != "dense")
  scales = cfg.dense_scales
  method = next((o.kwargs["method"] for o in cfg.eval_ops if o.name == "dense"), None)

  def eval_step(state: TrainState, metrics: dict, images, labels, mask):
    images, labels, mask = constrain((images, labels, mask))
    x, _ = input_pipeline.apply_ops(None, images, views_ops)
    weights = state.ema if use_ema else {"params": state.params,
                                         "batch_stats": state.batch_stats}
    variables = {"params": weights["params"]}
    if weights["batch_stats"]:
      variables["batch_stats"] = weights["batch_stats"]
    apply = lambda v: model.apply(variables, v, train=False).astype(jnp.float32)
    if scales:  # VGG's dense evaluation: every scale, and the flipped image
      b, _, _, c = x.shape
      outs = []
      for q in scales:
        xq = jax.image.resize(x, (b, q, q, c), method=method, antialias=True)
        for v in (xq, xq[:, :, ::-1]):
          outs.append(model.apply(variables, v, method="dense").astype(jnp.float32))
      outputs = jnp.stack(outs, axis=1)  # (B, views, classes)
    elif x.ndim == 5:  # views stacked after the batch axis (ten_crop, flip)
      b, v = x.shape[:2]
      outputs = apply(x.reshape(b * v, *x.shape[2:])).reshape(b, v, -1)
    else:
      outputs = apply(x)
    if outputs.ndim == 3 and cfg.loss == "cross_entropy":
      # The views' probabilities averaged; with the MAP criterion each view's softmax holds
      # its constant logit -j too, so the loss is the criterion's on the average.
      n = outputs.shape[-1]
      if cfg.map_j is not None:
        outputs = losses.with_map_logit(outputs, cfg.map_j)
      log_probs = jnp.log(jnp.mean(jax.nn.softmax(outputs, axis=-1), axis=1) + 1e-30)
      loss = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
      logits = log_probs[:, :n]
    else:
      logits = outputs.mean(axis=1) if outputs.ndim == 3 else outputs
      loss = losses.per_example_loss(cfg.loss, logits, labels, map_j=cfg.map_j)
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
  that is a 10x speed-up. Calls must not cross an epoch, since ``perm`` is the
  permutation of one epoch. ``num_steps`` is an argument of the program, not a constant
  in it, so the shorter interval at an epoch's end runs the same program (one compilation
  of the loop, not one per interval length); ``looped`` (static) is ``num_steps > 1``.
  Without it there is no loop: on XLA:CPU a convolution inside a loop runs several times
  slower (LeNet-5 modern: 150 against 1,010 images/s), so conv nets on a CPU train one
  step per call (``config.device_loop=False``).
  """

  def loop(state, metrics, data, perm, num_steps, looped: bool):
    def body(_, carry):
      state, metrics = carry
      idx = input_pipeline.train_indices(perm, state.step % steps_per_epoch, batch_size)
      images, labels = input_pipeline.take_rows(data["train_images"],
                                                data["train_labels"], idx)
      return train_step(state, metrics, images, labels, idx, state.step // steps_per_epoch)
    if not looped:  # one step, no loop: XLA:CPU runs convolutions ~7x slower in loops
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
