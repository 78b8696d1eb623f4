r"""Input-only benchmark: how fast the host pipeline feeds images, with no model.

  python tools/input_benchmark.py                        # fake JPEGs, 224, RandAugment
  python tools/input_benchmark.py --rand_augment ""      # crop + flip only
  python tools/input_benchmark.py --eval                 # the evaluation transform
  python tools/input_benchmark.py --dataset imagenet2012 --data_dir ~/tensorflow_datasets

Runs ``input_pipeline.host``'s training (or, with ``--eval``, evaluation) pipeline
alone, as one process of ``train.py`` would, and prints images/s overall and per
CPU core, and how many cores would feed ``--target`` images/s. The per-core figure
is images per CPU-second (``time.process_time`` over all threads), so it holds
even when other jobs share the CPU (the load average line, read before the run,
tells); the cores needed assume linear scaling (tf.data runs one example per
thread, so it scales well until memory bandwidth or I/O limits it).

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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--dataset", default="fake_jpeg",
                 help="a prepared TFDS name, or fake_jpeg (synthetic JPEGs, no data)")
  p.add_argument("--data_dir", help="TFDS data directory")
  p.add_argument("--image_size", type=int, default=224)
  p.add_argument("--batch_size", type=int, default=256, help="this process's batch")
  p.add_argument("--rand_augment", default="rand-m9-mstd0.5-inc1",
                 help="timm RandAugment spec; empty to disable")
  p.add_argument("--color_jitter", type=float, default=0.0,
                 help="ColorJitter strength (ignored with --rand_augment, as in timm)")
  p.add_argument("--resize_method", default="bicubic", choices=host.RESIZE_METHODS)
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
  return p.parse_args(argv)


def _dataset(args: argparse.Namespace):
  if args.dataset == "fake_jpeg":
    source = host.fake_jpeg_dataset(args.fake_examples)
  else:
    source = host.open_builder(args.dataset, data_dir=args.data_dir, download=False)
  kw = dict(global_batch_size=args.batch_size, image_size=args.image_size,
            resize_method=args.resize_method, process_index=0, process_count=1)
  if args.eval:
    return host.eval_dataset(source, **kw).repeat()
  return host.train_dataset(source, rand_augment=args.rand_augment or None,
                            color_jitter=args.color_jitter,
                            deterministic=not args.nondeterministic, **kw)


def run(args: argparse.Namespace) -> dict:
  """Times the pipeline.

  Returns:
    {"images_per_s": wall-clock rate, "per_core": images per CPU-second,
    "cores_needed": cores to feed ``args.target`` images/s}.
  """
  load = os.getloadavg()[0]  # Before the pipeline adds its own.
  what = "eval" if args.eval else f"train (rand_augment={args.rand_augment or 'off'})"
  print(f"{args.dataset} {what}, {args.image_size}x{args.image_size}, "
        f"batch {args.batch_size}", flush=True)
  batches = _dataset(args).as_numpy_iterator()
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
  return {"images_per_s": rate, "per_core": per_core, "cores_needed": needed}


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  if args.steps < 1 or args.warmup_steps < 0 or args.log_every < 1:
    print("error: --steps and --log_every must be >= 1, --warmup_steps >= 0",
          file=sys.stderr)
    return 2
  try:
    run(args)
  except DatasetError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
