"""Where a run reports: the terminal, ``metrics.jsonl``, TensorBoard and ``curves.png``."""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from typing import Any


def _fmt_eta(seconds: float) -> str:
  return str(datetime.timedelta(seconds=int(max(seconds, 0))))


class MetricsLogger:
  """Writes one JSON object per line and mirrors scalars to TensorBoard.

  On resume, rows after the restored step (written after the last checkpoint of an
  interrupted run) are dropped, so the file reads as one uninterrupted run.
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
    if not primary:
      return
    if os.path.exists(self.path):
      with open(self.path) as f:
        self.rows = [r for r in map(json.loads, filter(str.strip, f))
                     if r["step"] <= resume_step]
    with open(self.path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in self.rows)
    self._tb = None
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    except ImportError:
      print("tensorboardX is not installed: no TensorBoard events", file=sys.stderr)

  def write(self, row: dict[str, Any]) -> None:
    self.rows.append(row)
    if not self.primary:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    if self._tb is not None:
      for k, v in row.items():
        if k != "step" and isinstance(v, (int, float)):
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
