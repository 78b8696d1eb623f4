r"""Soak test of resuming: kill a training run at random times with SIGKILL, restart it
each time, and check that it ends bitwise where an uninterrupted run ends.

Usage, from the repository root:

  python tools/soak.py --config configs/lenet1989.py --config.num_epochs=3 --kills 20
  python tools/soak.py --config configs/resnet20_cifar.py:tiny --kills 5 --workdir /tmp/soak

Any ``--config.FIELD=VALUE`` is passed to train.py as it is. What it does:

1. Runs the uninterrupted reference, ``train.py --config ... --workdir DIR/reference``,
   and times it (when each logged step came, when it ended).
2. Runs the same command in ``DIR/killed`` until ``--kills`` SIGKILLs have landed (a
   crash: unlike SIGTERM or Ctrl-C, nothing is saved), then once more, to the end. Each
   kill is one of three kinds, drawn from ``--seed``:
   - at a save (a fraction ``--save_kills``, default 0.25): 0-20 ms after orbax creates
     the save's temporary directory (``<step>.orbax-checkpoint-tmp``), which the kill
     leaves behind;
   - in training (half of the others): after the run's first logged step, uniform over
     what should remain of the run (so however long its start-up takes);
   - timed (the rest): uniform in ``[--min_delay, --max_delay]`` seconds from the run's
     start; by default from half the reference's time to its first logged step
     (start-up, restore, compilation) to 90% of how long this run should take (the
     reference's time less the steps it resumes past, or what an earlier run from the
     same checkpoint took to finish). Giving either delay makes every
     kill that is not at a save a timed one.
   A run that finishes before its kill does not count; the next restarts a finished run.
3. Compares the final checkpoints of both runs leaf by leaf, bitwise (dtype, shape and
   bytes), and the eval metrics of their summary.json.

One line per kill: when it landed, in which run (and from which step that run started),
the last step the run had logged, the checkpoints on disk, a save in flight, and the step
the restart resumed from (read from its output, ``resumed from ... (step N/M)``).
Every run's output is in ``DIR/logs`` (``reference.log``, ``run-01.log``...).

Exit status: 0 when the final state is bitwise equal and every restart resumed from the
latest checkpoint on disk; 1 on a difference, on a restart that failed (exited by itself
with an error, or hung past ``--timeout``) or one that resumed from an older checkpoint
than the latest on disk; 2 on bad input (one ``error:`` line), including a reference run
that fails.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import logging
import math
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "train.py")

TMP_MARK = ".orbax-checkpoint-tmp"  # orbax's unfinished save: <step>.orbax-checkpoint-tmp
RESUMED_RE = re.compile(r"resumed from .* \(step (\d+)/(\d+)\)")
TRAIN_RE = re.compile(r"^\[train\] step (\d+)/(\d+)")
AIM_JITTER_S = 0.02  # an aimed kill lands this long (at most) after the save starts


class BadInput(Exception):
  """A one-line problem with the soak's arguments (exit status 2)."""


class _Parser(argparse.ArgumentParser):

  def error(self, message):  # one line, not argparse's usage block
    raise BadInput(message)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  """The soak's options, and train.py's arguments (``--config`` and its overrides)."""
  ours, overrides = [], []
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config."):
      if "=" not in arg:
        if i + 1 >= len(argv):
          raise BadInput(f"{arg} needs a value: {arg}=VALUE")
        arg = f"{arg}={argv[i + 1]}"
        i += 1
      overrides.append(arg)
    else:
      ours.append(arg)
    i += 1
  parser = _Parser(prog="tools/soak.py", description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="configs/x.py[:arg], as for train.py")
  parser.add_argument("--kills", type=int, default=10, help="SIGKILLs to send (default 10)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
  parser.add_argument("--workdir", help="a new or empty directory (default: a new one in "
                                        "the system's temporary directory)")
  parser.add_argument("--min_delay", type=float, default=None,
                      help="seconds after a run starts, at least (default: half the "
                           "reference's time to its first logged step)")
  parser.add_argument("--max_delay", type=float, default=None,
                      help="seconds after a run starts, at most (default: 90%% of the "
                           "run's expected duration)")
  parser.add_argument("--save_kills", type=float, default=0.25,
                      help="fraction of kills aimed at a checkpoint save (default 0.25)")
  parser.add_argument("--timeout", type=float, default=None,
                      help="seconds any one run may take before it counts as hung "
                           "(default: none for the reference, 10x its time + 60 s after)")
  opts = parser.parse_args(ours)
  if opts.kills < 0:
    raise BadInput(f"--kills={opts.kills}: give 0 or more")
  for name in ("min_delay", "max_delay", "timeout"):
    value = getattr(opts, name)
    if value is not None and not (math.isfinite(value) and value >= 0):
      raise BadInput(f"--{name}={value}: give a number of seconds, 0 or more")
  if (opts.min_delay is not None and opts.max_delay is not None
      and opts.min_delay > opts.max_delay):
    raise BadInput(f"--min_delay={opts.min_delay} is above --max_delay={opts.max_delay}")
  if not 0 <= opts.save_kills <= 1:
    raise BadInput(f"--save_kills={opts.save_kills}: give a fraction from 0 to 1")
  if opts.workdir and os.path.exists(opts.workdir) and (
      not os.path.isdir(opts.workdir) or os.listdir(opts.workdir)):
    raise BadInput(f"--workdir {opts.workdir} exists and is not an empty directory: the "
                   "runs must start from nothing (give a new directory)")
  return opts, ["--config", opts.config, *overrides]


# ---------------------------------------------------------------------------------------
# Runs of train.py


def checkpoint_listing(directory: str) -> dict[str, Any]:
  """Committed steps, orbax's temporary (unfinished) directories with their identity,
  and directories train.py set aside as corrupt."""
  try:
    names = os.listdir(directory)
  except FileNotFoundError:
    names = []
  tmp = {}
  for n in names:
    if TMP_MARK in n:
      try:
        st = os.stat(os.path.join(directory, n))
        tmp[n] = (st.st_ino, st.st_mtime_ns)  # a save that recreates it changes these
      except FileNotFoundError:
        pass
  return {"steps": sorted(int(n) for n in names if n.isdigit()), "tmp": tmp,
          "corrupt": sorted(n for n in names if n.startswith("corrupt-"))}


class Run:
  """One train.py process, its output going to a log file that is read as it grows."""

  def __init__(self, cmd: list[str], log_path: str, env: dict[str, str]):
    self.log_path = log_path
    self._log = open(log_path, "wb")
    self._reader = open(log_path, "rb")
    self._buf = b""
    self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
    self.t0 = time.monotonic()
    self.resumed: int | None = None  # the step it started from (0: scratch), once said
    self.total: int | None = None
    self.last_step: int | None = None
    self.step_times: list[tuple[float, int]] = []  # (seconds since start, logged step)
    self.end: float | None = None  # seconds from start to exit
    self.tail: collections.deque[str] = collections.deque(maxlen=30)

  def elapsed(self) -> float:
    return time.monotonic() - self.t0

  def read(self, final: bool = False) -> None:
    now = self.elapsed()
    self._buf += self._reader.read()
    *lines, self._buf = self._buf.split(b"\n")
    if final and self._buf:  # a line a kill cut short
      lines.append(self._buf)
      self._buf = b""
    for raw in lines:
      line = raw.decode("utf-8", "replace").rstrip("\r")
      self.tail.append(line)
      m = RESUMED_RE.search(line)
      if m and self.resumed is None:
        self.resumed, self.total = int(m[1]), int(m[2])
      m = TRAIN_RE.match(line)
      if m:
        if self.resumed is None:
          self.resumed = 0  # training without having said it resumed: from scratch
        self.last_step, self.total = int(m[1]), int(m[2])
        self.step_times.append((now, self.last_step))

  def wait(self, stop: Callable[[], bool] = lambda: False, deadline: float | None = None,
           interval: float = 0.01, hook: Callable[[], None] | None = None) -> str:
    """Waits until the process exits ("exited"), ``stop()`` holds ("stop") or
    ``deadline`` seconds after its start pass ("deadline")."""
    while True:
      self.read()
      if hook:
        hook()
      if self.proc.poll() is not None:
        self.finish()
        if hook:
          hook()
        return "exited"
      if stop():
        return "stop"
      left = None if deadline is None else deadline - self.elapsed()
      if left is not None and left <= 0:
        return "deadline"
      time.sleep(interval if left is None else max(0.0, min(interval, left)))

  def kill(self) -> None:
    if self.proc.poll() is None:
      try:
        os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: it and any children
      except ProcessLookupError:
        pass
    self.proc.wait()
    self.finish()

  def finish(self) -> None:
    if self.end is not None:
      return
    self.end = self.elapsed()
    self.read(final=True)
    self._log.close()
    self._reader.close()

  def error_line(self) -> str:
    """The run's ``error:`` line, else its last line."""
    for line in reversed(self.tail):
      if line.startswith("error:"):
        return line[len("error:"):].strip()
    lines = [x for x in self.tail if x.strip()]
    return lines[-1].strip() if lines else "(no output)"


@dataclasses.dataclass
class Reference:
  wall: float
  total: int
  steps: list[int]  # its checkpoints
  first_train: float | None  # seconds from start to its first logged step
  last_train: float | None

  @property
  def start_up(self) -> float:
    """Seconds to its first logged step: start-up, data, restore, compilation."""
    return self.first_train if self.first_train is not None else 0.0

  def skipped(self, start_step: int) -> float:
    """The reference's training time up to ``start_step``, which a resumed run skips."""
    if self.first_train is None or not self.total:
      return 0.0
    return (self.last_train - self.first_train) * min(start_step, self.total) / self.total

  def expected(self, start_step: int) -> float:
    """How long a run that starts from ``start_step`` should take: the reference's time
    less the training it skips (the start-up, compilation and final writes remain)."""
    return max(self.wall - self.skipped(start_step), 0.1)

  def after_first_log(self, start_step: int) -> float:
    """How long such a run should go on after its first logged step."""
    return max(self.wall - self.start_up - self.skipped(start_step), 0.1)


def fmt_s(seconds: float) -> str:
  if seconds < 120:
    return f"{seconds:.1f} s"
  return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def say(msg: str) -> None:
  print(msg, flush=True)


# ---------------------------------------------------------------------------------------
# Comparison


def _restore(path: str) -> Any:
  """A checkpoint onto this process's first device, whatever topology saved it."""
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  ckpt = ocp.StandardCheckpointer()
  meta = ckpt.metadata(path)
  meta = getattr(meta, "item_metadata", meta)
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return ckpt.restore(path, jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta))


def compare_states(a_path: str, b_path: str) -> tuple[int, str | None]:
  """(number of leaves, None) when bitwise equal, else (n, the first difference)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  absl = logging.getLogger("absl")  # orbax warns that the item has no step metadata
  level = absl.level
  absl.setLevel(logging.ERROR)
  try:
    a, b = _restore(a_path), _restore(b_path)
  finally:
    absl.setLevel(level)
  flat_a = jax.tree_util.tree_leaves_with_path(a)
  flat_b = jax.tree_util.tree_leaves_with_path(b)
  name = lambda p: jax.tree_util.keystr(p, simple=True, separator="/")
  keys_a, keys_b = [name(p) for p, _ in flat_a], [name(p) for p, _ in flat_b]
  if keys_a != keys_b:
    only_a = sorted(set(keys_a) - set(keys_b))
    only_b = sorted(set(keys_b) - set(keys_a))
    return len(keys_a), ("the states have different leaves: "
                         f"only in the uninterrupted run {only_a[:5]}, "
                         f"only in the killed run {only_b[:5]}")
  if jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b):
    return len(keys_a), "the states have different tree structures"
  for key, (_, x), (_, y) in zip(keys_a, flat_a, flat_b):
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype != y.dtype or x.shape != y.shape:
      return len(keys_a), (f"{key}: {x.dtype}{list(x.shape)} in the uninterrupted run, "
                           f"{y.dtype}{list(y.shape)} in the killed run")
    if x.tobytes() != y.tobytes():
      if x.dtype.itemsize in (1, 2, 4, 8) and x.size:  # values whose bits differ
        as_bits = np.dtype(f"u{x.dtype.itemsize}")
        differ = int(np.sum(x.view(as_bits) != y.view(as_bits)))
      else:
        differ = "some"
      what = f"{differ} of {x.size} values differ"
      if np.issubdtype(x.dtype, np.number) and x.size:
        diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
        what += f", max abs difference {np.nanmax(diff):.3g}"
        if x.size == 1:
          what += f" ({x.item()} vs {y.item()})"
      return len(keys_a), f"{key}: {what}"
  return len(keys_a), None


def compare_summaries(a_dir: str, b_dir: str) -> tuple[list[str], str | None]:
  """(the keys compared, None) when summary.json's step and eval metrics are equal."""
  summaries = []
  for d in (a_dir, b_dir):
    path = os.path.join(d, "summary.json")
    try:
      with open(path) as f:
        summaries.append(json.load(f))
    except (OSError, ValueError) as e:
      return [], f"cannot read {path}: {e}"
  a, b = summaries
  keys = sorted(k for k in set(a) | set(b)
                if k == "step" or k.startswith(("eval_", "ema_eval_")))
  for k in keys:
    if a.get(k) != b.get(k):
      return keys, (f"summary.json {k}: {a.get(k)!r} in the uninterrupted run, "
                    f"{b.get(k)!r} in the killed run")
  return keys, None


# ---------------------------------------------------------------------------------------
# The soak


@dataclasses.dataclass
class Kill:
  number: int
  run: int
  at: float
  started_from: int  # the latest checkpoint on disk when the run started
  said_resumed: int | None  # what the run said it resumed from (None: killed before)
  last_step: int | None
  steps: list[int]  # checkpoints on disk at the kill
  in_flight: list[str]  # temporary directories of this run's unfinished saves
  aimed: bool
  restart: str | None = None  # what the next run said


class Soak:

  def __init__(self, opts: argparse.Namespace, train_args: list[str], workdir: str):
    self.opts = opts
    self.workdir = workdir
    self.train_args = train_args
    self.env = dict(os.environ, PYTHONUNBUFFERED="1")
    self.rng = random.Random(opts.seed)
    self.current: Run | None = None
    self.problems: list[str] = []
    self.pending: Kill | None = None  # a kill whose line waits for its restart's start
    self.said_complete = False
    self.took: dict[int, float] = {}  # seconds a killed-dir run from that step took in all

  def command(self, which: str) -> list[str]:
    return [sys.executable, TRAIN, *self.train_args,
            "--workdir", os.path.join(self.workdir, which)]

  def start(self, which: str, log_name: str) -> Run:
    self.current = Run(self.command(which), os.path.join(self.workdir, "logs", log_name),
                       self.env)
    return self.current

  def stop_current(self) -> None:
    if self.current is not None and self.current.proc.poll() is None:
      self.current.kill()

  # --- the uninterrupted run -----------------------------------------------------------

  def reference(self) -> Reference:
    cmd = " ".join(shlex.quote(x) for x in self.command("{reference,killed}"))
    say(f"soak: workdir {self.workdir}")
    say(f"soak: command: {cmd.replace(sys.executable, 'python', 1)}")
    say("soak: the uninterrupted reference run... (log: logs/reference.log)")
    run = self.start("reference", "reference.log")
    last_shown = [time.monotonic()]

    def progress():
      if run.last_step is not None and time.monotonic() - last_shown[0] > 10:
        say(f"soak:   reference at step {run.last_step}/{run.total}, {fmt_s(run.elapsed())}")
        last_shown[0] = time.monotonic()

    how = run.wait(deadline=self.opts.timeout, hook=progress)
    if how != "exited":
      run.kill()
      raise BadInput(f"the uninterrupted run took over --timeout={self.opts.timeout:g} s "
                     f"(log: {run.log_path})")
    if run.proc.returncode != 0:
      raise BadInput(f"the uninterrupted run failed (train.py exit status "
                     f"{run.proc.returncode}): {run.error_line()} (log: {run.log_path})")
    ckpt_dir = os.path.join(self.workdir, "reference", "checkpoints")
    steps = checkpoint_listing(ckpt_dir)["steps"]
    if not steps:
      raise BadInput(f"the uninterrupted run wrote no checkpoint in {ckpt_dir}: nothing to "
                     "resume from or compare")
    total = run.total or steps[-1]
    times = run.step_times
    ref = Reference(wall=run.end, total=total, steps=steps,
                    first_train=times[0][0] if times else None,
                    last_train=times[-1][0] if times else None)
    train_s = (f", training {fmt_s(ref.last_train - ref.first_train)} of it after the "
               f"first logged step" if times else "")
    say(f"soak: reference: {total} steps in {fmt_s(ref.wall)}{train_s}; checkpoints at "
        f"steps {', '.join(map(str, steps))}")
    return ref

  # --- the killed runs -----------------------------------------------------------------

  @staticmethod
  def _said(run: Run, started_from: int) -> str | None:
    """What a run said about where it started, once it has said it."""
    if run.resumed is None:
      return None
    said = ("started from scratch" if run.resumed == 0
            else f"resumed from step {run.resumed}/{run.total}")
    if run.resumed != started_from:
      said += (f" (PROBLEM: the latest checkpoint on disk was "
               f"{'step ' + str(started_from) if started_from else 'none'})")
    return said

  def _check(self, run: Run, run_no: int, started_from: int) -> None:
    """A restart must resume from the latest checkpoint on disk when it started."""
    if run.resumed is not None and run.resumed != started_from:
      latest = f"step {started_from}" if started_from else "none"
      self.problems.append(
          f"run {run_no} resumed from step {run.resumed}, but the latest checkpoint on disk "
          f"was {latest} (log: {run.log_path})")

  def _flush_pending(self, run: Run | None, run_no: int, started_from: int,
                     ended: bool) -> None:
    """Prints the pending kill's line once its restart has said where it resumed."""
    k = self.pending
    if k is None:
      return
    said = self._said(run, started_from)
    if said is None and not ended:
      return
    if said is None:
      if run.proc.returncode is None or run.proc.returncode == -signal.SIGKILL:
        said = f"killed at {run.end:.2f} s, before it said where it resumed"
      else:
        said = f"exited with status {run.proc.returncode} before it said where it resumed"
    self.pending = None
    say(self._kill_line(k) + f" -> restart: {said}")
    if k.steps and k.steps[-1] >= self.ref.total and not self.said_complete:
      self.said_complete = True
      if k.number < self.opts.kills:
        rest = self.opts.kills - k.number
        rest = f"other {rest} kills land" if rest > 1 else "last kill lands"
        say(f"soak: the killed run has its final checkpoint (step {k.steps[-1]}) since kill "
            f"{k.number}: the {rest} in restarts of a finished run (restore, final "
            "evaluation, summary); more checkpoints (--config.checkpoint_every_epochs) or "
            "more steps spread them over training")

  def _kill_line(self, k: Kill) -> str:
    width = len(str(self.opts.kills))
    start = f"step {k.started_from}" if k.started_from else "scratch"
    if k.last_step is not None:
      logged = f"after step {k.last_step}/{self.ref.total}"
    elif k.said_resumed:
      logged = f"after it restored step {k.said_resumed}"
    elif k.started_from:
      logged = f"before it restored step {k.started_from}"
    else:
      logged = "before its first logged step"
    on_disk = ("checkpoints " + ",".join(map(str, k.steps))) if k.steps else "no checkpoint"
    line = (f"kill {k.number:>{width}}/{self.opts.kills}: run {k.run} (from {start}) killed "
            f"at {k.at:.2f} s{' (aimed at a save)' if k.aimed else ''}, {logged}, {on_disk}")
    if k.in_flight:
      line += f", a save in flight ({', '.join(sorted(k.in_flight))} left behind)"
    return line

  def killed_runs(self) -> tuple[int, int, int, int]:
    """The kills, then the final run. (kills landed, of them after a checkpoint, of them
    during a save, runs that finished before their kill)."""
    ref = self.ref
    ckpt_dir = os.path.join(self.workdir, "killed", "checkpoints")
    landed = after_ckpt = mid_save = finished_first = 0
    run_no = 0
    max_runs = 2 * self.opts.kills + 5  # runs that finish before their kill do not count
    while landed < self.opts.kills and run_no < max_runs:
      run_no += 1
      before = checkpoint_listing(ckpt_dir)
      started_from = before["steps"][-1] if before["steps"] else 0
      expected = self.took.get(started_from) or ref.expected(started_from)
      hi = self.opts.max_delay
      if hi is None:
        hi = max(self.opts.min_delay or 0.0, 0.9 * expected)
      lo = self.opts.min_delay
      if lo is None:
        lo = min(ref.start_up / 2, hi / 2)
      u = self.rng.random()
      delay = lo + u * (hi - lo)
      aim_draw, pick_draw, jitter = self.rng.random(), self.rng.random(), self.rng.random()
      ahead = [s for s in ref.steps if s > started_from]
      aimed = aim_draw < self.opts.save_kills and bool(ahead)
      # Of the others, half land in training, timed from the run's first logged step
      # (its start-up time varies with the machine's load), unless delays were given.
      in_training = (not aimed and started_from < ref.total and ref.first_train is not None
                     and self.opts.min_delay is None and self.opts.max_delay is None
                     and aim_draw < self.opts.save_kills + (1 - self.opts.save_kills) / 2)
      run = self.start("killed", f"run-{run_no:02d}.log")
      hook = lambda: self._flush_pending(run, run_no, started_from, ended=False)
      if aimed:
        target = ahead[int(pick_draw * len(ahead))]
        prefix = f"{target}{TMP_MARK}"

        def save_started() -> bool:
          now = checkpoint_listing(ckpt_dir)["tmp"]
          return any(n.startswith(prefix) and before["tmp"].get(n) != ident
                     for n, ident in now.items())

        limit = max(hi, 1.5 * expected + 10)
        how = run.wait(stop=save_started, deadline=limit, interval=0.002, hook=hook)
        if how == "stop":
          time.sleep(jitter * AIM_JITTER_S)
      elif in_training:
        how = run.wait(stop=lambda: run.last_step is not None,
                       deadline=max(hi, 1.5 * expected + 10), hook=hook)
        if how == "stop":
          how = run.wait(deadline=run.elapsed() + u * 0.9 * ref.after_first_log(started_from),
                         hook=hook)
      else:
        how = run.wait(deadline=delay, hook=hook)
      alive = run.proc.poll() is None
      at = run.elapsed()
      run.kill()
      self._check(run, run_no, started_from)
      if not alive:  # it ended by itself before the kill
        self._flush_pending(run, run_no, started_from, ended=True)
        rc = run.proc.returncode
        if rc != 0:
          self.failure = (f"run {run_no} (from "
                          f"{'step ' + str(started_from) if started_from else 'scratch'}) "
                          f"exited with status {rc} by itself: {run.error_line()} "
                          f"(log: {run.log_path})")
          return landed, after_ckpt, mid_save, finished_first
        finished_first += 1
        self.took[started_from] = run.end  # a better guess for the next such run
        say(f"soak: run {run_no} finished by itself at {run.end:.2f} s, before its kill "
            f"(kills so far: {landed}); the next run restarts a finished workdir")
        continue
      self._flush_pending(run, run_no, started_from, ended=True)
      landed += 1
      after = checkpoint_listing(ckpt_dir)
      in_flight = [n for n, ident in after["tmp"].items() if before["tmp"].get(n) != ident]
      after_ckpt += bool(after["steps"])
      mid_save += bool(in_flight)
      self.pending = Kill(number=landed, run=run_no, at=at, started_from=started_from,
                          said_resumed=run.resumed, last_step=run.last_step,
                          steps=after["steps"], in_flight=in_flight, aimed=aimed)
    if landed < self.opts.kills:
      say(f"soak: only {landed} of {self.opts.kills} kills landed in {run_no} runs: the "
          "others finished first")

    # The final run, to the end.
    run_no += 1
    before = checkpoint_listing(ckpt_dir)
    started_from = before["steps"][-1] if before["steps"] else 0
    timeout = (self.opts.timeout if self.opts.timeout is not None
               else 10 * ref.wall + 60)
    run = self.start("killed", f"run-{run_no:02d}.log")
    if self.pending is None:
      say(f"soak: final run {run_no}, to the end (log: logs/run-{run_no:02d}.log)")
    hook = lambda: self._flush_pending(run, run_no, started_from, ended=False)
    how = run.wait(deadline=timeout, hook=hook)
    if how != "exited":
      run.kill()
    self._check(run, run_no, started_from)
    if how != "exited":
      self._flush_pending(run, run_no, started_from, ended=True)
      self.failure = (f"the final run {run_no} did not end within {timeout:.0f} s "
                      f"(--timeout; log: {run.log_path})")
    else:
      self._flush_pending(run, run_no, started_from, ended=True)
      if run.proc.returncode != 0:
        self.failure = (f"the final run {run_no} exited with status {run.proc.returncode}: "
                        f"{run.error_line()} (log: {run.log_path})")
      else:
        said = self._said(run, started_from) or "did not say where it started"
        say(f"soak: final run {run_no} {said} and finished in {fmt_s(run.end)} "
            f"(log: logs/run-{run_no:02d}.log)")
    return landed, after_ckpt, mid_save, finished_first

  def run(self) -> int:
    t0 = time.monotonic()
    os.makedirs(os.path.join(self.workdir, "logs"), exist_ok=True)
    self.ref = self.reference()
    self.failure: str | None = None
    landed, after_ckpt, mid_save, finished_first = self.killed_runs()
    killed_dir = os.path.join(self.workdir, "killed")
    listing = checkpoint_listing(os.path.join(killed_dir, "checkpoints"))
    leftovers = sorted(listing["tmp"])
    if listing["corrupt"]:
      self.problems.append(f"train.py set aside checkpoints that did not restore: "
                           f"{', '.join(listing['corrupt'])} in {killed_dir}/checkpoints")
    verdict = None
    if self.failure is None:
      ref_dir = os.path.join(self.workdir, "reference")
      a_step, b_step = self.ref.steps[-1], (listing["steps"] or [None])[-1]
      say(f"soak: comparing the final checkpoints (step {a_step} and step {b_step})...")
      if a_step != b_step:
        verdict = (f"the final checkpoint is step {a_step} in the uninterrupted run, "
                   f"{b_step} in the killed run")
      else:
        sub = os.path.join("checkpoints", str(a_step), "default")
        n, verdict = compare_states(os.path.join(ref_dir, sub), os.path.join(killed_dir, sub))
        if verdict is None:
          keys, verdict = compare_summaries(ref_dir, killed_dir)
          if verdict is None:
            say(f"soak: {n} arrays bitwise equal; summary.json equal in {', '.join(keys)}")

    total = time.monotonic() - t0
    say(f"soak: {landed} kills in {fmt_s(total)} (the uninterrupted run took "
        f"{fmt_s(self.ref.wall)}); {after_ckpt} landed after at least one checkpoint was "
        f"on disk, {mid_save} during a save")
    if finished_first:
      say(f"soak: {finished_first} run(s) finished before their kill")
    if leftovers:
      say(f"soak: orbax temporary directories left by kills mid-save: "
          f"{', '.join(leftovers)} (a later save of the same step replaces its own)")
    for p in self.problems:
      say(f"soak: PROBLEM: {p}")
    if self.failure is not None:
      say(f"soak: {landed} kills, FAILED: {self.failure}")
      return 1
    if verdict is not None:
      say(f"soak: {landed} kills, final state DIFFERS from the uninterrupted run: {verdict}")
      return 1
    if self.problems:
      say(f"soak: {landed} kills, final state bitwise equal to the uninterrupted run, but "
          f"{len(self.problems)} problem(s) above")
      return 1
    say(f"soak: {landed} kills, final state bitwise equal to the uninterrupted run")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
  soak = None
  try:
    opts, train_args = parse_args(sys.argv[1:] if argv is None else list(argv))
    if opts.workdir:
      workdir = os.path.abspath(opts.workdir)
    else:
      workdir = tempfile.mkdtemp(prefix="soak_")
    soak = Soak(opts, train_args, workdir)
    return soak.run()
  except BadInput as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("\nsoak: interrupted", file=sys.stderr)
    return 130
  finally:
    if soak is not None:
      soak.stop_current()


if __name__ == "__main__":
  sys.exit(main())
