r"""Sweeps: one config, many runs, each in its own workdir, then one table and three plots.

  # The config's own sweep (its get_sweep()), one run after another, then the table:
  python launch/sweep.py --config configs/lecun1989_nets.py --sweep_dir runs/lecun1989
  # A grid on the command line: the cartesian product (crossed with get_sweep() if the
  # config has one), with fields fixed for every run as in train.py:
  python launch/sweep.py --config configs/resnet20_cifar.py:short --sweep_dir runs/r20_lr \
      --grid learning_rate=0.05,0.1,0.2 --grid seed=0,1 --config.num_epochs=30
  # An explicit list: --run once per run, or --sweep FILE (.json list, or .py with get_sweep):
  python launch/sweep.py --config configs/lenet1989.py --sweep_dir runs/l89_loss \
      --run "loss=cross_entropy" --run "loss=mse learning_rate=0.03"
  # One run per GPU in parallel, or a SLURM array; --dry-run prints and writes nothing:
  python launch/sweep.py ... --runner gpus [--gpus 8] [--gpus_per_run 1]
  # N runs at once on this machine's CPU (short runs whose time is start-up and compiling):
  python launch/sweep.py ... --runner processes --parallel 2
  python launch/sweep.py ... --runner slurm --sbatch partition=gpu --sbatch time=4:00:00
  # The table and plots again (e.g. after a SLURM array, or while runs are going):
  python launch/sweep.py collect --sweep_dir runs/lecun1989

A sweep is a list of runs; a run is a set of config overrides (``dotted.key -> value``,
as ``--config.dotted.key=value`` takes them) and a name. Each run is a plain
``python train.py --config ... --workdir SWEEP_DIR/NAME --config.key=value ...``: the
sweep adds no code path of its own to training, so a run of a sweep is reproduced by its
command (listed in ``SWEEP_DIR/sweep.json``) alone.

* Names come from the sweep entry's ``"name"``, else from the values that differ between
  runs (``model=vgg11_bn,learning_rate=0.05``), Hydra's multirun convention.
* Every run's config is loaded, overridden and validated, its model built and its initial
  state traced (``training.config.check``, as train.py and the tests), before anything
  starts; a bad key is one ``error: ...`` line and exit status 2.
* Running the same command again skips finished runs (``summary.json`` at the last step)
  and resumes the others from their checkpoints (train.py does that by itself). A workdir
  that was started with a different config is an error rather than a silent mix.
* The local runners write each run's output to ``WORKDIR/log.txt`` and end by collecting
  (launch/collect.py): ``results.md``, ``results.csv`` and plots in the sweep directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import inspect
import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from launch import collect  # noqa: E402
from training import cli  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import rundir  # noqa: E402

MANIFEST = "sweep.json"
LOG = rundir.LOG
NAME = "name"  # the optional key of a sweep entry that names the run


class SweepError(ValueError):
  """Bad sweep input. The message is one line for the user."""


@dataclasses.dataclass
class Run:
  """One run of a sweep: its name, overrides (command-line strings) and command."""
  name: str
  overrides: dict[str, str]
  workdir: str
  command: list[str]  # argv, starting with "python"

  def shell(self) -> str:
    return shlex.join(self.command)


# ---------------------------------------------------------------------------- expansion


def normalize_key(key: str) -> str:
  """``--config.a.b``, ``config.a.b`` and ``a.b`` all name the field ``a.b``."""
  key = key.strip()
  for prefix in ("--config.", "config."):
    if key.startswith(prefix):
      return key[len(prefix):]
  return key


def format_value(value: Any) -> str:
  """A Python value as ``--config.key=VALUE`` text that training/config.py parses back."""
  if isinstance(value, str):
    return value
  if value is None or isinstance(value, (bool, int, float)):
    return repr(value)  # None, True, 3, 0.1, 1e-05: literals both typed and free fields take
  if isinstance(value, (tuple, list)):
    items = [repr(v) if isinstance(v, str) else format_value(v) for v in value]
    return "(" + ",".join(items) + ("," if len(items) == 1 else "") + ")"
  raise SweepError(f"cannot pass a {type(value).__name__} ({value!r}) as a config value; "
                   "use a str, number, bool, None, tuple or list")


def split_values(text: str) -> list[str]:
  """``"0.1,0.2"`` -> two values; commas inside brackets or quotes stay: ``(1,2),(3,4)``."""
  values, depth, quote, current = [], 0, None, ""
  for ch in text:
    if quote:
      quote = None if ch == quote else quote
    elif ch in "'\"":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    elif ch == "," and depth == 0:
      values.append(current.strip())
      current = ""
      continue
    current += ch
  values.append(current.strip())
  return values


def parse_assignment(text: str, what: str) -> tuple[str, str]:
  key, eq, value = text.partition("=")
  if not eq or not key.strip():
    raise SweepError(f"{what} {text!r} is not KEY=VALUE (e.g. learning_rate=0.1)")
  return normalize_key(key), value.strip()


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
  """``["seed=0,1,2", "model=a,b"]`` -> ``{"seed": ["0", "1", "2"], "model": ["a", "b"]}``."""
  grid: dict[str, list[str]] = {}
  for spec in specs:
    key, text = parse_assignment(spec, "--grid")
    values = split_values(text)
    if key in grid:
      raise SweepError(f"--grid {key} is given twice; list all its values in one --grid")
    if "" in values:
      raise SweepError(f"--grid {spec!r} has an empty value")
    if len(set(values)) != len(values):
      raise SweepError(f"--grid {spec!r} repeats a value")
    grid[key] = values
  return grid


def parse_run(text: str) -> dict[str, str]:
  """``"model=vgg11 learning_rate=0.1 name=base"`` -> one sweep entry."""
  entry = {}
  for item in shlex.split(text):
    key, value = parse_assignment(item, "--run item")
    entry[key] = value
  return entry


def _entry(raw: Any, where: str) -> dict[str, str]:
  if not isinstance(raw, dict):
    raise SweepError(f"{where}: a sweep entry must be a dict of config keys, got {raw!r}")
  return {normalize_key(str(k)): format_value(v) for k, v in raw.items()}


def _call_get_sweep(module: Any, arg: str | None, where: str) -> list[dict[str, str]]:
  get_sweep = module.get_sweep
  takes_arg = bool(inspect.signature(get_sweep).parameters)
  try:
    entries = get_sweep(arg) if takes_arg else get_sweep()
  except ValueError as e:  # a config argument it does not take (common.parse_arg)
    raise SweepError(f"{where}{':' + arg if arg else ''}: {e}") from None
  if not isinstance(entries, (list, tuple)) or not entries:
    raise SweepError(f"get_sweep() in {where} must return a non-empty list of dicts")
  return [_entry(e, f"get_sweep() in {where}") for e in entries]


def _load_module(path: str) -> Any:
  spec = importlib.util.spec_from_file_location("_sweep_module", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [""])[0]
    raise SweepError(f"config file {path!r} cannot be loaded: {type(e).__name__}: "
                     f"{first}. Fix the file, or pass another one") from None
  return module


def config_sweep(config_spec: str) -> list[dict[str, str]] | None:
  """The config file's ``get_sweep([arg])`` entries, or None when it has none.

  ``get_sweep`` gets the same argument as ``get_config`` (``file.py:arg``) if it takes one.
  """
  path, _, arg = config_spec.partition(":")
  if not os.path.isfile(path):
    raise SweepError(f"config file not found: {path!r}")
  module = _load_module(path)
  if not hasattr(module, "get_sweep"):
    return None
  return _call_get_sweep(module, arg or None, path)


def sweep_file(path: str) -> list[dict[str, str]]:
  """Entries from a ``.json`` list (or ``{"runs": [...]}``) or a ``.py`` with get_sweep()."""
  if not os.path.isfile(path):
    raise SweepError(f"sweep file not found: {path!r}")
  if path.endswith(".py"):
    module = _load_module(path)
    if not hasattr(module, "get_sweep"):
      raise SweepError(f"sweep file {path!r} defines no get_sweep()")
    return _call_get_sweep(module, None, path)
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise SweepError(f"cannot read sweep file {path!r}: {e}") from None
  if isinstance(data, dict) and "runs" in data:
    data = data["runs"]
  if not isinstance(data, list) or not data:
    raise SweepError(f"sweep file {path!r} must hold a non-empty list of dicts")
  return [_entry(e, path) for e in data]


def expand(entries: Sequence[dict[str, str]],
           grid: dict[str, list[str]]) -> list[tuple[dict[str, str], dict[str, str]]]:
  """Every entry crossed with every point of the grid: ``[(entry, grid_point), ...]``.

  A grid key that an entry sets already is an error: the entry's name may encode the
  value (``net1_seed0``), and two sources for one field would make that name a lie.
  """
  entries = list(entries) or [{}]
  for key in grid:
    clash = [e.get(NAME, "") for e in entries if key in e]
    if clash:
      raise SweepError(
          f"--grid {key} collides with the sweep's entries, which set {key} already "
          f"(e.g. {clash[0] or 'an unnamed entry'}); drop the --grid, or pass "
          "--no_config_sweep to sweep only the grid")
  points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
  return [(dict(e), p) for e in entries for p in points]


_UNSAFE = re.compile(r"[^\w.+=-]+")


def _token(key: str, value: str, leaves: dict[str, int]) -> str:
  leaf = key.rsplit(".", 1)[-1]
  label = leaf if leaves.get(leaf, 0) == 1 else key
  if "/" in value:  # a path: its last component says enough (usps.npz)
    value = value.rstrip("/").rsplit("/", 1)[-1]
  value = _UNSAFE.sub("-", value).strip("-")[:40]
  return f"{label}={value}"


def _auto_names(overrides: Sequence[dict[str, str]]) -> list[str]:
  """Names from the keys whose values differ between runs, in order of appearance."""
  keys = list(dict.fromkeys(k for o in overrides for k in o))
  # One run: all its keys name it; several: the keys that tell them apart.
  varying = [k for k in keys if len(overrides) == 1 or len({o.get(k) for o in overrides}) > 1]
  leaves: dict[str, int] = {}
  for k in varying:
    leaf = k.rsplit(".", 1)[-1]
    leaves[leaf] = leaves.get(leaf, 0) + 1
  return [",".join(_token(k, o[k], leaves) for k in varying if k in o) for o in overrides]


def run_names(pairs: Sequence[tuple[dict[str, str], dict[str, str]]]) -> list[str]:
  """A unique, readable, filesystem-safe name per ``(entry, grid_point)``."""
  entries = [{k: v for k, v in e.items() if k != NAME} for e, _ in pairs]
  from_entries = _auto_names(entries)
  from_grid = _auto_names([p for _, p in pairs])
  names = []
  for (entry, _), auto, grid in zip(pairs, from_entries, from_grid):
    first = _UNSAFE.sub("-", entry[NAME]).strip("-") if entry.get(NAME) else auto
    names.append(",".join(filter(None, (first, grid))) or "run")
  seen: dict[str, int] = {}
  unique = []
  for name in names:  # a repeated name gets -2, -3, ...
    seen[name] = seen.get(name, 0) + 1
    unique.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
  return unique


def build_runs(config_spec: str, sweep_dir: str, entries: Sequence[dict[str, str]],
               grid: dict[str, list[str]], fixed: dict[str, str],
               python: str = "python") -> list[Run]:
  """The runs of a sweep: ``entries`` x ``grid``, then ``fixed`` (the same for every run).

  ``fixed`` wins over what an entry sets (it is the command line's "for every run"), but
  not over a key the sweep varies: that would make runs identical.
  """
  pairs = expand(entries, grid)
  names = run_names(pairs)
  for key in fixed:
    values = {({**e, **p}).get(key) for e, p in pairs}
    if len(values) > 1:
      raise SweepError(f"--config.{key} is fixed for every run, but the sweep varies {key}; "
                       "drop one of the two")
  train_py = os.path.relpath(os.path.join(ROOT, "train.py"))
  runs, seen = [], {}
  for name, (entry, point) in zip(names, pairs):
    overrides = {k: v for k, v in {**entry, **point, **fixed}.items() if k != NAME}
    key = tuple(sorted(overrides.items()))
    if key in seen:
      raise SweepError(f"runs {seen[key]!r} and {name!r} have the same overrides "
                       f"({_describe(overrides)}); every run of a sweep must differ")
    seen[key] = name
    workdir = os.path.join(sweep_dir, name)
    command = [python, train_py, "--config", config_spec, "--workdir", workdir]
    command += [f"--config.{k}={v}" for k, v in overrides.items()]
    runs.append(Run(name, overrides, workdir, command))
  return runs


def _describe(overrides: dict[str, str]) -> str:
  return " ".join(f"{k}={v}" for k, v in overrides.items()) or "none"


# ---------------------------------------------------------------------------- validation


def check_config(config_spec: str, run: Run, trace: bool = True) -> dict[str, Any]:
  """Loads, overrides and validates ``run``'s config as train.py will, builds its model
  and traces its initial state (``training.config.check``: no compilation, no data; with
  ``trace=False`` only the first three); returns the config as train.py writes it to
  config.json (a dict)."""
  where = f"run {run.name!r}"
  overrides = list(run.overrides.items())
  try:
    if trace:
      config = config_lib.check(config_spec, overrides).config
    else:
      config = config_lib.apply_overrides(config_lib.load_config(config_spec), overrides)
      config_lib.validate(config)
  except config_lib.ConfigError as e:
    raise SweepError(f"{where}: {e}") from None
  if config.init_from and not rundir.has_checkpoints(run.workdir):  # as train.py asks
    from training import pretrained  # pylint: disable=g-import-not-at-top
    try:
      pretrained.check_path(config.init_from)
    except pretrained.PretrainedError as e:
      raise SweepError(f"{where}: {e}") from None
  from input_pipeline import datasets  # pylint: disable=g-import-not-at-top
  path = datasets.local_file(config.dataset)
  if path is not None and not os.path.isfile(path):
    kind = config.dataset.split(":")[0]
    raise SweepError(f"{where}: {kind} file not found: {path} (from "
                     f"{os.getcwd()}); fix --config.dataset or run from the repository root")
  if datasets.from_tfds(config.dataset):
    try:  # a TFDS dataset: prepared, or one the run can download
      datasets.check_tfds_ready(config.dataset, data_dir=config.data_dir,
                                download=config.download)
    except datasets.DatasetError as e:
      raise SweepError(f"{where}: {e}") from None
  return json.loads(config.to_json_best_effort(sort_keys=True))


def check_configs(config_spec: str, runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
  """``check_config`` of every run, by name. Runs that differ only in their seed share
  one model build and trace (the seed changes no shape); each is still loaded,
  overridden and validated on its own."""
  out, traced = {}, set()
  for run in runs:
    key = json.dumps({k: v for k, v in run.overrides.items() if k != "seed"}, sort_keys=True)
    out[run.name] = check_config(config_spec, run, trace=key not in traced)
    traced.add(key)
  return out


def run_status(run: Run, expected: dict[str, Any] | None) -> str:
  """``finished``, ``partial`` (a workdir to resume) or ``new``.

  A workdir whose config.json differs from ``expected`` in a field that changes the
  result is a SweepError: resuming it would mix two configs under one name.
  """
  config_path = os.path.join(run.workdir, rundir.CONFIG)
  if expected is not None and os.path.isfile(config_path):
    with open(config_path) as f:
      diff = config_lib.experiment_changes(json.load(f), expected)
    if diff:
      changes = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in diff[:3])
      raise SweepError(f"run {run.name!r}: {run.workdir} was started with another config "
                       f"({changes}); use a new --sweep_dir or delete that workdir")
  summary = rundir.read(run.workdir, rundir.SUMMARY)
  if rundir.is_finished(summary):
    return "finished"
  return "partial" if os.path.isdir(run.workdir) else "new"


# ---------------------------------------------------------------------------- runners


def detect_gpus() -> list[str]:
  """GPU ids: CUDA_VISIBLE_DEVICES if set, else one per ``nvidia-smi -L`` line (no jax)."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None and visible.strip():
    return [d.strip() for d in visible.split(",") if d.strip()]
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.TimeoutExpired):
    return []
  lines = [line for line in out.stdout.splitlines() if line.startswith("GPU ")]
  return [str(i) for i in range(len(lines))]


def gpu_slots(gpus: int | None, per_run: int) -> list[str]:
  """``CUDA_VISIBLE_DEVICES`` of each parallel slot: ``["0", "1", ...]`` or ``["0,1", ...]``."""
  ids = detect_gpus()
  if gpus is not None:
    ids = ids[:gpus] if len(ids) >= gpus else [str(i) for i in range(gpus)]
  if not ids:
    raise SweepError("no GPUs found (CUDA_VISIBLE_DEVICES is unset and nvidia-smi -L lists "
                     "none); pass --gpus N, or use --runner sequential")
  if per_run < 1 or len(ids) < per_run:
    raise SweepError(f"--gpus_per_run={per_run} needs 1..{len(ids)} (GPUs: {','.join(ids)})")
  return [",".join(ids[i:i + per_run]) for i in range(0, len(ids) - per_run + 1, per_run)]


def _last_error(log_path: str) -> str:
  """The run's ``error: ...`` line (train.py's one-line errors), else its last line."""
  try:
    with open(log_path, errors="replace") as f:
      lines = [line.rstrip() for line in f if line.strip()]
  except OSError:
    return ""
  errors = [line for line in lines if line.startswith("error:")]
  return (errors or lines or [""])[-1][:300]


def _fmt_time(seconds: float) -> str:
  return f"{seconds:.0f} s" if seconds < 120 else str(datetime.timedelta(seconds=int(seconds)))


def _tee(pipe, log, echo_prefix: str | None) -> None:
  for line in iter(pipe.readline, ""):
    log.write(line)
    log.flush()
    if echo_prefix is not None:
      sys.stdout.write(echo_prefix + line)
      sys.stdout.flush()
  pipe.close()


def run_local(runs: Sequence[tuple[int, Run]], total: int, slots: Sequence[str | None],
              verbose: bool = False) -> int:
  """Runs ``(position, run)`` pairs, one per slot at a time; returns how many failed.

  A slot is a ``CUDA_VISIBLE_DEVICES`` value (None: the environment as it is). Each run's
  output goes to its ``log.txt``; a run starts as soon as a slot is free.
  """
  pending = list(runs)
  active: dict[int, tuple] = {}  # slot index -> (process, run, head, start, thread, log)
  failed = 0
  parallel = len(slots) > 1
  t0 = time.time()

  def start(slot: int) -> None:
    position, run = pending.pop(0)
    os.makedirs(run.workdir, exist_ok=True)
    log = open(os.path.join(run.workdir, LOG), "a")
    log.write(f"=== {datetime.datetime.now().isoformat(timespec='seconds')}: {run.shell()}\n")
    log.flush()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    where = ""
    if slots[slot] is not None:
      env["CUDA_VISIBLE_DEVICES"] = slots[slot]
      where = f" (GPU {slots[slot]})"
    # Own session: Ctrl-C reaches the sweep only, which passes one SIGINT on (train.py
    # then saves a checkpoint); two would interrupt the save.
    proc = subprocess.Popen([sys.executable, *run.command[1:]], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    echo = f"[{run.name}] " if verbose else None
    thread = threading.Thread(target=_tee, args=(proc.stdout, log, echo), daemon=True)
    thread.start()
    head = f"run {position}/{total}: {run.name}{where}"
    if parallel or verbose:  # other output comes between start and end: two lines
      print(f"{head} started", flush=True)
    else:
      print(f"{head} ...", end=" ", flush=True)
    active[slot] = (proc, run, head, time.time(), thread, log)

  def finish(slot: int) -> None:
    nonlocal failed
    proc, run, head, t_start, thread, log = active.pop(slot)
    thread.join()
    log.close()
    took = _fmt_time(time.time() - t_start)
    summary = rundir.read(run.workdir, rundir.SUMMARY)
    if proc.returncode == 0 and summary and "eval_top1" in summary:
      result = f"done {100 * summary['eval_top1']:.2f}% in {took}"
    elif proc.returncode == 0:
      result = f"done in {took}"
    elif proc.returncode in (130, 143, -signal.SIGINT, -signal.SIGTERM):
      failed += 1
      result = (f"interrupted after {took} (train.py saved a checkpoint: the same "
                "command resumes it)")
    else:
      failed += 1
      result = (f"FAILED (exit {proc.returncode}) after {took}: "
                f"{_last_error(os.path.join(run.workdir, LOG))} [log: {run.workdir}/{LOG}]")
    print(f"{head} {result}" if parallel or verbose else result, flush=True)

  try:
    while pending or active:
      for slot in range(len(slots)):
        if slot not in active and pending:
          start(slot)
      for slot in [s for s, a in active.items() if a[0].poll() is not None]:
        finish(slot)
      time.sleep(0.1)
  except KeyboardInterrupt:
    for proc, *_ in active.values():
      if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    for slot in list(active):
      try:
        active[slot][0].wait(timeout=120)
      except subprocess.TimeoutExpired:
        active[slot][0].kill()
      finish(slot)
    print(f"\ninterrupted after {_fmt_time(time.time() - t0)}; run the same command to "
          "resume (finished runs are skipped, the others resume from their checkpoints)")
    raise
  return failed


def slurm_files(runs: Sequence[Run], sweep_dir: str, gpus_per_run: int, parallel: int,
                sbatch: Sequence[str], setup: Sequence[str]) -> tuple[str, str, str, str]:
  """The array script and its runs file: ``(script_path, script, runs_path, runs_text)``.

  One array task per run, each one task on one node with ``gpus_per_run`` GPUs; the task
  picks line ``SLURM_ARRAY_TASK_ID + 1`` of the runs file. Paths are absolute, so the
  script can be submitted from anywhere.
  """
  slurm_dir = os.path.abspath(os.path.join(sweep_dir, "slurm"))
  runs_path = os.path.join(slurm_dir, "runs.txt")
  script_path = os.path.join(slurm_dir, "array.sbatch")
  lines = [f"mkdir -p {shlex.quote(r.workdir)} && {r.shell()} >> "
           f"{shlex.quote(os.path.join(r.workdir, LOG))} 2>&1" for r in runs]
  job = re.sub(r"[^\w.-]+", "_", os.path.basename(os.path.abspath(sweep_dir)))
  throttle = f"%{parallel}" if parallel else ""
  options = [f"--job-name=sweep-{job}", f"--array=0-{len(runs) - 1}{throttle}",
             "--nodes=1", "--ntasks=1", f"--gres=gpu:{gpus_per_run}",
             f"--output={slurm_dir}/%A_%a.out"]
  options += [o if o.startswith("-") else f"--{o}" for o in sbatch]
  script = "\n".join(
      ["#!/bin/bash",
       f"# A SLURM array for the sweep in {os.path.abspath(sweep_dir)}: task i runs line",
       f"# i + 1 of {runs_path} (one train.py run, its output in WORKDIR/{LOG}).",
       "# Written by launch/sweep.py; collect afterwards with",
       f"#   python launch/sweep.py collect --sweep_dir {sweep_dir}"]
      + [f"#SBATCH {o}" for o in options]
      + ["set -euo pipefail", f"cd {shlex.quote(os.getcwd())}", *setup,
         f'LINE=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(runs_path)})',
         'echo "task ${SLURM_ARRAY_TASK_ID} on $(hostname): ${LINE}"',
         'srun bash -c "${LINE}"']) + "\n"
  return script_path, script, runs_path, "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- CLI


def write_manifest(sweep_dir: str, config_spec: str, runs: Sequence[Run],
                   fixed: dict[str, str], runner: str, argv: Sequence[str]) -> str:
  path = os.path.join(sweep_dir, MANIFEST)
  manifest = {
      "config": config_spec, "runner": runner,
      "command": shlex.join(["python", "launch/sweep.py", *argv]),
      "updated": datetime.datetime.now().isoformat(timespec="seconds"),
      "fixed_overrides": fixed,
      "runs": [{"name": r.name, "overrides": r.overrides, "workdir": r.workdir,
                "command": r.shell()} for r in runs]}
  os.makedirs(sweep_dir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(manifest, f, indent=2)
  return path


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[tuple[str, str]]]:
  rest, fixed = config_lib.split_override_args(argv)
  parser = cli.ArgumentParser(
      prog="launch/sweep.py", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="Fields fixed for every run: --config.FIELD=VALUE, as train.py takes them.\n"
             "'python launch/sweep.py collect --sweep_dir DIR' writes the table and plots.")
  parser.add_argument("--config", required=True, help="config file, as for train.py: x.py[:arg]")
  parser.add_argument("--sweep_dir", required=True, help="one workdir per run goes in here")
  parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                      help="a grid axis (repeat for a cartesian product)")
  parser.add_argument("--run", action="append", default=[], metavar='"K=V K2=V2"',
                      help="one run of an explicit list (repeat); replaces get_sweep()")
  parser.add_argument("--sweep", metavar="FILE",
                      help="explicit runs: a .json list of dicts or a .py with get_sweep()")
  parser.add_argument("--no_config_sweep", action="store_true",
                      help="ignore the config's get_sweep() (sweep only --grid)")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="the same as --config.KEY=VALUE: a field fixed for every run")
  parser.add_argument("--runner", choices=("sequential", "processes", "gpus", "slurm"),
                      default="sequential")
  parser.add_argument("--gpus", type=int, help="gpus runner: how many (default: all found)")
  parser.add_argument("--gpus_per_run", type=int, default=1, help="gpus and slurm runners")
  parser.add_argument("--parallel", type=int, default=0,
                      help="slurm runner: at most this many array tasks at once (0: any); "
                           "processes runner: this many runs at once (2 or more)")
  parser.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                      help="slurm runner: an #SBATCH option, e.g. partition=gpu (repeat)")
  parser.add_argument("--slurm_setup", action="append", default=[], metavar="LINE",
                      help="slurm runner: a shell line before the run (module load, venv)")
  parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                      help="print the runs' commands (and the SLURM script); write nothing")
  parser.add_argument("--verbose", "-v", action="store_true",
                      help="local runners: show train.py's output too")
  parser.add_argument("--no_collect", action="store_true", help="skip the table and plots")
  args = parser.parse_args(rest)
  fixed += [parse_assignment(s, "--set") for s in args.set]
  return args, [(normalize_key(k), v) for k, v in fixed]


def plan(args: argparse.Namespace, fixed_pairs: list[tuple[str, str]]) -> list[Run]:
  """The validated runs of the sweep the command line describes."""
  fixed = dict(fixed_pairs)
  if len(fixed) != len(fixed_pairs):
    raise SweepError("a --config.KEY is given twice")
  grid = parse_grid(args.grid)
  if args.run and args.sweep:
    raise SweepError("give the explicit runs with --run or with --sweep, not both")
  if args.run:
    entries = [parse_run(r) for r in args.run]
  elif args.sweep:
    entries = sweep_file(args.sweep)
  elif args.no_config_sweep:
    entries = []
  else:
    entries = config_sweep(args.config) or []
    if not entries and not grid:
      raise SweepError(
          f"{args.config.partition(':')[0]} has no get_sweep(); describe the sweep with "
          "--grid KEY=V1,V2 (repeatable), --run \"K=V ...\" (repeatable) or --sweep FILE")
  if not entries and not grid:
    raise SweepError("the sweep is empty: give --grid, --run or --sweep")
  runs = build_runs(args.config, args.sweep_dir, entries, grid, fixed)
  return runs


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv[:1] == ["collect"]:
    return collect.main(argv[1:])
  try:
    args, fixed = parse_args(argv)
    runs = plan(args, fixed)
    configs = check_configs(args.config, runs)
    status = {r.name: run_status(r, configs[r.name]) for r in runs}
    if args.runner == "gpus":
      slots = gpu_slots(args.gpus, args.gpus_per_run)
    elif args.runner == "processes":
      if args.parallel < 2:
        raise SweepError(f"--runner processes runs --parallel N at once, N >= 2 (got "
                         f"{args.parallel}); pass --parallel 2, or use --runner sequential")
      slots = [None] * args.parallel
    elif args.runner == "slurm" and args.gpus_per_run < 1:
      raise SweepError("--gpus_per_run must be >= 1")
  except (SweepError, config_lib.ConfigError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2

  todo = [(i + 1, r) for i, r in enumerate(runs) if status[r.name] != "finished"]
  done = len(runs) - len(todo)
  print(f"sweep {args.sweep_dir}: {len(runs)} runs of {args.config}"
        + (f", {done} finished already (skipped)" if done else "")
        + (f", {sum(status[r.name] == 'partial' for _, r in todo)} to resume"
           if any(status[r.name] == "partial" for _, r in todo) else ""), flush=True)

  if args.runner == "slurm":
    if not todo:
      print("nothing to submit: every run has finished")
      return 0
    script_path, script, runs_path, runs_text = slurm_files(
        [r for _, r in todo], args.sweep_dir, args.gpus_per_run, args.parallel, args.sbatch,
        args.slurm_setup)
    if args.dry_run:
      print(f"# {script_path}\n{script}\n# {runs_path}\n{runs_text}", end="")
      return 0
    write_manifest(args.sweep_dir, args.config, runs, dict(fixed), args.runner, argv)
    os.makedirs(os.path.dirname(script_path), exist_ok=True)
    for path, text in ((script_path, script), (runs_path, runs_text)):
      with open(path, "w") as f:
        f.write(text)
    try:
      out = subprocess.run(["sbatch", script_path], capture_output=True, text=True)
    except OSError:
      print(f"error: sbatch not found; submit on the cluster with: sbatch {script_path}",
            file=sys.stderr)
      return 2
    if out.returncode:
      print(f"error: sbatch failed: {(out.stderr or out.stdout).strip()}", file=sys.stderr)
      return 2
    print(f"{out.stdout.strip()} ({len(todo)} array tasks; logs in {args.sweep_dir}/NAME/"
          f"{LOG}). When it is done: python launch/sweep.py collect --sweep_dir "
          f"{args.sweep_dir}")
    return 0

  if args.runner == "sequential":
    slots = [None]
  if args.dry_run:
    if args.runner == "gpus":
      print(f"# {len(slots)} at a time, each run on the next free slot "
            f"(CUDA_VISIBLE_DEVICES = {' | '.join(slots)}); in order:")
    elif args.runner == "processes":
      print(f"# {len(slots)} at a time, each run as soon as one ends; in order:")
    for k, (position, run) in enumerate(todo):
      env = f"CUDA_VISIBLE_DEVICES={slots[k % len(slots)]} " if args.runner == "gpus" else ""
      print(f"{env}{run.shell()}")
    return 0

  write_manifest(args.sweep_dir, args.config, runs, dict(fixed), args.runner, argv)
  for position, run in [(i + 1, r) for i, r in enumerate(runs)]:
    if status[run.name] == "finished":
      summary = rundir.read(run.workdir, rundir.SUMMARY) or {}
      acc = f" {100 * summary['eval_top1']:.2f}%" if "eval_top1" in summary else ""
      print(f"run {position}/{len(runs)}: {run.name} finished before{acc}, skipped")
  t0 = time.time()
  try:
    failed = run_local(todo, len(runs), slots, verbose=args.verbose)
  except KeyboardInterrupt:
    return 130
  print(f"{len(todo) - failed} of {len(todo)} runs done in {_fmt_time(time.time() - t0)}"
        + (f"; {failed} failed (see their {LOG})" if failed else ""), flush=True)
  if not args.no_collect:
    collect.main(["--sweep_dir", args.sweep_dir])
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
