"""Where a run reports: the terminal, ``metrics.jsonl``, TensorBoard and ``curves.png``."""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from typing import Any

from training import rundir


def _fmt_eta(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(max(seconds, 0))))


# This segment's end (step and total wall seconds), for the next segment of a resumed run.
WALL_TIME_FILE = "wall_time.json"


def read_rows(path: str) -> list[dict[str, Any]]:
  """The rows of a ``metrics.jsonl``, less any line a crash cut short (one warning)."""
  rows, bad = [], 0
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except ValueError:
        row = None
      if isinstance(row, dict) and isinstance(row.get("step"), int):
        rows.append(row)
      else:
        bad += 1
  if bad:
    print(f"warning: {path}: dropped {bad} unreadable line(s), a write cut short by an "
          "interrupted run", file=sys.stderr, flush=True)
  return rows


def _summary_writer_class():
  """tensorboardX's SummaryWriter, imported without PyTorch. tensorboardX tries
  ``import torch`` when it is installed (to accept its tensors, which a JAX run never
  logs): 1.2 of the 1.7 s that importing it took on a 2-core CPU with torch 2.13. The
  attempt is answered with ImportError, which tensorboardX expects, and torch stays
  importable afterwards; a torch already imported is left alone."""
  blocked = "torch" not in sys.modules
  if blocked:
    sys.modules["torch"] = None  # ``import torch`` raises ImportError
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  finally:
    if blocked and sys.modules.get("torch", 0) is None:
      del sys.modules["torch"]
  return SummaryWriter


class MetricsLogger:
  """Writes one JSON object per line and mirrors scalars to TensorBoard.

  On resume, rows after the restored step (written after the last checkpoint of an
  interrupted run) are dropped, so the file reads as one uninterrupted run; so is a last
  line cut short by a crash (with one warning). TensorBoard is told the same: the resumed
  writer purges the steps after ``resume_step``, so no (tag, step) shows twice.

  Each row in the file also carries ``wall_time_sec``: the seconds since the experiment
  began, summed over every segment of a resumed run (a crashed segment counts up to the
  last row it kept). ``total_wall_time`` gives the same for the end of this segment.
  """

  def __init__(self, workdir: str, total_steps: int, resume_step: int = 0,
               primary: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.total_steps = total_steps
    # In a multi-process run only process 0 writes and prints; the others keep rows.
    self.primary = primary
    self.rows: list[dict[str, Any]] = []
    self._tb = None
    self._start_time = None
    self._start_step = resume_step
    self._resume_step = resume_step
    self._clock = time.time()  # this segment's wall clock
    self._wall_base = 0.0  # the seconds of the earlier segments, up to resume_step
    self._wall_path = os.path.join(workdir, WALL_TIME_FILE)
    self._tb_kept: set[str] = set()
    if not primary:
      return
    if os.path.exists(self.path):
      self.rows = [r for r in read_rows(self.path) if r["step"] <= resume_step]
    rundir.write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))
    self._wall_base = self._earlier_wall_time()
    # Scalars the kept rows already sent to TensorBoard at the resume step itself.
    self._tb_kept = {k for r in self.rows if r["step"] == resume_step for k in r}
    try:
      SummaryWriter = _summary_writer_class()  # pylint: disable=invalid-name
      # purge_step: TensorBoard hides the events of earlier files from that step on (those
      # of the crashed segment after its last checkpoint), as metrics.jsonl drops its rows.
      # The suffix keeps two segments started in the same second in two files, in order.
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"),
                               purge_step=resume_step + 1,
                               filename_suffix=f".step{resume_step:012d}")
    except ImportError:
      print("tensorboardX is not installed: no TensorBoard events", file=sys.stderr)

  def _earlier_wall_time(self) -> float:
    """Seconds spent on this experiment before this segment, up to ``resume_step``."""
    if self._resume_step <= 0:
      return 0.0
    timed = [r["wall_time_sec"] for r in self.rows if "wall_time_sec" in r]
    base = float(timed[-1]) if timed else 0.0
    # A segment that ended cleanly recorded its total at its last step, which can be
    # later than its last row (the final checkpoint and evaluation).
    try:
      with open(self._wall_path) as f:
        record = json.load(f)
      if record["step"] == self._resume_step:
        base = max(base, float(record["wall_time_sec"]))
    except (OSError, ValueError, KeyError, TypeError):
      pass
    return base

  def total_wall_time(self, this_run_seconds: float | None = None,
                      step: int | None = None) -> float:
    """Wall seconds of all segments of this run: the earlier ones plus this one.

    ``this_run_seconds`` is this segment's time (by default, since the logger was made).
    With ``step`` (the step this segment ends at), the total is also kept in the workdir
    (atomically), so that a run resumed from that step counts it.
    """
    if this_run_seconds is None:
      this_run_seconds = time.time() - self._clock
    total = self._wall_base + this_run_seconds
    if step is not None and self.primary:
      rundir.write_atomic(self._wall_path,
                    json.dumps({"step": int(step), "wall_time_sec": total}) + "\n")
    return total

  def write(self, row: dict[str, Any]) -> None:
    scalars = row
    row = {**row, "wall_time_sec": self.total_wall_time()}
    self.rows.append(row)
    if not self.primary:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self._tb is not None:
      for k, v in scalars.items():
        if k == "step" or not isinstance(v, (int, float)):
          continue
        if row["step"] == self._resume_step and k in self._tb_kept:
          continue  # the earlier segment wrote it, and TensorBoard keeps that one
        self._tb.add_scalar(k, v, row["step"])
      self._tb.flush()

  def mark_start(self, step: int) -> None:
    """Starts the clock for the ETA (after the first step, so compiling is excluded)."""
    self._start_time, self._start_step = time.time(), step

  def eta(self, step: int) -> str:
    if self._start_time is None or step <= self._start_step:
      return "?"
    rate = (time.time() - self._start_time) / (step - self._start_step)
    return _fmt_eta(rate * (self.total_steps - step))

  def print_train(self, row: dict[str, Any], num_epochs: int) -> None:
    if not self.primary:
      return
    s = row["step"]
    print(f"[train] step {s}/{self.total_steps} ({100 * s / self.total_steps:4.1f}%) | "
          f"epoch {row['epoch']:.2f}/{num_epochs} | loss {row['train_loss']:.4f} | "
          f"acc {100 * row['train_accuracy']:.2f}% | lr {row['learning_rate']:.3g} | "
          f"{row['images_per_sec']:,.0f} img/s | ETA {self.eta(s)}", flush=True)

  def print_eval(self, row: dict[str, Any], num_epochs: int) -> None:
    if not self.primary:
      return
    print(f"[eval]  epoch {row['epoch']:.0f}/{num_epochs} | step {row['step']} | "
          f"loss {row['eval_loss']:.4f} | top-1 {100 * row['eval_top1']:.2f}% | "
          f"top-5 {100 * row['eval_top5']:.2f}% | {int(row['eval_count'])} examples"
          + (f" | EMA top-1 {100 * row['ema_eval_top1']:.2f}%" if "ema_eval_top1" in row
             else ""), flush=True)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def plot_curves(rows: list[dict[str, Any]], path: str, title: str = "") -> None:
  """Loss, accuracy and learning rate against epoch, as one PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  train = [r for r in rows if "train_loss" in r]
  evals = [r for r in rows if "eval_loss" in r]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  ax = axes[0]
  ax.plot([r["epoch"] for r in train], [r["train_loss"] for r in train], label="train")
  ax.plot([r["epoch"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="test")
  ax.set(xlabel="epoch", ylabel="loss", title="loss")
  if train and min(r["train_loss"] for r in train) > 0:
    ax.set_yscale("log")
  ax = axes[1]
  ax.plot([r["epoch"] for r in train], [100 * r["train_accuracy"] for r in train],
          label="train top-1")
  ax.plot([r["epoch"] for r in evals], [100 * r["eval_top1"] for r in evals], "o-",
          label="test top-1")
  ema = [r for r in evals if "ema_eval_top1" in r]
  if ema:
    ax.plot([r["epoch"] for r in ema], [100 * r["ema_eval_top1"] for r in ema], "s--",
            label="test top-1, EMA weights")
  if evals:
    best = max(100 * r["eval_top1"] for r in evals)
    ax.set_title(f"accuracy (final test {100 * evals[-1]['eval_top1']:.2f}%, best {best:.2f}%)")
  ax.set(xlabel="epoch", ylabel="accuracy (%)")
  ax = axes[2]
  ax.plot([r["epoch"] for r in train], [r["learning_rate"] for r in train])
  ax.set(xlabel="epoch", ylabel="learning rate", title="learning rate")
  for ax in axes[:2]:
    ax.legend()
    ax.grid(alpha=0.3)
  axes[2].grid(alpha=0.3)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
