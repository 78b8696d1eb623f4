"""The run directory: the files train.py writes into its workdir, and how to read them.

One owner for the format that train.py writes and that launch/sweep.py, launch/collect.py,
benchmarks/speedrun.py, experiments/ and the tools read:

  config.json      the validated config (written at start)
  run_info.json    what the run is, measured at start: model, dataset, input shape,
                   classes, parameters, devices, processes, platform, versions, command,
                   XLA_FLAGS, GLIBC_TUNABLES
  recipe.json      the data plan: every augmentation op and where it runs
  metrics.jsonl    one JSON row per log point and evaluation (training/logger.py)
  summary.json     the final numbers (written at the end; ``is_finished``)
  checkpoints/     Orbax checkpoints
  curves.png       loss, accuracy and learning rate against epoch
  log.txt          the run's output, when launch/sweep.py ran it
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

CONFIG = "config.json"
RUN_INFO = "run_info.json"
RECIPE = "recipe.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
CURVES = "curves.png"
LOG = "log.txt"


def write_atomic(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` whole or not at all: a temporary file, then a rename."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: str) -> Any:
  """The file's JSON, or None if it is missing or half-written."""
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError):
    return None


def read(workdir: str, name: str) -> Any:
  """``read_json`` of one of the workdir's files (``CONFIG``, ``RUN_INFO``, ``SUMMARY``...)."""
  return read_json(os.path.join(workdir, name))


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The rows of the workdir's ``metrics.jsonl`` ([] if there is none yet), less a line
  being written."""
  from training import logger  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, METRICS)
  return logger.read_rows(path) if os.path.exists(path) else []


def has_checkpoints(workdir: str) -> bool:
  """Whether ``workdir`` holds a step checkpoint: a run that train.py resumes."""
  ckpt = os.path.join(workdir, CHECKPOINTS)
  return os.path.isdir(ckpt) and any(n.isdigit() for n in os.listdir(ckpt))


def is_finished(summary: dict[str, Any] | None) -> bool:
  """A run that reached its last step and was evaluated there."""
  return bool(summary) and ("eval_top1" in summary and "step" in summary
                            and summary["step"] >= summary.get("total_steps", math.inf))
