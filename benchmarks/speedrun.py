r"""Time to accuracy: runs a config for several seeds, each as its own ``train.py`` command,
and reports the test accuracy (mean, spread), the wall time from command to printed
accuracy, and the accuracy against time as a PNG.

  python benchmarks/speedrun.py --seeds 5                       # the CPU speedrun
  python benchmarks/speedrun.py --cpu_devices 2 --seeds 5       # the two cores as two devices
  python benchmarks/speedrun.py --config configs/speedrun_fashion_mnist.py:gpu --seeds 5
  python benchmarks/speedrun.py --seeds 2 --workdir runs/sr_wide \
      --config.model_kwargs.widths=48,96,192

Each seed runs ``python train.py --config CONFIG --workdir WORKDIR/seed<i>
--config.seed=<i> [--config.FIELD=VALUE ...]`` one after another (never side by side:
they would share the cores), its output saved to ``WORKDIR/seed<i>.log``. Reported per
seed: the final test accuracy (the config's evaluation protocol; of the moving average of
the weights where the config keeps one, ``ema_decay``, with the raw weights' beside it), the wall time of the
whole command (imports, data loading and compilation included), and train.py's training
time (the steps after the first, less evaluation and checkpoints). Written:
``WORKDIR/speedrun.json`` (every number), ``WORKDIR/speedrun.md`` (the table) and
``WORKDIR/speedrun.png`` (test accuracy against training time and against wall time, one
line per seed, the target as a dashed line).

Each seed's numbers are also written to ``WORKDIR/seed<i>.json`` as it finishes, and the
report covers every seed in ``WORKDIR``: seeds can be added later (``--first_seed 3
--seeds 2`` into the same folder) and the report is over all of them. An existing
``WORKDIR/seed<i>`` of a seed to run is an error (train.py would resume it, not time a
run).

``--cpu_devices N`` runs each seed on N simulated CPU devices, the README's two-device
trick: it adds ``--xla_force_host_platform_device_count=N
--xla_cpu_multi_thread_eigen=false`` to the runs' ``XLA_FLAGS`` (a device count already
in ``XLA_FLAGS`` is an error: give one or the other). Each seed's record names the
devices it ran on and the ``XLA_FLAGS`` it ran with, so runs of one and two devices in
one folder are told apart.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Any, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from training import cli  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import rundir  # noqa: E402

DEFAULT_CONFIG = "configs/speedrun_fashion_mnist.py"
FORCE_DEVICES = "--xla_force_host_platform_device_count"


def run_env(cpu_devices: int) -> dict[str, str]:
  """The environment of the runs: this one, with ``cpu_devices`` simulated CPU devices
  when it is not 0 (one thread each: the two-device trick of the README)."""
  env = dict(os.environ)
  if cpu_devices:
    flags = f"{FORCE_DEVICES}={cpu_devices} --xla_cpu_multi_thread_eigen=false"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
  return env



def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  """The options, and the overrides as train.py arguments (checked with the config: a
  mistake is one line and exit status 2 before any run starts)."""
  rest, overrides = config_lib.split_override_args(argv)
  p = cli.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
  p.add_argument("--config", default=DEFAULT_CONFIG, help="configs/x.py[:arg]")
  p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
  p.add_argument("--first_seed", type=int, default=0)
  p.add_argument("--workdir", default="runs/speedrun", help="one folder per seed inside")
  p.add_argument("--target", type=float, default=94.0, help="test accuracy (%%) to reach")
  p.add_argument("--cpu_devices", type=int, default=0,
                 help="run on N simulated CPU devices (the two-device trick); 0: as is")
  args = p.parse_args(rest)
  if args.seeds < 1:
    p.error(f"--seeds must be at least 1, got {args.seeds}")
  if args.cpu_devices < 0:
    p.error(f"--cpu_devices must be 0 (as XLA_FLAGS say) or more, got {args.cpu_devices}")
  if args.cpu_devices and FORCE_DEVICES in os.environ.get("XLA_FLAGS", ""):
    p.error(f"XLA_FLAGS already set {FORCE_DEVICES}; give --cpu_devices or that flag, not "
            "both")
  spec = args.config if os.path.isabs(args.config) else os.path.join(ROOT, args.config)
  try:
    config_lib.check(spec, overrides)
  except config_lib.ConfigError as e:
    p.error(str(e))
  return args, [f"--config.{k}={v}" for k, v in overrides]


def run_seed(config: str, workdir: str, seed: int, overrides: Sequence[str],
             env: dict[str, str]) -> dict[str, Any]:
  """One ``train.py`` command, in ``env``; its summary, eval rows and wall time."""
  run_dir = os.path.join(workdir, f"seed{seed}")
  cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--config", config,
         "--workdir", run_dir, f"--config.seed={seed}", *overrides]
  log_path = os.path.join(workdir, f"seed{seed}.log")
  t = time.time()
  with open(log_path, "w") as log:
    rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                        env=env).returncode
  wall = time.time() - t
  if rc:
    with open(log_path) as f:
      tail = f.read().strip().splitlines()[-1:] or ["(no output)"]
    raise RuntimeError(f"seed {seed}: train.py exited with {rc}: {tail[0]} (log: {log_path})")
  summary = rundir.read(run_dir, rundir.SUMMARY)
  evals = [r for r in rundir.read_metrics(run_dir) if "eval_top1" in r]
  # The network a run delivers: the EMA weights where it keeps an average, else the raw.
  key = "ema_eval_top1" if "ema_eval_top1" in summary else "eval_top1"
  return {"seed": seed, "top1": 100 * summary[key],
          "weights": "ema" if key == "ema_eval_top1" else "raw",
          "top1_raw": 100 * summary["eval_top1"], "wall_sec": wall,
          "train_sec": summary["train_time_this_run_sec"],
          "startup_sec": wall - summary["wall_time_this_run_sec"],
          "platform": summary["platform"], "devices": summary["devices"],
          "xla_flags": env.get("XLA_FLAGS", ""),
          # as the run had them (train.py adds malloc's huge pages: training/host_memory.py)
          "glibc_tunables": rundir.read(run_dir, rundir.RUN_INFO).get("glibc_tunables", ""),
          "load_average_end": os.getloadavg()[0],
          "curve": [{"epoch": r["epoch"], "train_sec": r.get("train_seconds"),
                     "top1": 100 * r[key]} for r in evals]}


def all_seeds(workdir: str) -> list[dict[str, Any]]:
  """Every seed's numbers in ``workdir`` (``seed<i>.json``), by seed."""
  runs = []
  for name in os.listdir(workdir):
    if re.fullmatch(r"seed\d+\.json", name):
      with open(os.path.join(workdir, name)) as f:
        runs.append(json.load(f))
  return sorted(runs, key=lambda r: r["seed"])


def device_counts(runs: Sequence[dict[str, Any]]) -> str:
  """How many seeds ran on how many devices: "2 (5 seeds)", or each count where they
  differ (seeds recorded before the count was, as "not recorded")."""
  counts = collections.Counter(str(r.get("devices", "not recorded")) for r in runs)
  return ", ".join(f"{n} ({k} seed{'s' if k > 1 else ''})" for n, k in sorted(counts.items()))


def describe(values: Sequence[float], fmt: str = ".2f") -> str:
  mean = statistics.mean(values)
  spread = statistics.stdev(values) if len(values) > 1 else 0.0
  return (f"{mean:{fmt}} +- {spread:{fmt}} (min {min(values):{fmt}}, "
          f"max {max(values):{fmt}})")


def plot(runs: Sequence[dict[str, Any]], target: float, path: str, title: str) -> None:
  """Test accuracy against training time (left) and against the command's wall time
  (right; each run's evaluations placed at its start-up plus training time)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
  for r in runs:
    pts = [p for p in r["curve"] if p["train_sec"] is not None]
    xs = [p["train_sec"] for p in pts]
    ys = [p["top1"] for p in pts]
    axes[0].plot(xs, ys, "o-", alpha=0.8, label=f"seed {r['seed']}")
    # Wall: start-up (imports, data, compile) + training, and evaluation time between.
    scale = (r["wall_sec"] - r["startup_sec"]) / max(xs[-1], 1e-9) if xs else 1.0
    axes[1].plot([r["startup_sec"] + x * scale for x in xs], ys, "o-", alpha=0.8,
                 label=f"seed {r['seed']}")
  for ax, xlabel in zip(axes, ("training time (s): steps after the first, no eval",
                               "wall time from command (s), start-up included")):
    ax.axhline(target, ls="--", c="k", lw=1, label=f"target {target:g}%")
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)")
    points = [p["top1"] for r in runs for p in r["curve"]] + [target]
    ax.set_ylim(max(min(points) - 1, 0), min(max(points) + 1, 100))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_report(workdir: str, config: str, overrides: Sequence[str], target: float) -> None:
  """Prints the report over every seed in ``workdir`` and writes ``speedrun.{md,json,png}``
  there (``config`` and ``overrides`` name what the seeds ran)."""
  runs = all_seeds(workdir)
  top1 = [r["top1"] for r in runs]
  reached = sum(t >= target for t in top1)
  lines = [f"{config} {' '.join(overrides)}".strip(),
           f"test accuracy (%): {describe(top1)}; {reached}/{len(runs)} seeds reach "
           f"{target:g}%",
           f"wall time from command (s): {describe([r['wall_sec'] for r in runs], '.1f')}",
           f"training time (s): {describe([r['train_sec'] for r in runs])}",
           f"devices: {device_counts(runs)}"]
  print("\n".join(lines))
  table = ["| seed | devices | test top-1 % | weights (raw top-1 %) | wall s (command) "
           "| start-up s | training s |", "|---|---|---|---|---|---|---|"]
  table += [f"| {r['seed']} | {r.get('devices', '?')} | {r['top1']:.2f} "
            f"| {r.get('weights', 'raw')} ({r.get('top1_raw', r['top1']):.2f}) "
            f"| {r['wall_sec']:.1f} "
            f"| {r['startup_sec']:.1f} | {r['train_sec']:.2f} |" for r in runs]
  with open(os.path.join(workdir, "speedrun.md"), "w") as f:
    f.write("\n\n".join(["\n".join(lines), "\n".join(table)]) + "\n")
  with open(os.path.join(workdir, "speedrun.json"), "w") as f:
    json.dump({"config": config, "overrides": overrides, "target": target,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "load_average_end": os.getloadavg()[0], "runs": runs}, f, indent=2)
  plot(runs, target, os.path.join(workdir, "speedrun.png"),
       f"{config}: {statistics.mean(top1):.2f}% mean of {len(runs)} seeds")


def main(argv: Sequence[str] | None = None) -> int:
  args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
  seeds = range(args.first_seed, args.first_seed + args.seeds)
  taken = [s for s in seeds if os.path.exists(os.path.join(args.workdir, f"seed{s}"))]
  if taken:
    print(f"error: {args.workdir}/seed{taken[0]} exists (train.py would resume it); give "
          "another --workdir or remove it", file=sys.stderr)
    return 2
  os.makedirs(args.workdir, exist_ok=True)
  env = run_env(args.cpu_devices)
  for seed in seeds:
    try:
      r = run_seed(args.config, args.workdir, seed, overrides, env)
    except RuntimeError as e:
      print(f"error: {e}", file=sys.stderr)
      return 1
    with open(os.path.join(args.workdir, f"seed{seed}.json"), "w") as f:
      json.dump(r, f, indent=2)
    weights = f" (EMA weights; raw {r['top1_raw']:.2f}%)" if r["weights"] == "ema" else ""
    print(f"seed {seed}: {r['top1']:.2f}%{weights} in {r['wall_sec']:.1f} s from command "
          f"({r['startup_sec']:.1f} s start-up, {r['train_sec']:.2f} s training steps) "
          f"on {r['devices']} {r['platform']} device(s)", flush=True)
  write_report(args.workdir, args.config, overrides, args.target)
  print(f"written: {args.workdir}/speedrun.{{md,json,png}}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
