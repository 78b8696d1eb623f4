r"""The ConvNeXt roadmap at small scale: ResNet-50 modernised into ConvNeXt-T step by step
(Liu et al. 2022, arXiv 2201.03545, Sec. 2 and Table 10; models/roadmap.py), one run per
row, on Fashion-MNIST padded to 32x32.

The paper trains every row on ImageNet-1k at 224 for 300 epochs (76.1% for ResNet-50 with
its classic recipe, 78.8% with ConvNeXt's, 82.0% for ConvNeXt-T; REFERENCE.md). That is
out of reach here; the same 17 networks on a small dataset show which steps still help
at small scale. The networks are the registered ``roadmap_<step>`` models at full width
and depth; only the stem is adapted to the small input:

* default (``res=32``): 32x32 input and a stride-2 stem (``model_kwargs.stem_stride=2``:
  a 2x2/2 patchify stem, or the ResNet stem's 7x7 conv at stride 1 before its 3x3/2 max
  pool), so the stages see 16x16, 8x8, 4x4 and 2x2 maps, the proportions of 56 .. 7 at
  224;
* ``res=64``: images resized to 64x64 and the paper's stride-4 stems (4x4 patches), the
  same stage sizes at 4x the input pixels.

Recipe: ConvNeXt's (REFERENCE.md, Table 5; ``configs.common.convnext_recipe``) over 30
epochs instead of 300: AdamW, lr 4e-3 per 4096 images (5e-4 at batch 512), weight decay
0.05, warm-up over the first 1/15 of training (20 of 300 epochs) then cosine to 1e-6,
random-resized crops, flips, RandAugment rand-m9-mstd0.5-inc1, Mixup 0.8, CutMix 1.0,
random erasing 0.25, label smoothing 0.1, stochastic depth 0.1. No EMA: the paper's
Table 10 reports the raw weights. The first row (``step=resnet50``) gets the classic
ResNet recipe instead, as in the paper: SGD momentum 0.9, lr 0.1 x batch / 256, weight
decay 1e-4, lr / 10 at 1/3, 2/3 and 8/9 of training (30/60/80 of 90 epochs),
random-resized crops and flips, none of the ConvNeXt regularisers.

  python train.py --config configs/convnext_roadmap.py --workdir runs/roadmap/downsample
  python train.py --config configs/convnext_roadmap.py:step=resnet50 --workdir runs/roadmap/r50
  python train.py --config configs/convnext_roadmap.py:step=kernel7 --workdir runs/roadmap/k7
  # The paper's 4x4 patchify stem on 64x64 images; CIFAR-10 (TFDS) instead of Fashion-MNIST.
  python train.py --config configs/convnext_roadmap.py:res=64 --workdir runs/roadmap64/downsample
  python train.py --config configs/convnext_roadmap.py:cifar10 --workdir runs/roadmap_c10/downsample
  # Seconds on a CPU: 8 channels, one block per stage, synthetic 32x32 images (the tests).
  python train.py --config configs/convnext_roadmap.py:tiny --workdir /tmp/roadmap_tiny
  python train.py --config configs/convnext_roadmap.py:step=resnet50,tiny --workdir /tmp/rm_r50

The whole table is ``get_sweep()``: one override dict per row (``name``, ``model`` and,
for ResNet-50, the classic recipe), the same as ``step=<name>`` on the command line. The
sweep tool passes it the config's argument; change the length with ``epochs=N`` there
(not ``--config.num_epochs``), so that the ResNet-50 row's lr steps follow:

  python launch/sweep.py --config configs/convnext_roadmap.py --sweep_dir runs/roadmap
  python launch/sweep.py --config configs/convnext_roadmap.py:epochs=10 --sweep_dir runs/rm10

Expected time (an estimate, not yet timed): ConvNeXt-T at 32x32 with the stride-2 stem
costs 0.36 GMACs per image (the 4.46 at 224 x (16/56)^2), about 130 TFLOP per epoch of
Fashion-MNIST with the backward pass; at the ~100 TFLOP/s that plain Flax reaches on
ConvNeXt-T at 224 on one H100 (REFERENCE.md), a few seconds per epoch in bfloat16
(``--config.dtype=bfloat16``), so minutes per row and well under an hour for the sweep;
small maps use the GPU less well than 56x56 ones, so expect more. Rows range from 0.19
(depthwise) to 0.43 GMACs (width 96) per image.

``cpu``: the whole table in minutes on a 2-core CPU (experiments/roadmap.py's cpu
budget): each row's own width and depths scaled down (widths 8 -> 12 for 64 -> 96, depths
(1, 1, 2, 1) -> (1, 1, 3, 1) for (3, 4, 6, 3) -> (3, 3, 9, 3)), the paper's stride-4
stems on the 32x32 images, 4,000 training images (class-balanced) for 2 epochs at batch
64, AdamW at 2e-3 (the ResNet-50 row: SGD 0.1 x 64 / 256), and 2-pixel translations and
flips for every row instead of the recipe's augmentation (``_cpu_augmentation`` says
why). One row: 34 s and 72.7% for kernel 7 (2026-12-04, a 2-core CPU shared with other
jobs), so roughly 6-8 minutes for the 17 rows:

  python launch/sweep.py --config configs/convnext_roadmap.py:cpu --sweep_dir runs/rm_cpu

Arguments (comma-separated): ``step=NAME`` (a row of Table 10: ``models.roadmap.STEPS``,
default ``downsample`` = ConvNeXt-T), ``res=32|64``, ``cifar10``, ``epochs=N`` (default
30; ``cpu``: 2), ``batch=N`` (the learning rate follows, except with ``cpu``), ``cpu``,
``tiny``.
"""

from __future__ import annotations

from typing import Any

from configs import common
from models.roadmap import STEP_KWARGS, STEPS

STEP_NAMES = tuple(step.name for step in STEPS)
NUM_EPOCHS = 30
# The words get_config and get_sweep take.
ARGS = dict(step=STEP_NAMES, res=(32, 64), cifar10=bool, epochs=int, batch=int, cpu=bool,
            tiny=bool)
# ``cpu``: each row's own width and depths, scaled down. Widths keep the paper's 64 -> 96
# step (8 -> 12); depths keep ResNet-50's and the stage-ratio step's proportions as far as
# one to three blocks per stage can: (3, 4, 6, 3) -> (1, 1, 2, 1), (3, 3, 9, 3) -> (1, 1, 3, 1).
CPU_WIDTH = 8  # per 64 of the paper's width
CPU_DEPTHS = {(3, 4, 6, 3): (1, 1, 2, 1), (3, 3, 9, 3): (1, 1, 3, 1)}
CPU_TRAIN_EXAMPLES = 4000
CPU_EPOCHS = 2


def _classic_recipe(c) -> None:
  """The ResNet-50 row's recipe (He et al.; REFERENCE.md), scaled to ``c.num_epochs``."""
  c.optimizer = "sgd"
  c.learning_rate = 0.1
  c.lr_base_batch_size = 256
  c.momentum = 0.9
  c.weight_decay = 1e-4
  c.schedule = "step"
  c.decay_epochs = tuple(sorted({max(1, round(c.num_epochs * f))
                                 for f in (30 / 90, 60 / 90, 80 / 90)}))
  c.decay_factor = 0.1
  c.warmup_epochs = 0.0
  c.label_smoothing = 0.0
  c.model_kwargs.drop_path_rate = 0.0
  c.augment.update(dict(rand_augment="", color_jitter=0.0, random_erasing=0.0, mixup=0.0,
                        cutmix=0.0, resize_method="bilinear"))


def get_config(arg=None):
  args = common.parse_arg(arg, **ARGS)
  step = args.get("step", "downsample")
  res = args.get("res", 32)
  c = common.base()
  c.model = f"roadmap_{step}"
  c.model_kwargs.stem_stride = 2 if res == 32 else 4
  if args.get("cifar10"):
    c.dataset = "cifar10"
  else:
    c.dataset = common.shared_npz("fashion_mnist")
    c.pad = 2 if res == 32 else 0  # 28 -> 32; res=64 resizes 28 -> 64 (pad comes after)
  c.image_size = None if res == 32 else 64
  c.eval_batch_size = 1000
  common.convnext_recipe(c, batch_size=args.get("batch", 512),
                         num_epochs=args.get("epochs", NUM_EPOCHS))
  c.ema_decay = 0.0  # Table 10 reports the raw weights
  c.checkpoint_every_epochs = 5
  if args.get("cpu"):
    if args.get("tiny") or args.get("cifar10") or res != 32:
      raise common.ConfigError("config argument cpu is Fashion-MNIST at 32x32: it does not "
                               "go with tiny, cifar10 or res=64")
    _cpu_scale(c, step, args)
  if args.get("tiny"):
    common.use_tiny_data(c, shape=(32, 32, 3), num_epochs=args.get("epochs", 2))
    c.model_kwargs.stem_stride = 2
    c.model_kwargs.width = 8
    c.model_kwargs.depths = (1, 1, 1, 1)
    c.batch_size = args.get("batch", 32)
    c.learning_rate = 1e-3
    c.lr_base_batch_size = 0
    c.warmup_epochs = 0.0
    c.min_learning_rate = 0.0
  if step == "resnet50":
    _classic_recipe(c)
  if args.get("cpu"):
    _cpu_augmentation(c)
  return c


def _cpu_scale(c, step: str, args: dict[str, Any]) -> None:
  """The ``cpu`` variant: row ``step`` at a few minutes for all 17 rows on a 2-core CPU."""
  row = STEP_KWARGS[step]
  c.model_kwargs.width = CPU_WIDTH * row.get("width", 64) // 64
  c.model_kwargs.depths = CPU_DEPTHS[tuple(row.get("depths", (3, 4, 6, 3)))]
  # The paper's stride-4 stems on the 32x32 images: stages at 8, 4, 2 and 1 pixels, a
  # quarter of the default's cost (large depthwise kernels are slow on XLA:CPU).
  c.model_kwargs.stem_stride = 4
  c.num_train_examples = CPU_TRAIN_EXAMPLES
  c.num_epochs = args.get("epochs", CPU_EPOCHS)
  c.batch_size = args.get("batch", 64)
  # 4e-3 per 4096 images is for 94k steps; ~125 steps want a larger rate at this batch:
  # 2e-3, not scaled (ours). The ResNet-50 row's SGD keeps 0.1 x batch / 256.
  c.learning_rate = 2e-3
  c.lr_base_batch_size = 0
  c.eval_every_epochs = c.num_epochs  # one evaluation, at the end
  c.checkpoint_every_epochs = c.num_epochs


def _cpu_augmentation(c) -> None:
  """The ``cpu`` variant's augmentation, the same for every row: 2-pixel translations
  and flips. The recipe's random-resized crops, RandAugment, Mixup / CutMix and erasing
  are for 300 epochs; over a few epochs of a few thousand images they left the nets near
  chance (kernel 11: 10% after one epoch of 5,000), and they made a row's compilation and
  steps several times slower on the CPU. Evaluation on the whole image (no centre crop),
  as the training crops are translations. The recipe rows keep the rest of the recipe:
  AdamW, warm-up and cosine, label smoothing, stochastic depth, layer scale and
  trunc-normal init."""
  c.augment.update(dict(inception_crop=False, crop_padding=2, flip=True, rand_augment="",
                        color_jitter=0.0, random_erasing=0.0, mixup=0.0, cutmix=0.0,
                        eval_crop_pct=0.0, resize_method="bilinear"))


def _flatten(c, prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in c.items():
    if hasattr(value, "items"):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def get_sweep(arg: str | None = None) -> list[dict[str, Any]]:
  """One run per row of Table 10: ``{"name": "00_resnet50", "model": "roadmap_resnet50",
  ...}``, mapping dotted config keys (as in ``--config.KEY=VALUE``) to the values that
  turn ``get_config(arg)`` into ``get_config(arg + ",step=<row>")``."""
  args = common.parse_arg(arg, **ARGS)
  args.pop("step", None)
  rest = ",".join(k if v is True else f"{k}={v}" for k, v in args.items())
  base = _flatten(get_config(rest or None))
  runs = []
  for i, name in enumerate(STEP_NAMES):
    config = _flatten(get_config(f"{rest},step={name}" if rest else f"step={name}"))
    changed = {k: v for k, v in config.items() if base.get(k) != v}
    runs.append({"name": f"{i:02d}_{name}", "model": config["model"], **changed})
  return runs
