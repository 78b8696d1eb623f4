r"""Input-only benchmark: how fast the host pipeline feeds a config's recipe, with no model.

  python tools/input_benchmark.py                                # ConvNeXt-T's recipe, 224
  python tools/input_benchmark.py --config configs/vgg.py        # VGG's scale jittering
  python tools/input_benchmark.py --eval                         # the evaluation transform
  python tools/input_benchmark.py --dataset imagenet2012 --data_dir ~/tensorflow_datasets

Builds the config's data plan for the host pipeline (``input_pipeline.recipe.plan``),
runs its host half (``input_pipeline.host``: decode, crop, flip) alone, as one process
of ``train.py`` would, and prints images/s overall and per CPU core, and how many cores
would feed ``--target`` images/s. The per-core figure is images per CPU-second
(``time.process_time`` over all threads), so it holds even when other jobs share the
CPU (the load average line, read before the run, tells); the cores needed assume linear
scaling (tf.data runs one example per thread, so it scales well until memory bandwidth
or I/O limits it).

Then it times the plan's device half (RandAugment, erasing, Mixup/CutMix,
normalisation: what the step adds per batch) and RandAugment alone, compiled, on JAX's
default device, and prints their cost per image (``--device_steps 0`` skips it).

``fake_jpeg`` (the default) decodes synthetic JPEGs of ImageNet's size (~115 KB,
300-500 pixels a side), so it measures decoding and augmentation without the
dataset; reading real files adds I/O.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from input_pipeline import host  # noqa: E402
from input_pipeline.datasets import DatasetError  # noqa: E402
from training import cli  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = cli.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default=os.path.join(ROOT, "configs", "convnext_t.py"),
                 help="config whose augmentation recipe is timed (path[:arg])")
  p.add_argument("--dataset", default="fake_jpeg",
                 help="a prepared TFDS name, or fake_jpeg (synthetic JPEGs, no data)")
  p.add_argument("--data_dir", help="TFDS data directory")
  p.add_argument("--image_size", type=int, help="default: the config's")
  p.add_argument("--batch_size", type=int, default=256, help="this process's batch")
  p.add_argument("--steps", type=int, default=50, help="timed batches")
  p.add_argument("--warmup_steps", type=int, default=10,
                 help="batches before timing (the pipeline fills and autotunes)")
  p.add_argument("--log_every", type=int, default=10, help="progress line every N batches")
  p.add_argument("--eval", action="store_true", help="benchmark the evaluation path")
  p.add_argument("--target", type=float, default=5000.0,
                 help="images/s the accelerators consume, to size the CPUs")
  p.add_argument("--fake_examples", type=int, default=10_000,
                 help="fake_jpeg: dataset length (256 distinct images are cycled)")
  p.add_argument("--nondeterministic", action="store_true",
                 help="let tf.data reorder examples (a little faster)")
  p.add_argument("--device_steps", type=int, default=5,
                 help="timed batches of the device half (0: skip)")
  p.add_argument("--device_batch", type=int, default=64,
                 help="batch for timing the device half")
  return p.parse_args(argv)


def _plan(args: argparse.Namespace):
  from input_pipeline import recipe  # pylint: disable=g-import-not-at-top
  from training import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(args.config)
  size = args.image_size or config.image_size or 224
  rec = recipe.Recipe.from_config(config.augment)
  return rec, recipe.plan(rec, source="host", image_size=size, channels=3,
                          mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                          num_classes=1000, label_smoothing=config.label_smoothing), size


def _dataset(args: argparse.Namespace, plan, size: int):
  if args.dataset == "fake_jpeg":
    source = host.fake_jpeg_dataset(args.fake_examples)
  else:
    source = host.open_builder(args.dataset, data_dir=args.data_dir, download=False)
  kw = dict(global_batch_size=args.batch_size, process_index=0, process_count=1)
  if args.eval:
    return host.eval_dataset(source, ops=plan.eval_host, **kw).repeat()
  return host.train_dataset(source, image_size=size, ops=plan.train_host,
                            deterministic=not args.nondeterministic, **kw)


def time_device_ops(ops, batch: int, size: int, steps: int) -> float:
  """Seconds per image of ``ops`` (compiled) on JAX's default device: the median of
  ``steps`` timed batches after one compiling call."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from input_pipeline import augment  # pylint: disable=g-import-not-at-top
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3)),
                       jnp.uint8)
  labels = jnp.arange(batch) % 1000
  fn = jax.jit(lambda k, x, y: augment.apply_ops(k, x, ops, y))
  jax.block_until_ready(fn(jax.random.key(0), images, labels))
  times = []
  for i in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn(jax.random.key(i + 1), images, labels))
    times.append(time.perf_counter() - start)
  return float(np.median(times)) / batch


def run(args: argparse.Namespace) -> dict:
  """Times the pipeline.

  Returns:
    {"images_per_s": wall-clock rate, "per_core": images per CPU-second,
    "cores_needed": cores to feed ``args.target`` images/s, and, unless skipped,
    "device_us_per_image" and "rand_augment_us_per_image"}.
  """
  load = os.getloadavg()[0]  # Before the pipeline adds its own.
  _, plan, size = _plan(args)
  what = "eval" if args.eval else "train"
  chain = plan.eval_host if args.eval else plan.train_host
  print(f"{args.dataset} {what}, {size}x{size}, batch {args.batch_size}: host "
        f"{' > '.join(map(str, chain))}", flush=True)
  batches = _dataset(args, plan, size).as_numpy_iterator()
  start = time.perf_counter()
  for _ in range(args.warmup_steps):
    next(batches)
  print(f"warm-up: {args.warmup_steps} batches in {time.perf_counter() - start:.1f} s",
        flush=True)
  # CPU time of all the process's threads: images per CPU-second is the per-core
  # cost even when other jobs take some of the cores.
  start, cpu_start = time.perf_counter(), time.process_time()
  for step in range(1, args.steps + 1):
    next(batches)
    if step % args.log_every == 0 or step == args.steps:
      images = step * args.batch_size
      rate = images / max(time.perf_counter() - start, 1e-9)
      per_core = images / max(time.process_time() - cpu_start, 1e-9)
      print(f"step {step}/{args.steps}: {rate:,.0f} images/s, {per_core:,.0f} per "
            "CPU-second", flush=True)
  wall = max(time.perf_counter() - start, 1e-9)
  cpu = max(time.process_time() - cpu_start, 1e-9)
  rate = args.steps * args.batch_size / wall
  per_core = args.steps * args.batch_size / cpu
  cores = host._num_cores()  # pylint: disable=protected-access
  needed = math.ceil(args.target / per_core)
  print(f"{rate:,.0f} images/s on {cores} cores (the pipeline kept {cpu / wall:.1f} of "
        f"them busy): {per_core:,.0f} images/s per CPU core")
  print(f"feeding {args.target:,.0f} images/s needs about {needed} such cores")
  if load > 0.5:
    print(f"load average {load:.1f} before the run, on {os.cpu_count()} CPUs: other "
          "work shares them, so images/s is low; the per-core figure holds")
  out = {"images_per_s": rate, "per_core": per_core, "cores_needed": needed}
  device_ops = plan.eval_device if args.eval else plan.train_device
  if args.device_steps > 0 and not args.eval:
    import jax  # pylint: disable=g-import-not-at-top
    dev = jax.devices()[0]
    per_image = time_device_ops(device_ops, args.device_batch, size, args.device_steps)
    out["device_us_per_image"] = 1e6 * per_image
    print(f"device half ({' > '.join(o.name for o in device_ops)}) on {dev.platform} "
          f"({dev.device_kind}): {1e6 * per_image:,.0f} us per image")
    ra = [o for o in device_ops if o.name == "rand_augment"]
    if ra:
      per_image = time_device_ops(ra, args.device_batch, size, args.device_steps)
      out["rand_augment_us_per_image"] = 1e6 * per_image
      print(f"of which RandAugment alone: {1e6 * per_image:,.0f} us per image")
  return out


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  if args.steps < 1 or args.warmup_steps < 0 or args.log_every < 1:
    print("error: --steps and --log_every must be >= 1, --warmup_steps >= 0",
          file=sys.stderr)
    return 2
  try:
    run(args)
  except (DatasetError, ValueError) as e:  # ConfigError, RecipeError: one line
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
