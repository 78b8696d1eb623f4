r"""Training throughput: images/s of the train step train.py compiles, and of PyTorch's.

  python benchmarks/throughput.py --model resnet50 --batch 256 --image_size 224 --dtype bfloat16
  python benchmarks/throughput.py --config configs/convnext_t.py:tiny      # a config's own step
  python benchmarks/throughput.py --model resnet20 --compare torch          # + torch, eager and compiled
  python benchmarks/throughput.py --compare torch --out runs/speed.md \
      --models resnet20,lenet5_modern,resnet50/batch=32/image_size=64

What is timed is train.py's own training function (``train.compile_train``: the config's
step from ``training.config.check``, ``StepConfig.from_config``, ``steps.make_train_step``
and ``optim``, around the device source's loop, jitted with the state donated), fed by
``DeviceSource.train`` as train.py feeds it: uint8 synthetic images and labels already on
the device, the config's device augmentation and optimizer, one step per call (as
train.py runs it unless ``config.device_loop``). Not
timed: evaluation, logging, checkpoints (the train.py loop's share; README, Speed).

``--model NAME`` takes the recipe of the config in ``RECIPES`` (optimizer, augmentation,
batch, resolution, dtype) with the model set to NAME; ``--batch``, ``--image_size`` and
``--dtype`` override it, as do ``--config.FIELD=VALUE`` arguments. ``--config X.py[:arg]``
times that config instead. ``--bare`` turns the augmentation and the EMA off, so the step
does what the torch side does. ``--models a,b/batch=32/image_size=64,...`` runs a list
(per-entry ``batch``, ``image_size``, ``dtype``) and prints a markdown table, also
written to ``--out FILE.md`` with the numbers as JSON beside it (``FILE.json``) and a
plot (``FILE.png``: ours / torch per model, or ours in images/s without torch).
``--plot A.json[=LABEL] B.json[=LABEL] --out X.png`` times nothing and draws several
such invocations (say, under two ``XLA_FLAGS``) into one plot.

Reported: images/s (the median over ``--windows`` timed windows of ``--window_steps``
steps, after ``--warmup`` steps), the step time (batch / images/s), the compile time (the
first call less one step), multiply-adds per image (``analysis.count_macs``, the
papers' convention), the achieved TFLOP/s (3 passes x 2 FLOPs x MACs x images/s: the
backward pass counted as twice the forward) and, with ``--peak_tflops``, its fraction.

``--compare torch`` builds the same architecture in PyTorch (torchvision or timm, or a
module written here for the nets they lack: the CIFAR ResNets with option-A shortcuts
and the modern LeNet-5, checked to have our parameter count) and times its training step
at the same batch and resolution, channels_last, with the config's optimizer (SGD, Adam,
AdamW, RMSProp: ``torch.optim``'s, decaying every weight) and cross-entropy (with the
config's label smoothing), bf16 through ``torch.autocast`` for ``--dtype bfloat16``: eager,
then with ``torch.compile`` on the model (the optimizer stays eager). Its input is a
float batch already normalised: no augmentation on the torch side. Then it prints ours /
theirs. Without torch, one line says so and the rest runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import statistics
import sys
import time
from typing import Any, Callable, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
from training import host_memory  # noqa: E402  (the standard library only)

if __name__ == "__main__":  # before JAX starts, as train.py runs
  host_memory.use_huge_pages()

import jax  # noqa: E402
import ml_collections  # noqa: E402

import analysis  # noqa: E402
import kernels  # noqa: E402
import models  # noqa: E402
import train  # noqa: E402  (train.compile_train: the function timed here)
from benchmarks import report_files  # noqa: E402
from input_pipeline import recipe as recipe_lib  # noqa: E402
from models import torch_convert  # noqa: E402
from training import cli  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import data as data_lib  # noqa: E402
from training import optim  # noqa: E402
from training import parallel  # noqa: E402
from training import steps as steps_lib  # noqa: E402


class BenchmarkError(report_files.InputError):
  """Bad input: one line for the user, exit status 2."""


# The config whose recipe ``--model NAME`` takes: the first entry whose prefix NAME starts
# with (the model is then NAME).
RECIPES = (
    ("resnet20", "configs/resnet20_cifar.py"), ("resnet32", "configs/resnet20_cifar.py"),
    ("resnet44", "configs/resnet20_cifar.py"), ("resnet56", "configs/resnet20_cifar.py"),
    ("resnet110", "configs/resnet20_cifar.py"),
    ("lenet5_modern", "configs/lenet5.py:modern"), ("lenet5", "configs/lenet5.py"),
    ("lenet1989", "configs/lenet1989.py"), ("lecun1989_", "configs/lecun1989_nets.py"),
    ("resnet", "configs/resnet50.py"), ("se_resnet", "configs/se_resnet50.py"),
    ("roadmap_", "configs/convnext_roadmap.py"), ("convnext_", "configs/convnext_t.py"),
    ("vgg", "configs/vgg.py"), ("alexnet", "configs/alexnet.py"),
    ("allcnn_c", "configs/allcnn_c.py"), ("densenet_bc", "configs/densenet121.py:cifar"),
    ("densenet40", "configs/densenet121.py:cifar"), ("densenet", "configs/densenet121.py"),
    ("googlenet", "configs/googlenet.py"), ("bn_inception", "configs/bn_inception.py"),
    ("mobilenet_v1", "configs/mobilenet_v1.py"), ("mobilenet_v2", "configs/mobilenet_v2.py"),
    ("vit_", "configs/vit_b16.py"),
)
ENTRY_KEYS = ("batch", "image_size", "dtype")  # per-model settings in --models


# ------------------------------------------------------------------------------ setup


@dataclasses.dataclass
class Case:
  """One thing to time: a checked config on synthetic data, and what it is called."""
  name: str
  checked: config_lib.Checked

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self.checked.config


def recipe_of(model: str) -> str:
  """The config spec whose recipe ``model`` is benchmarked with."""
  if model not in models.list_models():
    try:
      models.create_model(model, num_classes=10)
    except models.UnknownModelError as e:
      raise BenchmarkError(str(e).splitlines()[0]) from None
  return next((spec for prefix, spec in RECIPES if model.startswith(prefix)),
              "configs/resnet20_cifar.py")


def make_case(*, model: str | None = None, config: str | None = None,
              batch: int | None = None, image_size: int | None = None,
              dtype: str | None = None, overrides: Sequence[tuple[str, str]] = (),
              bare: bool = False) -> Case:
  """The config of ``model`` (its recipe) or ``config``, changed to train on synthetic
  device-resident images of its own input shape (or ``image_size``) at ``batch``;
  ``bare``: without augmentation and EMA, the work the torch side does."""
  for flag, value in (("--batch", batch), ("--image_size", image_size)):
    if value is not None and value <= 0:
      raise BenchmarkError(f"{flag} must be positive, got {value}")
  if dtype is not None and dtype not in config_lib.CHOICES["dtype"]:
    raise BenchmarkError(f"--dtype must be one of {', '.join(config_lib.CHOICES['dtype'])}, "
                         f"got {dtype!r}")
  spec = config or recipe_of(model)
  c = config_lib.load_config(spec if config else os.path.join(ROOT, spec))
  if model is not None:
    c.model = model
  if bare:  # every augmentation off (Recipe's defaults) and no EMA; before the overrides
    c.augment = ml_collections.ConfigDict(recipe_lib.Recipe().to_dict())
    c.ema_decay = 0.0
  config_lib.apply_overrides(c, overrides)
  (side, _, channels), num_classes = config_lib.data_shape(c)
  side = image_size or side
  if batch is not None:
    c.batch_size = batch
  if dtype is not None:
    c.dtype = dtype
  # Synthetic images of the input shape, 2 to 8 batches (up to ~64 MB), so that
  # DeviceSource draws a new permutation every few steps as it would every epoch.
  batches = max(2, min(8, (64 << 20) // (c.batch_size * side * side * channels)))
  c.dataset, c.image_size, c.pad, c.input_pipeline = "synthetic", None, 0, "device"
  c.background_class, c.num_train_examples, c.init_from = False, 0, None
  c.synthetic.shape = (side, side, channels)
  c.synthetic.num_classes = num_classes
  c.synthetic.num_train = batches * c.batch_size
  c.synthetic.num_test = 1
  checked = config_lib.check(c)
  mesh_size = jax.device_count()
  if c.batch_size % mesh_size:
    raise BenchmarkError(f"batch {c.batch_size} does not divide over {mesh_size} devices")
  name = c.model if config is None else f"{c.model} ({spec})"
  return Case(name=name + (", bare" if bare else ""), checked=checked)


def parse_entry(entry: str) -> dict[str, Any]:
  """``resnet50/batch=32/image_size=64`` -> ``{"model": "resnet50", "batch": 32, ...}``."""
  name, *settings = entry.strip().split("/")
  out: dict[str, Any] = {"model": name}
  for s in settings:
    key, eq, value = s.partition("=")
    if not eq or key not in ENTRY_KEYS:
      raise BenchmarkError(f"--models entry {entry!r}: {s!r} is not one of "
                           f"{', '.join(k + '=...' for k in ENTRY_KEYS)}")
    if key == "dtype":
      out[key] = value
    else:
      try:
        out[key] = int(value)
      except ValueError:
        raise BenchmarkError(f"--models entry {entry!r}: {key} must be an integer, "
                             f"got {value!r}") from None
  if not name:
    raise BenchmarkError(f"--models entry {entry!r} names no model")
  return out


# ----------------------------------------------------------------------------- timing


@dataclasses.dataclass
class Timing:
  """Seconds per step (median of the windows) and of the first call."""
  step_s: float
  first_call_s: float
  windows_s: list[float]
  batch: int

  @property
  def images_per_s(self) -> float:
    return self.batch / self.step_s

  @property
  def compile_s(self) -> float:
    return max(0.0, self.first_call_s - self.step_s)


def time_steps(step: Callable[[], Any], sync: Callable[[Any], Any], batch: int, *,
               warmup: int, windows: int, window_steps: int) -> Timing:
  """Times ``step()`` (``sync(step())`` waits for it): the first call, ``warmup - 1``
  more, then ``windows`` windows of ``window_steps`` steps each."""
  t = time.perf_counter()
  sync(step())
  first = time.perf_counter() - t
  for _ in range(warmup - 1):
    sync(step())
  times = []
  for _ in range(windows):
    t = time.perf_counter()
    for _ in range(window_steps):
      out = step()
    sync(out)
    times.append(time.perf_counter() - t)
  return Timing(step_s=statistics.median(times) / window_steps, first_call_s=first,
                windows_s=times, batch=batch)


def time_ours(case: Case, **timing) -> Timing:
  """train.py's compiled training function on the case's device-resident data, with the
  config's convolutions (``conv_backend``)."""
  with kernels.conv_backend(case.config.conv_backend, jax.devices()):
    return _time_ours(case, **timing)


def _time_ours(case: Case, **timing) -> Timing:
  config, checked = case.config, case.checked
  mesh = parallel.create_mesh(config.mesh.fsdp)
  init_rng, data_rng, step_rng = jax.random.split(jax.random.key(config.seed), 3)
  source = data_lib.open_source(config, mesh, data_rng)
  schedule = optim.create_schedule(config, source.steps_per_epoch)
  tx = optim.create_optimizer(config, schedule)
  state_sharding = parallel.state_shardings(checked.abstract_state, mesh)
  init_fn = steps_lib.state_initializer(checked.model, tx, checked.image_shape, config)
  carry = {"state": steps_lib.jit_init(init_fn, state_sharding)(init_rng),
           "metrics": data_lib.fresh_metrics(steps_lib.TRAIN_METRICS, mesh),
           "step": 0}
  step_cfg = steps_lib.StepConfig.from_config(config, checked.plan)
  train_fn = train.compile_train(checked.model, tx, step_cfg, step_rng, source, mesh,
                                 state_sharding)
  source.start(checked.plan, 0)

  def step():
    carry["state"], carry["metrics"] = source.train(
        train_fn, carry["state"], carry["metrics"], carry["step"], 1)
    carry["step"] += 1
    return carry["state"]

  try:
    return time_steps(step, jax.block_until_ready, config.batch_size, **timing)
  finally:
    source.close()


# ------------------------------------------------------------------------------ torch


def _stub_missing_inductor_name(torch) -> None:
  """Lets ``torch.compile`` import on this project's torch 2.13 CPU build, whose
  ``flex_gemm/quack_reductions.py`` imports ``tensorssa_reduction`` from a
  ``cutedsl_op_overrides`` that lacks it (a packaging mismatch: every Inductor compile
  fails with ImportError). The name serves CUDA CuteDSL GEMM epilogues only; the stub
  raises if it is ever called. A torch without the mismatch is left alone."""
  try:
    from torch._inductor.codegen.cutedsl import cutedsl_op_overrides as m  # pylint: disable=g-import-not-at-top
  except Exception:  # pylint: disable=broad-except
    return
  if not hasattr(m, "tensorssa_reduction"):
    def tensorssa_reduction(*args, **kwargs):
      raise NotImplementedError("tensorssa_reduction is missing from this torch build")
    m.tensorssa_reduction = tensorssa_reduction
  del torch


def torch_cifar_resnet(torch, depth: int = 20, num_classes: int = 10, width: int = 16):
  """He et al. 2015's CIFAR ResNet (6n+2 layers) with option-A shortcuts: identity,
  subsampled by 2 and zero-padded in channels where the shape changes; as
  ``models.resnet.CifarResNet`` (BN after each conv, no conv biases)."""
  nn = torch.nn
  n = (depth - 2) // 6

  class Block(nn.Module):
    def __init__(self, c_in, c_out, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(c_out)
      self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(c_out)
      self.pad = c_out - c_in

    def forward(self, x):
      y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
      s = x
      if self.pad or self.conv1.stride[0] > 1:
        s = x[:, :, ::self.conv1.stride[0], ::self.conv1.stride[0]]
        s = nn.functional.pad(s, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
      return torch.relu(y + s)

  layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
  c = width
  for stage in range(3):
    for block in range(n):
      c_out = width * 2**stage
      layers.append(Block(c, c_out, 2 if stage > 0 and block == 0 else 1))
      c = c_out
  layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
  return nn.Sequential(*layers)


def torch_lenet5_modern(torch, num_classes: int = 10, channels: int = 1):
  """The modern LeNet-5 of ``models.lenet``: conv 20 5x5, max-pool, conv 50 5x5,
  max-pool, fc 500, ReLU, fc; ReLU after each conv."""
  nn = torch.nn
  return nn.Sequential(
      nn.Conv2d(channels, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
      nn.Linear(4 * 4 * 50, 500), nn.ReLU(), nn.Linear(500, num_classes))


# Our model -> (library, its name). torchvision's ResNets are v1.5, as ours.
TORCH_NAMES = {
    **{f"resnet{d}": ("torchvision", f"resnet{d}") for d in (18, 34, 50, 101, 152)},
    **{f"vgg{d}{bn}": ("torchvision", f"vgg{d}{bn}") for d in (11, 13, 16, 19)
       for bn in ("", "_bn")},
    **{f"densenet{d}": ("torchvision", f"densenet{d}") for d in (121, 161, 169, 201)},
    "mobilenet_v2": ("torchvision", "mobilenet_v2"),
    "alexnet_torchvision": ("torchvision", "alexnet"),
    **{f"convnext_{s}": ("timm", f"convnext_{n}")
       for s, n in (("t", "tiny"), ("s", "small"), ("b", "base"), ("l", "large"))},
    **{f"se_resnet{d}": ("timm", f"seresnet{d}") for d in (50, 101, 152)},
}


def torch_model(torch, torchvision, name: str, num_classes: int, image_shape,
                drop_path_rate: float = 0.0):
  """PyTorch's ``name``, or None when there is no counterpart (timm's models with the
  config's stochastic depth)."""
  if name in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110"):
    return torch_cifar_resnet(torch, int(name[len("resnet"):]), num_classes)
  if name == "lenet5_modern":
    return torch_lenet5_modern(torch, num_classes, image_shape[-1])
  if name not in TORCH_NAMES:
    return None
  library, their_name = TORCH_NAMES[name]
  if library == "torchvision":
    if torchvision is None:
      return None
    return getattr(torchvision.models, their_name)(num_classes=num_classes)
  try:
    import timm  # pylint: disable=g-import-not-at-top
  except Exception:  # pylint: disable=broad-except  (timm imports torchvision too)
    return None
  extra = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
  return timm.create_model(their_name, num_classes=num_classes, **extra)


def torch_optimizer(torch, config: ml_collections.ConfigDict, params):
  """The config's optimizer in ``torch.optim`` at its peak rate, or None (LAMB, SDLM)."""
  lr, wd = optim.peak_learning_rate(config), config.weight_decay
  o = torch.optim
  return {
      "sgd": lambda: o.SGD(params, lr, momentum=config.momentum, nesterov=config.nesterov,
                           weight_decay=wd),
      "adam": lambda: o.Adam(params, lr, betas=(config.b1, config.b2), eps=config.eps,
                             weight_decay=wd),
      "adamw": lambda: o.AdamW(params, lr, betas=(config.b1, config.b2), eps=config.eps,
                               weight_decay=wd),
      "rmsprop": lambda: o.RMSprop(params, lr, alpha=config.rms_decay, eps=config.eps,
                                   momentum=config.momentum, weight_decay=wd),
  }.get(config.optimizer, lambda: None)()


def time_torch(torch, torchvision, case: Case, say, **timing) -> dict[str, Any]:
  """``{"eager": Timing, "compile": Timing, "params": n}`` (what ran), or ``{"skipped":
  why}``."""
  config, checked = case.config, case.checked
  module = torch_model(torch, torchvision, config.model, checked.num_classes,
                       checked.image_shape, config.model_kwargs.get("drop_path_rate", 0.0))
  if module is None:
    return {"skipped": f"no torchvision/timm counterpart of {config.model}"}
  params = sum(p.numel() for p in module.parameters())
  if params != checked.num_params:
    say(f"  note: torch's {config.model} has {params:,} parameters, ours "
        f"{checked.num_params:,}")
  device = "cuda" if torch.cuda.is_available() else "cpu"
  module = module.to(device, memory_format=torch.channels_last).train()
  opt = torch_optimizer(torch, config, module.parameters())
  if opt is None:
    return {"skipped": f"no torch.optim counterpart of optimizer={config.optimizer}"}
  b, (h, w, c) = config.batch_size, checked.image_shape
  x = torch.randn(b, c, h, w, device=device).contiguous(memory_format=torch.channels_last)
  y = torch.randint(0, checked.num_classes, (b,), device=device)
  loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
  bf16 = config.dtype == "bfloat16"
  sync = (lambda _: torch.cuda.synchronize()) if device == "cuda" else (lambda _: None)

  def step_of(net):
    def step():
      opt.zero_grad(set_to_none=True)
      with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn(net(x), y)
      loss.backward()
      opt.step()
      return loss
    return step

  out: dict[str, Any] = {"params": params}
  out["eager"] = time_steps(step_of(module), sync, b, **timing)
  say(f"  torch eager: {out['eager'].images_per_s:,.1f} images/s "
      f"(step {1e3 * out['eager'].step_s:.1f} ms)", flush=True)
  try:
    _stub_missing_inductor_name(torch)
    # Each model compiles afresh: a cache that saw another model's shapes through the
    # same forward (nn.Sequential's) recompiles for dynamic shapes, 20x slower here.
    torch._dynamo.reset()  # pylint: disable=protected-access
    out["compile"] = time_steps(step_of(torch.compile(module)), sync, b, **timing)
    say(f"  torch.compile: {out['compile'].images_per_s:,.1f} images/s (step "
        f"{1e3 * out['compile'].step_s:.1f} ms, compile {out['compile'].compile_s:.1f} s)",
        flush=True)
  except Exception as e:  # pylint: disable=broad-except  (no compiler, unsupported op)
    say(f"  torch.compile failed: {type(e).__name__}: {str(e).strip().splitlines()[0]}")
  return out


# ----------------------------------------------------------------------------- report


def run_case(case: Case, *, compare: str | None, peak_tflops: float | None, say,
             **timing) -> dict[str, Any]:
  """Times one case (and its torch counterpart); returns the numbers as a flat dict."""
  config, checked = case.config, case.checked
  h, w, c = checked.image_shape
  macs = analysis.count_macs(checked.model, (1, h, w, c))
  say(f"{case.name}: {h}x{w}x{c}, batch {config.batch_size}, {config.dtype}"
      + (", convolutions by oneDNN" if config.conv_backend == "onednn" else "") + ", "
      f"{config.optimizer}; {checked.num_params:,} parameters, {macs / 1e9:.4g} G "
      f"multiply-adds per image; {jax.device_count()} {jax.devices()[0].platform} "
      f"device(s), load average {os.getloadavg()[0]:.2f}"
      + "".join(f"; {var}={os.environ[var]}" for var in ("XLA_FLAGS", "GLIBC_TUNABLES")
                if os.environ.get(var)), flush=True)
  ours = time_ours(case, **timing)
  tflops = 6 * macs * ours.images_per_s / 1e12
  row = {"model": config.model, "name": case.name, "image_size": h, "channels": c,
         "batch": config.batch_size, "dtype": config.dtype, "optimizer": config.optimizer,
         "conv_backend": config.conv_backend, "params": checked.num_params, "macs_per_image": macs,
         "images_per_s": ours.images_per_s, "step_s": ours.step_s,
         "compile_s": ours.compile_s, "windows_s": ours.windows_s, "tflops": tflops,
         "peak_fraction": tflops / peak_tflops if peak_tflops else None,
         "devices": jax.device_count(), "platform": jax.devices()[0].platform}
  peak = f" ({100 * row['peak_fraction']:.1f}% of {peak_tflops:g} peak)" if peak_tflops else ""
  say(f"  ours: {ours.images_per_s:,.1f} images/s (step {1e3 * ours.step_s:.1f} ms, median "
      f"of {timing['windows']} windows of {timing['window_steps']} steps), compile "
      f"{ours.compile_s:.1f} s, {tflops:.4g} TFLOP/s{peak}", flush=True)
  if compare == "torch":
    imported = torch_convert.import_torch()
    if imported is None:
      say("  torch: not installed; --compare torch skipped")
    else:
      theirs = time_torch(*imported, case, say, **timing)
      if "skipped" in theirs:
        say(f"  torch: {theirs['skipped']}; skipped")
      row["torch_params"] = theirs.get("params")
      for kind in ("eager", "compile"):
        if kind in theirs:
          t = theirs[kind]
          row[f"torch_{kind}_images_per_s"] = t.images_per_s
          row[f"torch_{kind}_compile_s"] = t.compile_s
          row[f"ours_over_torch_{kind}"] = ours.images_per_s / t.images_per_s
      ratios = [f"ours / torch{' eager' if k == 'eager' else '.compile'} = "
                f"{row[f'ours_over_torch_{k}']:.2f}" for k in ("eager", "compile")
                if f"ours_over_torch_{k}" in row]
      if ratios:
        say("  " + "; ".join(ratios), flush=True)
  return row


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  """The rows as a markdown table; torch columns only when some row has them."""
  torch_cols = any("torch_eager_images_per_s" in r for r in rows)
  peak_col = any(r.get("peak_fraction") is not None for r in rows)
  f = lambda v, fmt: "-" if v is None else format(v, fmt)
  head = ["model", "input", "batch", "dtype", "convolutions", "optimizer", "MACs/image",
          "ours img/s",
          "step ms", "compile s", "TFLOP/s"]
  head += ["% of peak"] * peak_col
  if torch_cols:
    head += ["torch eager img/s", "torch.compile img/s", "ours / eager", "ours / compile"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    cells = [r["name"], f"{r['image_size']}x{r['image_size']}x{r['channels']}",
             str(r["batch"]), r["dtype"], r.get("conv_backend", "xla"), r["optimizer"],
             f"{r['macs_per_image'] / 1e6:,.1f}M",
             f"{r['images_per_s']:,.1f}", f"{1e3 * r['step_s']:.1f}", f"{r['compile_s']:.1f}",
             f"{r['tflops']:.3g}"]
    if peak_col:
      cells.append(f(r.get("peak_fraction") and 100 * r["peak_fraction"], ".1f"))
    if torch_cols:
      cells += [f(r.get("torch_eager_images_per_s"), ",.1f"),
                f(r.get("torch_compile_images_per_s"), ",.1f"),
                f(r.get("ours_over_torch_eager"), ".2f"),
                f(r.get("ours_over_torch_compile"), ".2f")]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]], path: str) -> dict[str, list]:
  """One PNG of ``runs`` (``(label, rows)`` pairs: one benchmark invocation each): per
  model, ours / PyTorch eager and ours / ``torch.compile`` for each invocation, against a
  line at parity; rows without torch figures give ours in images/s instead, on a log
  scale. Returns what was drawn, per bar series: ``{series: [height or None per model]}``.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  tick = lambda r: f"{r['name']}\n{r['image_size']}x{r['image_size']}, batch {r['batch']}"
  names = list(dict.fromkeys(tick(r) for _, rows in runs for r in rows))
  compared = any("ours_over_torch_eager" in r for _, rows in runs for r in rows)
  kinds = ([("ours_over_torch_eager", "/ eager", None), ("ours_over_torch_compile",
                                                         "/ torch.compile", "//")]
           if compared else [("images_per_s", "images/s", None)])
  series = {}
  for label, rows in runs:
    by_name = {tick(r): r for r in rows}
    for key, kind, hatch in kinds:
      series[f"{label} {kind}".strip()] = (
          [by_name[n].get(key) if n in by_name else None for n in names], hatch)
  width = 0.8 / len(series)
  fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(names) + 2), 4.4))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for k, (name, (heights, hatch)) in enumerate(series.items()):
    xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
    drawn = [(x, h) for x, h in zip(xs, heights) if h is not None]
    bars = ax.bar([x for x, _ in drawn], [h for _, h in drawn], width, label=name,
                  color=colors[(k // len(kinds)) % len(colors)], hatch=hatch,
                  edgecolor="white" if hatch else None)
    ax.bar_label(bars, fmt="%.2f" if compared else "%.0f", fontsize=7, padding=1)
  if compared:
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_ylabel("ours / PyTorch, images/s (1 = parity)")
  else:
    ax.set_yscale("log")
    ax.set_ylabel("ours, images/s")
  ax.set_xticks(range(len(names)), names, fontsize=8)
  first = next(r for _, rows in runs for r in rows)
  where = f"on {first['platform'].upper()}, {first['dtype']}"
  ax.set_title(f"Training throughput {where}\nthis project's step against PyTorch's"
               if compared else f"Training throughput {where}", fontsize=11)
  ax.legend(fontsize=7)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {name: heights for name, (heights, _) in series.items()}


def plot_files(entries: Sequence[str], out: str | None) -> str:
  """``--plot JSON[=LABEL] ...``: the PNG of earlier invocations' ``--out`` JSON files
  (the label defaults to the file's name; files of one label are one series), written to
  ``out`` or beside the first."""
  runs: dict[str, list] = {}
  for label, record in report_files.read(entries):
    runs.setdefault(label, []).extend(record["rows"])
  out = report_files.plot_path(entries, out)
  plot(list(runs.items()), out)
  return out


# ------------------------------------------------------------------------------- main



def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[tuple[str, str]]]:
  rest, overrides = config_lib.split_override_args(argv)
  p = cli.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog="Any config field can be overridden: --config.FIELD=VALUE.")
  what = p.add_mutually_exclusive_group(required=True)
  what.add_argument("--model", help="a model of the zoo, with its config's recipe")
  what.add_argument("--config", help="a config file: configs/x.py[:arg]")
  what.add_argument("--models", help="a list: name[/batch=N][/image_size=S][/dtype=D],...")
  what.add_argument("--plot", nargs="+", metavar="JSON[=LABEL]",
                    help="time nothing: plot earlier --out JSON files into one PNG (--out)")
  p.add_argument("--batch", type=int, help="batch size (default: the config's)")
  p.add_argument("--image_size", type=int, help="side in pixels (default: the config's)")
  p.add_argument("--dtype", help="float32 or bfloat16 (default: the config's)")
  p.add_argument("--compare", choices=("torch",), help="also time PyTorch's training step")
  p.add_argument("--bare", action="store_true",
                 help="no augmentation and no EMA (the torch side's work): the step alone")
  p.add_argument("--peak_tflops", type=float, help="the device's peak, for the fraction")
  p.add_argument("--warmup", type=int, default=3, help="untimed steps, the first included")
  p.add_argument("--windows", type=int, default=5, help="timed windows (median taken)")
  p.add_argument("--window_steps", type=int, default=5, help="steps per timed window")
  p.add_argument("--out", help="also write the table to this .md file (and .json and a "
                 ".png plot beside it); with --plot, the .png")
  args = p.parse_args(rest)
  for flag in ("warmup", "windows", "window_steps"):
    if getattr(args, flag) < 1:
      p.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
  if args.peak_tflops is not None and not args.peak_tflops > 0:
    p.error(f"--peak_tflops must be positive, got {args.peak_tflops}")
  return args, overrides


def main(argv: Sequence[str] | None = None) -> int:
  try:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    if args.plot:
      print(f"plot written to {plot_files(args.plot, args.out)}")
      return 0
    common = dict(batch=args.batch, image_size=args.image_size, dtype=args.dtype,
                  overrides=overrides, bare=args.bare)
    if args.models is not None:
      entries = [parse_entry(e) for e in args.models.split(",") if e.strip()]
      if not entries:
        raise BenchmarkError("--models lists no model")
      cases = [make_case(**{**common, **e}) for e in entries]  # all checked before any runs
    else:
      cases = [make_case(model=args.model, config=args.config, **common)]
  except (report_files.InputError, config_lib.ConfigError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  timing = dict(warmup=args.warmup, windows=args.windows, window_steps=args.window_steps)
  rows = [run_case(c, compare=args.compare, peak_tflops=args.peak_tflops,
                   say=functools.partial(print), **timing) for c in cases]
  if len(rows) > 1 or args.out:
    table = markdown_table(rows)
    print("\n" + table)
    if args.out:
      report_files.write(
          args.out, table + "\n",
          {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "argv": sys.argv if argv is None else list(argv),
           "load_average": os.getloadavg()[0],
           "xla_flags": os.environ.get("XLA_FLAGS", ""),
           "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""), "rows": rows},
          lambda png: plot([("", rows)], png))
  return 0


if __name__ == "__main__":
  sys.exit(main())
