r"""Trains and evaluates any model of the zoo on any dataset, from one config.

  python train.py --config configs/lenet1989.py --workdir runs/lenet1989
  python train.py --config configs/resnet20_cifar.py:tiny --workdir runs/r20 \
      --config.dataset=npz:../shared/data/fashion_mnist/fashion_mnist.npz --config.pad=2

The workdir receives ``config.json``, ``run_info.json`` (what the run is: input shape,
parameters, devices), ``recipe.json`` (the data plan: which augmentation op runs
where), ``metrics.jsonl``, TensorBoard events, orbax checkpoints, ``curves.png`` and
``summary.json`` (``training/rundir.py`` owns the format). Running again with the same
workdir resumes from the latest checkpoint and ends exactly where an uninterrupted run
would.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Sequence

from training import host_memory  # the standard library only

if __name__ == "__main__":  # before JAX starts: huge pages for XLA:CPU's large buffers
  host_memory.use_huge_pages()

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import input_pipeline  # noqa: E402
import kernels  # noqa: E402
import models  # noqa: E402
from input_pipeline import recipe as recipe_lib  # noqa: E402
from training import checkpoint as checkpoint_lib  # noqa: E402
from training import cli  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import data as data_lib  # noqa: E402
from training import logger as logger_lib  # noqa: E402
from training import optim  # noqa: E402
from training import parallel  # noqa: E402
from training import pretrained  # noqa: E402
from training import rundir  # noqa: E402
from training import sdlm  # noqa: E402
from training import steps as steps_lib  # noqa: E402
# pylint: enable=g-import-not-at-top,wrong-import-position


class TrainingError(RuntimeError):
  """A run that cannot go on (bad setup, NaN loss). One line for the user."""


USER_ERRORS = (config_lib.ConfigError, kernels.KernelError, input_pipeline.DatasetError,
               recipe_lib.RecipeError, models.UnknownModelError, models.ModelOptionError,
               checkpoint_lib.CheckpointError, TrainingError, pretrained.PretrainedError,
               parallel.ParallelError)

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def init_from_pretrained(config: ml_collections.ConfigDict, model, state, ds, shardings):
  """Starts from ``config.init_from`` (fine-tuning); a new classifier if classes differ."""
  loaded = pretrained.load_variables(config.init_from, config.model, model, ds.image_shape)
  # Every process gathers the whole (possibly FSDP-split) fresh state, merges the same
  # weights into it, and keeps its own shards.
  host = multihost_utils.process_allgather((state.params, state.batch_stats), tiled=True)
  params, batch_stats, fresh = pretrained.merge_into(*host, loaded, ds.num_classes)
  params, batch_stats = jax.tree.map(parallel.put_global, (params, batch_stats),
                                     (shardings.params, shardings.batch_stats))
  note = f"; newly initialised: {', '.join(fresh)}" if fresh else ""
  print(f"initialised from {config.init_from}{note}", flush=True)
  return state.replace(params=params, batch_stats=batch_stats)


def init_from_data(config: ml_collections.ConfigDict, source, state, shardings, mean, std):
  """The model family's data-dependent init (``models.data_init``; airbench's whitening
  filters) from the first ``config.data_init_images`` training images, normalised as the
  network's input; the moving average, if any, starts from the same weights."""
  images = source.first_train_images(config.data_init_images)
  # input_pipeline.normalize's formula, in NumPy on the host (its jnp version rounds the
  # last bit differently, which would change the measured runs' filters).
  images = (images.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(
      std, np.float32)
  params = multihost_utils.process_allgather(state.params, tiled=True)
  params = models.data_init(config.model)(params, images)
  params = jax.tree.map(parallel.put_global, params, shardings.params)
  if state.ema:
    ema = dict(state.ema, params=jax.tree.map(parallel.put_global, params, shardings.ema["params"]))
    return state.replace(params=params, ema=ema)
  return state.replace(params=params)


def _check_workdir(workdir: str) -> None:
  """A workdir is a directory we can write (or one we can create)."""
  if not workdir.strip():
    raise config_lib.ConfigError("--workdir is empty; give a directory, e.g. --workdir runs/x")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise config_lib.ConfigError(f"--workdir {workdir} is a file, not a directory; give "
                                 "another path")
  parent = workdir
  while not os.path.exists(parent):
    parent = os.path.dirname(os.path.abspath(parent))
  if not os.access(parent, os.W_OK | os.X_OK):
    raise config_lib.ConfigError(f"--workdir {workdir}: {parent} is not writable; give a "
                                 "directory you can write")


def _check_same_experiment(config: ml_collections.ConfigDict,
                           workdir: str) -> list[tuple[str, Any, Any]]:
  """A workdir with checkpoints belongs to the experiment of its ``config.json``: another
  config is refused (naming the fields) unless ``allow_config_change``. Returns the
  allowed changes (to record), or []."""
  path = os.path.join(workdir, rundir.CONFIG)
  if not (rundir.has_checkpoints(workdir) and os.path.exists(path)):
    return []
  try:
    with open(path) as f:
      recorded = json.load(f)
  except (OSError, ValueError) as e:
    raise config_lib.ConfigError(
        f"cannot read {path} ({e}); it records the experiment this workdir's checkpoints "
        "belong to: restore it, or use a new --workdir") from None
  changes = config_lib.experiment_changes(recorded, config)
  if changes and not config.allow_config_change:
    raise config_lib.ConfigError(
        f"{workdir} holds checkpoints of another experiment: "
        f"{config_lib.describe_changes(changes)}. Use a new --workdir, or "
        "--config.allow_config_change=true to continue this run with the change "
        "(e.g. more epochs)")
  return changes


def data_warnings(config: ml_collections.ConfigDict, ds: data_lib.DataInfo) -> list[str]:
  """What the config asks of the data that its labels do not allow (printed, not fatal:
  an ablation may want it): mirror images in training or in the evaluation's views of
  data whose labels a mirror image changes (digits)."""
  if ds.flip:
    return []
  out = []
  if config.augment.flip:
    out.append(f"horizontal flips do not preserve the labels of {ds.name}")
  if config.augment.eval_mode in recipe_lib.MIRRORED_EVAL_MODES:
    out.append(f"eval_mode={config.augment.eval_mode} averages mirror images, which do not "
               f"preserve the labels of {ds.name}; use center or translate")
  return out


def batch_constraint(mesh) -> Any:
  """``tree -> tree`` with every array split over the mesh's batch axes."""
  return lambda tree: jax.tree.map(
      lambda x: jax.lax.with_sharding_constraint(x, parallel.batch_sharding(mesh)), tree)


def jit_with_key(name: str, make: Callable[[jax.Array], Callable], key: jax.Array, mesh, *,
                 donate_argnums: tuple[int, ...] = (), static_argnums: tuple[int, ...] = (),
                 out_shardings: Any = None) -> Callable:
  """``jax.jit(make(key))`` with ``key`` an argument of the compiled program instead of a
  constant inside it: runs that differ only in their seed compile one program, so the
  persistent compilation cache serves a sweep's second seed without compiling."""
  shift = lambda argnums: tuple(i + 1 for i in argnums)
  impl = jax.random.key_impl(key)

  def program(key_data, *args):
    return make(jax.random.wrap_key_data(key_data, impl=impl))(*args)
  program.__name__ = name  # the program's name in compile logs and profiles
  jitted = jax.jit(program, donate_argnums=shift(donate_argnums),
                   static_argnums=shift(static_argnums), out_shardings=out_shardings)
  # Placed from the host's copy: every process holds the same key (one seed).
  key_data = jax.device_put(np.asarray(jax.random.key_data(key)), parallel.replicated(mesh))
  return functools.partial(jitted, key_data)


def compile_train(model, tx, step_cfg: steps_lib.StepConfig, step_rng: jax.Array, source,
                  mesh, state_sharding) -> Any:
  """The run's training function, jitted: ``source``'s loop around the train step, the
  state and metrics donated (updated in place on the device). Called by ``source.train``.
  benchmarks/throughput.py times this very function."""
  make = lambda rng: source.train_loop(steps_lib.make_train_step(
      model, tx, step_cfg, rng, batch_constraint(mesh), mesh))
  return jit_with_key("train", make, step_rng, mesh, donate_argnums=(0, 1),
                      static_argnums=source.train_static_argnums,
                      out_shardings=(state_sharding, parallel.replicated(mesh)))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs training to ``config.num_epochs`` (or resumes it); returns the final summary.
  Every program is traced with ``config.conv_backend``'s convolutions (kernels/)."""
  backend = config.get("conv_backend")
  if backend not in kernels.BACKENDS:  # the config check says what is wrong
    backend = "xla"
  with kernels.conv_backend(backend, jax.devices()):  # the mesh's devices: all of them
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  t_called = time.time()  # start-up: from here to the loop (check, data, initial state)
  # The shared config check (as launch/sweep.py's pre-flight): fields, model options, the
  # model's init traced (not compiled) and the data plan; each mistake is one line.
  checked = config_lib.check(config)
  recipe = recipe_lib.Recipe.from_config(config.augment)
  primary = jax.process_index() == 0  # writes the files and prints; all processes train
  say = print if primary else (lambda *a, **k: None)
  _check_workdir(workdir)
  changes = _check_same_experiment(config, workdir)
  if config.init_from and not rundir.has_checkpoints(workdir):  # resuming does not read it
    pretrained.check_path(config.init_from)

  # Devices: a (data, fsdp) mesh over every device of every process. Every batch is
  # split over all devices; parameters over the fsdp axis when mesh.fsdp > 1.
  mesh = parallel.create_mesh(config.mesh.fsdp)
  replicated = parallel.replicated(mesh)
  for field in ("batch_size", "eval_batch_size"):
    if config[field] % mesh.size:
      raise TrainingError(
          f"{field}={config[field]} does not divide over {mesh.size} devices; use a multiple "
          f"of {mesh.size} (e.g. --config.{field}={mesh.size * max(1, config[field] // mesh.size)})")

  # Data: kept on the accelerator (small datasets) or streamed by a host pipeline.
  rng = jax.random.key(config.seed)
  init_rng, data_rng, step_rng = jax.random.split(rng, 3)
  source = data_lib.open_source(config, mesh, data_rng)
  ds = source.info
  num_train = ds.num_train
  if config.batch_size > num_train:
    raise TrainingError(f"batch_size={config.batch_size} is larger than the {num_train} "
                        f"training examples of {ds.name}; lower --config.batch_size")
  if config.data_init_images > num_train:
    raise TrainingError(f"config.data_init_images={config.data_init_images} is more than the "
                        f"{num_train} training examples of {ds.name}; lower it")
  for warning in data_warnings(config, ds):
    print(f"warning: {warning}", file=sys.stderr)
  steps_per_epoch = input_pipeline.steps_per_epoch(num_train, config.batch_size)
  total_steps = config.num_epochs * steps_per_epoch
  if config.profile_steps and config.profile_steps[1] > total_steps:  # before the workdir
    raise TrainingError(f"config.profile_steps={tuple(config.profile_steps)} ends past the "
                        f"run's last step ({total_steps}); trace steps within it")
  log_every = config.log_every_steps or -(-steps_per_epoch // 4)  # four rows per epoch
  fsdp = f", parameters split over {config.mesh.fsdp}" if config.mesh.fsdp > 1 else ""
  say(f"data: {ds.name}: {num_train} train / {ds.num_test} test images of "
      f"{ds.image_shape}, {ds.num_classes} classes, {source.description}; {mesh.size} "
      f"device(s) ({jax.devices()[0].platform}){fsdp}", flush=True)

  # Model, optimizer and state.
  try:
    model = models.create_model(config.model, num_classes=ds.num_classes,
                                dtype=DTYPES[config.dtype], **config.model_kwargs.to_dict())
  except TypeError as e:
    raise config_lib.ConfigError(f"config.model_kwargs: {e}") from None
  schedule = optim.create_schedule(config, steps_per_epoch)
  try:
    tx = optim.create_optimizer(config, schedule, steps_per_epoch)
  except optim.LayerDecayError as e:
    raise config_lib.ConfigError(f"config.layer_decay: {e}") from None
  init_fn = steps_lib.state_initializer(model, tx, ds.image_shape, config)
  if (tuple(ds.image_shape), ds.num_classes) == (checked.image_shape, checked.num_classes):
    abstract = checked.abstract_state  # the check traced this very init already
  else:  # the data differ from what the config alone says (e.g. an unknown TFDS dataset)
    abstract = jax.eval_shape(init_fn, init_rng)
  num_params = sum(x.size for x in jax.tree.leaves(abstract.params))
  say(f"model: {config.model}: {num_params:,} parameters, compute {config.dtype}"
      + (", convolutions by oneDNN" if config.conv_backend == "onednn" else "")
      + f"; peak learning rate {optim.peak_learning_rate(config):.4g}"
      + (f" ({config.learning_rate:g} per {config.lr_base_batch_size} images)"
         if config.lr_base_batch_size else "")
      + (f"; {config.grad_accum_steps} micro-batches of "
         f"{config.batch_size // config.grad_accum_steps} per step"
         if config.grad_accum_steps > 1 else ""), flush=True)

  # The data plan: every op of the config's recipe, placed on the host or the device.
  # Printed before anything compiles, recorded in recipe.json; the steps run exactly its
  # ops.
  mean, std = data_lib.normalization_stats(config, ds)
  plan = recipe_lib.plan(
      recipe, source=source.kind, image_size=ds.image_shape[0], channels=ds.image_shape[-1],
      stored_size=ds.image_shape[0], mean=mean, std=std, num_classes=ds.num_classes,
      label_smoothing=config.label_smoothing, dense_eval=hasattr(model, "dense"))
  for line in plan.describe():
    say(line, flush=True)
  state_sharding = parallel.state_shardings(abstract, mesh)
  if config.mesh.fsdp > 1:
    split = [s for s in jax.tree.leaves(state_sharding.params) if s.spec != P()]
    say(f"fsdp: {len(split)} of {len(jax.tree.leaves(abstract.params))} parameter arrays "
        f"split over {config.mesh.fsdp} devices (and their optimizer state)", flush=True)
  abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, state_sharding)

  # Created only now, once the data opened and the model and plan were built, so that a
  # run that fails before it starts leaves no empty --workdir behind.
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise config_lib.ConfigError(f"cannot create --workdir {workdir}: {e.strerror}; give "
                                 "a directory you can write") from None
  checkpointer = checkpoint_lib.Checkpointer(workdir, keep=config.keep_checkpoints)
  # The newest checkpoint that restores; newer ones that do not are moved aside to
  # checkpoints/corrupt-<step> with a warning (nothing is deleted).
  latest, state = checkpointer.restore_latest(abstract)
  if latest is not None:
    say(f"resumed from {checkpointer.directory}/{latest} (step {latest}/{total_steps})",
        flush=True)
  else:
    state = steps_lib.jit_init(init_fn, state_sharding)(init_rng)
    if config.init_from:
      state = init_from_pretrained(config, model, state, ds, state_sharding)
    if config.data_init_images:
      state = init_from_data(config, source, state, state_sharding, mean, std)
      say(f"data init: {config.model}'s {models.data_init(config.model).__name__} from "
          f"the first {config.data_init_images} training images", flush=True)
  start_step = int(state.step)

  recipe_path = os.path.join(workdir, rundir.RECIPE)
  if latest is not None and source.kind == "host" and os.path.exists(recipe_path):
    with open(recipe_path) as f:
      before = json.load(f).get("processes")
    if before not in (None, jax.process_count()):
      say(f"warning: this run started with {before} process(es), now {jax.process_count()}:"
          " each reads other parts of the files, so the resumed stream continues at the "
          "same step with another order, not the one an uninterrupted run would have "
          "seen", file=sys.stderr, flush=True)
  if primary:  # the record of the run, once it has been validated
    rundir.write_atomic(os.path.join(workdir, rundir.CONFIG),
                        config.to_json_best_effort(indent=2, sort_keys=True))
    record = json.loads(plan.to_json(recipe))
    record["processes"] = jax.process_count()
    rundir.write_atomic(recipe_path, json.dumps(record, indent=2))
    info = {"model": config.model, "dataset": ds.name, "image_shape": list(ds.image_shape),
            "num_classes": ds.num_classes, "num_params": num_params,
            "num_train": num_train, "num_test": ds.num_test, "devices": mesh.size,
            "processes": jax.process_count(), "platform": jax.devices()[0].platform,
            "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
            # XLA's options change speed and rounding (README, Speed: YNNPACK's share)
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            # malloc's huge pages change speed, not results (training/host_memory.py)
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
            "start_step": start_step, "total_steps": total_steps,
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "command": sys.argv}
    rundir.write_atomic(os.path.join(workdir, rundir.RUN_INFO), json.dumps(info, indent=2))
    if changes:
      with open(os.path.join(workdir, "config_changes.jsonl"), "a") as f:
        f.write(json.dumps({"step": start_step, "time": time.time(), "changes": [
            {"field": k, "was": a, "now": b} for k, a, b in changes]}) + "\n")
      say(f"note: this run continues with a changed config (allow_config_change): "
          f"{config_lib.describe_changes(changes)}; recorded in config_changes.jsonl",
          flush=True)

  # The compiled steps, all here. The state is donated: updated in place on the device.
  step_cfg = steps_lib.StepConfig.from_config(config, plan)
  shard_batch = batch_constraint(mesh)
  train_fn = compile_train(model, tx, step_cfg, step_rng, source, mesh, state_sharding)
  eval_steps = {"raw": steps_lib.make_eval_step(model, step_cfg, shard_batch)}
  if config.ema_decay:
    eval_steps["ema"] = steps_lib.make_eval_step(model, step_cfg, shard_batch, use_ema=True)
  eval_fns = {k: jax.jit(source.eval_loop(f), donate_argnums=(1,), out_shardings=replicated)
              for k, f in eval_steps.items()}
  curvature_fn = None
  if config.optimizer == "sdlm":  # the diagonal Hessian, re-estimated before each pass
    n = config.sdlm.num_samples
    if n > num_train:
      raise TrainingError(f"config.sdlm.num_samples={n} is more than the {num_train} "
                          f"training examples of {ds.name}; lower it")
    curvature_fn = jit_with_key(
        "curvature", lambda rng: source.pass_start_loop(sdlm.make_curvature_step(
            model, config.loss, step_cfg.train_ops, rng, config.sdlm.curvature,
            config.map_j), n),
        jax.random.fold_in(step_rng, 1), mesh, donate_argnums=(0,),
        out_shardings=state_sharding)
    # The estimate's spread, read at the log point after each pass start (no extra wait).
    curvature_stats = jax.jit(lambda o: sdlm.curvature_stats(o, config.sdlm.mu),
                              out_shardings=parallel.replicated(mesh))
  pending_stats = None
  source.start(plan, start_step)

  def evaluate(state) -> dict[str, float]:
    out = {}
    for which, eval_fn in eval_fns.items():
      m = jax.device_get(source.evaluate(eval_fn, state))
      prefix = "" if which == "raw" else "ema_"
      out.update({f"{prefix}eval_loss": float(m["loss"] / m["count"]),
                  f"{prefix}eval_top1": float(m["top1"] / m["count"]),
                  f"{prefix}eval_top5": float(m["top5"] / m["count"])})
      if which == "raw":
        out["eval_count"] = float(m["count"])
    return out

  logger = logger_lib.MetricsLogger(workdir, total_steps, resume_step=start_step,
                                    primary=primary)

  def save(step: int, state, last_loss: float) -> None:
    if not math.isfinite(last_loss):
      return  # never checkpoint a diverged state
    checkpointer.save(step, state)

  # The loop. The host only waits on the device at log, eval and checkpoint points.
  acc = data_lib.fresh_metrics(steps_lib.TRAIN_METRICS, mesh)
  step = start_step
  t_log, step_log = time.time(), start_step
  last_loss, stopped = 0.0, False
  profile = tuple(config.profile_steps)
  profile_dir = os.path.join(workdir, "profile")
  tracing = False
  t_start = t_saved = time.time()
  # Training time: the wall time of the steps after the first (which compiles), less
  # evaluation and checkpointing (speedruns' convention; the state is synchronised at
  # each of those points, where the loop waits on the device anyway).
  train_seconds, train_clock = 0.0, None
  try:
    while step < total_steps:
      epoch = step // steps_per_epoch
      # Run up to the next log point, epoch end or stop, all on the device.
      in_epoch = step - epoch * steps_per_epoch
      num = min(log_every - in_epoch % log_every, steps_per_epoch - in_epoch)
      if config.stop_after_steps:
        num = min(num, start_step + config.stop_after_steps - step)
      if not source.device_loop:
        num = 1
      if profile and step < profile[1]:  # a call ends where the trace starts and stops
        num = min(num, (profile[0] if step < profile[0] else profile[1]) - step)
      if profile and step == profile[0]:
        jax.block_until_ready(state)
        jax.profiler.start_trace(profile_dir)
        tracing = True
      if curvature_fn is not None and in_epoch == 0:
        state = source.pass_start(curvature_fn, state, epoch)
        pending_stats = (epoch, float(schedule(step)), curvature_stats(state.opt_state))
      state, acc = source.train(train_fn, state, acc, step, num)
      first_call = step == start_step
      step += num
      if tracing and step >= profile[1]:
        tracing = _stop_trace(state, profile_dir, say)
      if first_call:
        jax.block_until_ready(state)
        logger.mark_start(step)  # the ETA leaves compilation out
        train_clock = time.time()
      epoch_end = step % steps_per_epoch == 0
      if (step - epoch * steps_per_epoch) % log_every == 0 or epoch_end:
        m = jax.device_get(acc)
        acc = data_lib.fresh_metrics(steps_lib.TRAIN_METRICS, mesh)
        last_loss = float(m["loss"] / m["count"])
        now = time.time()
        row = {"step": step, "epoch": step / steps_per_epoch, "train_loss": last_loss,
               "train_accuracy": float(m["correct"] / m["count"]),
               "learning_rate": float(schedule(step - 1)),
               "images_per_sec": (step - step_log) * config.batch_size / (now - t_log)}
        t_log, step_log = now, step
        if not math.isfinite(last_loss):
          kept = checkpointer.latest_step()
          raise TrainingError(
              f"the training loss is {last_loss} at step {step} (epoch {row['epoch']:.2f}). "
              f"Lower --config.learning_rate (now {config.learning_rate}) or check the data. "
              + (f"The last good checkpoint, step {kept}, is kept in {checkpointer.directory}."
                 if kept is not None else "No checkpoint was written."))
        if pending_stats is not None:  # the paper quotes eta/(mu+h) for its first pass
          row.update(sdlm.rate_range(*pending_stats[1:], config.sdlm.mu))
          say(f"[sdlm]  pass {pending_stats[0] + 1}/{config.num_epochs} | effective rates "
              f"eta/(mu+h) {row['sdlm_rate_min']:.2e} .. {row['sdlm_rate_max']:.2e} | "
              f"h < mu for {100 * row['sdlm_h_below_mu']:.1f}% of the weights")
          pending_stats = None
        logger.write(row)
        logger.print_train(row, config.num_epochs)
      if epoch_end and ((epoch + 1) % config.eval_every_epochs == 0 or step == total_steps):
        train_seconds += _lap(state, train_clock)
        row = {"step": step, "epoch": epoch + 1, **evaluate(state),
               "train_seconds": train_seconds}
        logger.write(row)
        logger.print_eval(row, config.num_epochs)
        train_clock = time.time()
      at_log = epoch_end or (step - epoch * steps_per_epoch) % log_every == 0
      if epoch_end and (epoch + 1) % config.checkpoint_every_epochs == 0:
        train_seconds += _lap(state, train_clock)
        save(step, state, last_loss)
        t_saved = train_clock = time.time()
      elif at_log and config.checkpoint_every_minutes and _agreed(
          time.time() - t_saved >= 60 * config.checkpoint_every_minutes):
        # At a log point (the loss was just checked), and agreed by every process: the
        # save is collective. orbax writes in the background; the steps go on.
        train_seconds += _lap(state, train_clock)
        save(step, state, last_loss)
        t_saved = train_clock = time.time()
      if config.stop_after_steps and step - start_step >= config.stop_after_steps:
        stopped = True
        break
      # SIGTERM or Ctrl-C: here the state is whole, so save it. Processes agree first.
      signum = _agreed_stop(sync_point=at_log)
      if signum:
        raise _Stop(signum)
  except KeyboardInterrupt as e:
    agreed = isinstance(e, _Stop)
    signum = e.signum if agreed else (_stop_signum or signal.SIGINT)
    if agreed or jax.process_count() == 1:
      try:
        save(step, state, last_loss)  # with several processes, all save this step together
        saved = "checkpoint saved"
      except RuntimeError:  # a second Ctrl-C inside a step, whose input state is donated
        saved = f"the last checkpoint (step {checkpointer.latest_step()}) is kept"
      checkpointer.close()
    else:  # a second Ctrl-C on one of several processes: the others are not saving
      saved = f"the last checkpoint (step {checkpointer.latest_step()}) is kept"
    where = (f"process {jax.process_index()} of {jax.process_count()}: "
             if jax.process_count() > 1 else "")
    print(f"\n{where}interrupted at step {step} ({signal.Signals(signum).name}); {saved}. "
          "Run the same command to resume.", flush=True)
    raise SystemExit(128 + signum) from None

  if tracing:  # the run stopped inside the traced steps
    tracing = _stop_trace(state, profile_dir, say)
  train_seconds += _lap(state, train_clock)
  save(step, state, last_loss)  # the final (or stopping) checkpoint
  checkpointer.close()
  source.close()
  wall = time.time() - t_start
  evals = [r for r in logger.rows if "eval_top1" in r]
  if stopped:
    say(f"stopped after step {step}/{total_steps} (stop_after_steps); run again to resume.")
  elif not evals or evals[-1]["step"] != step:
    row = {"step": step, "epoch": step / steps_per_epoch, **evaluate(state)}
    logger.write(row)
    evals.append(row)
  logger.close()
  if primary:
    logger_lib.plot_curves(logger.rows, os.path.join(workdir, "curves.png"),
                           title=f"{config.model} on {ds.name}")
  total_wall = logger.total_wall_time(wall, step=step)  # all segments of a resumed run
  summary = {"model": config.model, "dataset": ds.name, "num_params": num_params,
             "step": step, "total_steps": total_steps, "wall_time_sec": total_wall,
             "wall_time_this_run_sec": wall, "train_time_this_run_sec": train_seconds,
             "startup_time_this_run_sec": t_start - t_called,
             "devices": mesh.size, "processes": jax.process_count(),
             "platform": jax.devices()[0].platform,
             "image_shape": list(ds.image_shape), "num_classes": ds.num_classes}
  if evals:
    summary.update({k: v for k, v in evals[-1].items()
                    if k.startswith(("eval_", "ema_eval_")) and k != "eval_count"})
  if primary:
    rundir.write_atomic(os.path.join(workdir, rundir.SUMMARY), json.dumps(summary, indent=2))
  if evals and not stopped:
    say(f"final test accuracy: {100 * summary['eval_top1']:.2f}% "
          f"(error {100 * (1 - summary['eval_top1']):.2f}%, top-5 "
          f"{100 * summary['eval_top5']:.2f}%) on {int(evals[-1]['eval_count'])} test images "
          f"after {step / steps_per_epoch:g} epochs"
          + (f" (EMA weights: {100 * summary['ema_eval_top1']:.2f}%)"
             if "ema_eval_top1" in summary else "")
          + f"; {wall:.1f} s this run ({train_seconds:.2f} "
          f"s of training steps after the first) after {t_start - t_called:.1f} s of "
          f"start-up, {total_wall:.1f} s over all runs of this workdir. "
          f"Curves: {os.path.join(workdir, 'curves.png')}", flush=True)
  return summary


def _lap(state, since: float | None) -> float:
  """Seconds since ``since`` once the device has finished ``state`` (0 before the first
  step has run)."""
  if since is None:
    return 0.0
  jax.block_until_ready(state)
  return time.time() - since


def _stop_trace(state, profile_dir: str, say) -> bool:
  """Ends the profiler trace once the traced steps are done; returns False (not tracing)."""
  jax.block_until_ready(state)
  jax.profiler.stop_trace()
  say(f"profile: trace written to {profile_dir}; its ops by time: `python "
      f"tools/profile_summary.py {profile_dir}`; the timeline: `tensorboard --logdir "
      f"{profile_dir}` (Profile tab) or XProf", flush=True)
  return False


def parse_args(argv: Sequence[str]) -> tuple[ml_collections.ConfigDict, str]:
  rest, overrides = config_lib.split_override_args(argv)
  parser = cli.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      epilog="Any config field can be overridden: --config.FIELD=VALUE "
             "(e.g. --config.num_epochs=5 --config.augment.crop_padding=2).")
  parser.add_argument("--config", required=True,
                      help="config file, optionally with an argument: configs/x.py[:arg]")
  parser.add_argument("--workdir",
                      help="directory for checkpoints, metrics and plots; reused to resume "
                           "(default: runs/<config>[_<arg>])")
  parser.add_argument("--compilation_cache", default=None, metavar="DIR",
                      help="JAX's persistent compilation cache, so a second run (or a "
                           "sweep) of the same shapes skips compiling (default: "
                           "$JAX_COMPILATION_CACHE_DIR, else ~/.cache/cnn-history/jax); "
                           "'off' to compile afresh")
  group = parser.add_argument_group(
      "multi-process runs", "Needed only where JAX cannot detect the cluster (it does for "
      "SLURM srun, Cloud TPU pods and Open MPI); also read from JAX_COORDINATOR_ADDRESS, "
      "JAX_NUM_PROCESSES and JAX_PROCESS_ID. See launch/README.md.")
  group.add_argument("--coordinator_address", help="HOST:PORT of process 0")
  group.add_argument("--num_processes", type=int, help="processes in the job")
  group.add_argument("--process_id", type=int, help="this process's index, 0-based")
  args = parser.parse_args(rest)
  config = config_lib.load_config(args.config)
  config_lib.apply_overrides(config, overrides)
  if args.workdir is None:
    args.workdir = default_workdir(args.config)
    print(f"workdir: {args.workdir} (the default for this config; --workdir to choose)",
          flush=True)
  return config, args


COMPILATION_CACHE = os.path.join("~", ".cache", "cnn-history", "jax")  # the default


def use_compilation_cache(directory: str | None) -> str | None:
  """Turns on JAX's persistent compilation cache in ``directory`` (None: the default,
  ``$JAX_COMPILATION_CACHE_DIR`` or ``~/.cache/cnn-history/jax``); ``'off'`` (or, with
  no directory given, JAX's own ``JAX_ENABLE_COMPILATION_CACHE=false``) turns it off.
  Entries are keyed by the program, the XLA flags, the devices and the JAX version, so
  a stale entry is never used. Returns the directory in use, or None."""
  if directory == "off" or (directory is None and os.environ.get(
      "JAX_ENABLE_COMPILATION_CACHE", "").lower() in ("0", "false")):
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  directory = os.path.expanduser(directory or os.environ.get("JAX_COMPILATION_CACHE_DIR")
                                 or COMPILATION_CACHE)
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    raise config_lib.ConfigError(f"--compilation_cache {directory}: {e.strerror}; give a "
                                 "writable directory, or 'off'") from None
  if not os.access(directory, os.W_OK | os.X_OK):
    raise config_lib.ConfigError(f"--compilation_cache {directory} is not writable; give "
                                 "a writable directory, or 'off'")
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", directory)
  # Every program, however quick to compile (JAX keeps only those over 1 s): a run
  # compiles some twenty small ones, 1.6 s of a short run's start-up, the same in every
  # run of a sweep. JAX's JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS still decides.
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return directory


def default_workdir(spec: str) -> str:
  """``runs/<config>[_<arg>]``: ``configs/vgg.py:depth=16,bn`` -> ``runs/vgg_depth16_bn``."""
  path, _, arg = spec.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  if arg:
    name += "_" + "".join(ch if ch.isalnum() or ch in "._-" else "_"
                          for ch in arg.replace("=", "").replace(",", "_"))
  return os.path.join("runs", name)


_STOP = threading.Event()
_stop_signum = 0  # the first stop signal this process received


class _Stop(KeyboardInterrupt):
  """The loop's stop, agreed by every process: all save the same step, exit 128+signum."""

  def __init__(self, signum: int):
    super().__init__(signum)
    self.signum = signum


def _request_stop(signum, frame):
  """SIGTERM (scancel, Kubernetes, preemption) or Ctrl-C: the loop finishes the step in
  flight, saves a checkpoint and exits with 128 + the first signal (143, 130). Raising
  here instead could land between a step's dispatch and its result, when the donated
  input state is already gone. A second Ctrl-C stops at once (with several processes,
  without saving: the others are not stopping with it)."""
  global _stop_signum
  del frame
  if signum == signal.SIGINT and _STOP.is_set():
    raise KeyboardInterrupt
  if not _STOP.is_set():
    _stop_signum = signum
  _STOP.set()


def _agreed(flag: bool) -> bool:
  """``flag`` on any process (one tiny all-gather when there are several)."""
  return bool(flag) if jax.process_count() == 1 else bool(
      parallel.max_over_processes(int(flag)))


def _agreed_stop(sync_point: bool) -> int:
  """The signal to stop for now, or 0. Called by the loop where the state is whole.

  One process checks its own flag after every call of the step. Several processes stop
  together: a signal may reach only one of them (a preemption notice, ``kill``), and
  orbax's save is collective. So at sync points (log points and epoch ends, where the
  host waits for the device anyway; a host pipeline steps one call at a time, and a
  collective per step would stall it) they take the largest signal number any of them
  has (0: none) with one tiny all-gather. All stop after the same step, save it together
  and exit with the same code: 128 + that signal, so a preemption's SIGTERM (143) wins
  over a Ctrl-C (130).
  """
  if jax.process_count() == 1:
    return _stop_signum if _STOP.is_set() else 0
  return parallel.max_over_processes(_stop_signum) if sync_point else 0


def main(argv: Sequence[str] | None = None) -> int:
  global _stop_signum
  _STOP.clear()
  _stop_signum = 0
  handlers = {}
  if threading.current_thread() is threading.main_thread():
    handlers = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGTERM,
                                                                   signal.SIGINT)}
  try:
    config, args = parse_args(sys.argv[1:] if argv is None else argv)
    use_compilation_cache(args.compilation_cache)
    setup = parallel.initialize_distributed(args.coordinator_address, args.num_processes,
                                            args.process_id)
    if handlers:  # jax.distributed's preemption notifier takes SIGTERM over: take it back
      signal.signal(signal.SIGTERM, _request_stop)
    if jax.process_count() > 1 and jax.process_index() == 0:
      print(setup, flush=True)
    train_and_evaluate(config, args.workdir)
  except USER_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  finally:
    for sig, handler in handlers.items():
      signal.signal(sig, handler)
  return 0


if __name__ == "__main__":
  sys.exit(main())
