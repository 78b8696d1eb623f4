"""training/logger.py on resume: metrics.jsonl after a crash, TensorBoard without duplicate
points, the wall time of all segments, and atomic bookkeeping files. No training."""

from __future__ import annotations

import json
import os
import struct

import pytest

from training import logger as logger_lib


def train_row(step: int, loss: float) -> dict:
  return {"step": step, "epoch": step / 10, "train_loss": loss, "train_accuracy": 0.5,
          "learning_rate": 0.1, "images_per_sec": 100.0}


def segment(workdir, resume_step: int, steps, offset: float = 0.0,
            close: bool = True) -> logger_lib.MetricsLogger:
  """One run of train.py as far as the logger sees it: rows for ``steps``."""
  log = logger_lib.MetricsLogger(str(workdir), 100, resume_step=resume_step)
  for s in steps:
    log.write(train_row(s, s + offset))
  if close:
    log.close()
  return log


def file_rows(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    text = f.read()
  assert text == "" or text.endswith("\n")
  return [json.loads(line) for line in text.splitlines()]


def test_partial_last_line_is_dropped_with_one_warning_and_rows_append(tmp_path, capsys):
  segment(tmp_path, 0, [10, 20, 30])
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 40, "epoch": 4.0, "train_lo')  # the crash, mid-line
  capsys.readouterr()
  log = segment(tmp_path, 30, [40, 50], close=False)
  err = capsys.readouterr().err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and "warning" in lines[0] and "metrics.jsonl" in lines[0], err
  assert "Traceback" not in err
  assert [r["step"] for r in log.rows] == [10, 20, 30, 40, 50]
  log.close()
  assert [r["step"] for r in file_rows(tmp_path)] == [10, 20, 30, 40, 50]
  # The file is whole again: the next resume is silent.
  segment(tmp_path, 50, [60])
  assert capsys.readouterr().err == ""
  assert [r["step"] for r in file_rows(tmp_path)] == [10, 20, 30, 40, 50, 60]


def test_complete_last_row_without_newline_is_kept(tmp_path, capsys):
  segment(tmp_path, 0, [10])
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write(json.dumps(train_row(20, 20.0)))  # cut between the row and its newline
  segment(tmp_path, 20, [30])
  assert capsys.readouterr().err == ""
  assert [r["step"] for r in file_rows(tmp_path)] == [10, 20, 30]


def test_rows_after_the_resume_step_are_dropped(tmp_path):
  segment(tmp_path, 0, [10, 20, 30, 40, 50, 60])  # checkpoint at 30, crash at 60
  log = segment(tmp_path, 30, [], close=False)
  assert [r["step"] for r in log.rows] == [10, 20, 30]
  assert [r["step"] for r in file_rows(tmp_path)] == [10, 20, 30]
  log.write(train_row(40, 1.0))
  log.close()
  assert [(r["step"], r["train_loss"]) for r in file_rows(tmp_path)] == [
      (10, 10.0), (20, 20.0), (30, 30.0), (40, 1.0)]
  # A fresh start (no checkpoint) in the same workdir keeps no row.
  segment(tmp_path, 0, [])
  assert file_rows(tmp_path) == []


def test_only_the_primary_process_writes(tmp_path):
  log = logger_lib.MetricsLogger(str(tmp_path), 100, primary=False)
  log.write(train_row(10, 1.0))
  log.close()
  assert [r["step"] for r in log.rows] == [10]
  assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- TensorBoard


def events(logdir):
  """(file, Event) of every event file in ``logdir``, in the order TensorBoard reads them."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  for name in sorted(os.listdir(logdir)):
    with open(os.path.join(logdir, name), "rb") as f:
      data = f.read()
    i = 0
    while i + 12 <= len(data):  # TFRecord: length, its crc, the event, its crc
      (n,) = struct.unpack("<Q", data[i:i + 8])
      yield name, event_pb2.Event.FromString(data[i + 12:i + 12 + n])
      i += 12 + n + 4


def scalars(logdir, purge: bool = True) -> dict[tuple[str, int], list[float]]:
  """Every (tag, step)'s values. ``purge``: as TensorBoard shows them, which on a
  SessionLog START at step s drops the points read so far at steps >= s."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  points: dict[tuple[str, int], list[float]] = {}
  for _, e in events(logdir):
    if purge and e.HasField("session_log") and e.session_log.status == event_pb2.SessionLog.START:
      points = {k: v for k, v in points.items() if k[1] < e.step}
    for v in e.summary.value:
      points.setdefault((v.tag, e.step), []).append(v.simple_value)
  return points


def two_segments(workdir) -> None:
  """Rows to step 60 with a checkpoint at 30, a crash, then the run resumed at 30 (its
  values offset by 1000) to 80, with an evaluation at the resume step itself."""
  pytest.importorskip("tensorboardX")
  segment(workdir, 0, [10, 20, 30, 40, 50, 60])
  log = segment(workdir, 30, [40, 50, 60, 70, 80], offset=1000, close=False)
  log.write({"step": 30, "train_loss": 2000.0, "eval_top1": 0.5})  # train_loss: again
  log.close()


def test_tensorboard_has_no_duplicate_points_after_a_resume(tmp_path):
  two_segments(tmp_path)
  logdir = tmp_path / "tensorboard"
  assert len(os.listdir(logdir)) == 2  # one events file a segment
  raw = scalars(logdir, purge=False)
  assert len(raw[("train_loss", 40)]) == 2  # both files hold step 40: the purge matters
  assert len(raw[("train_loss", 30)]) == 1  # the resumed segment did not write it again
  shown = scalars(logdir)
  assert all(len(v) == 1 for v in shown.values()), {k: v for k, v in shown.items()
                                                    if len(v) > 1}
  loss = {s: v[0] for (tag, s), v in shown.items() if tag == "train_loss"}
  assert loss == {10: 10, 20: 20, 30: 30, 40: 1040, 50: 1050, 60: 1060, 70: 1070, 80: 1080}
  assert shown[("eval_top1", 30)] == [0.5]
  assert ("wall_time_sec", 10) not in shown  # TensorBoard keeps its own wall time
  # The purge marker, at the first step after the resume, in the resumed segment's file.
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  starts = [(name, e.step) for name, e in events(logdir)
            if e.HasField("session_log") and e.session_log.status == event_pb2.SessionLog.START]
  assert [s for _, s in starts] == [1, 31]
  assert starts[-1][0] == sorted(os.listdir(logdir))[-1]


def test_tensorboard_event_accumulator_shows_each_point_once(tmp_path):
  ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
  two_segments(tmp_path)
  acc = ea.EventAccumulator(str(tmp_path / "tensorboard"))
  acc.Reload()
  loss = [(e.step, e.value) for e in acc.Scalars("train_loss")]
  assert loss == [(10, 10), (20, 20), (30, 30), (40, 1040), (50, 1050), (60, 1060),
                  (70, 1070), (80, 1080)]


# ---------------------------------------------------------------------------- wall time


class FakeClock:
  def __init__(self):
    self.now = 1000.0

  def time(self) -> float:
    return self.now


def test_total_wall_time_sums_the_segments(tmp_path, monkeypatch):
  clock = FakeClock()
  monkeypatch.setattr(logger_lib, "time", clock)
  # Segment 1: rows at 10 s, 20 s (checkpointed at step 20), 30 s; crashes.
  log = logger_lib.MetricsLogger(str(tmp_path), 100)
  for step in (10, 20, 30):
    clock.now += 10
    log.write(train_row(step, 1.0))
  log.close()
  assert [r["wall_time_sec"] for r in file_rows(tmp_path)] == [10, 20, 30]
  # Segment 2 resumes at 20: 20 s so far. It ends cleanly at step 40 after 8 s.
  clock.now += 100  # the restart itself is not the run's time
  log = logger_lib.MetricsLogger(str(tmp_path), 100, resume_step=20)
  clock.now += 5
  log.write(train_row(30, 1.0))
  assert log.rows[-1]["wall_time_sec"] == 25
  assert log.total_wall_time(8.0, step=40) == 28
  log.close()
  with open(tmp_path / logger_lib.WALL_TIME_FILE) as f:
    assert json.load(f) == {"step": 40, "wall_time_sec": 28}
  # Segment 3 at the finished step: what segment 2 recorded at its end, plus its own.
  log = logger_lib.MetricsLogger(str(tmp_path), 100, resume_step=40)
  assert log.total_wall_time(1.0) == 29
  clock.now += 2
  assert log.total_wall_time() == 30  # by default, since the logger was made
  log.close()
  # A run resumed from an earlier checkpoint ignores that record: the rows count.
  log = logger_lib.MetricsLogger(str(tmp_path), 100, resume_step=30)
  assert log.total_wall_time(0.0) == 25
  log.close()
  # A fresh start counts from zero.
  log = logger_lib.MetricsLogger(str(tmp_path), 100)
  assert log.total_wall_time(3.0) == 3
  log.close()


def test_bookkeeping_files_are_written_atomically(tmp_path, monkeypatch):
  replaced = []
  real_replace = os.replace

  def spy(src, dst):
    assert os.path.dirname(src) == os.path.dirname(dst)  # a rename, within one folder
    replaced.append(os.path.basename(dst))
    real_replace(src, dst)

  monkeypatch.setattr(logger_lib.os, "replace", spy)
  segment(tmp_path, 0, [10, 20])
  log = segment(tmp_path, 20, [30], close=False)
  log.total_wall_time(1.0, step=30)
  log.close()
  assert replaced == ["metrics.jsonl", "metrics.jsonl", logger_lib.WALL_TIME_FILE]
  assert sorted(f for f in os.listdir(tmp_path) if "tmp" in f) == []


def test_tensorboard_writer_does_not_import_torch(tmp_path):
  """tensorboardX would import PyTorch where it is installed (1.2 s of every train.py
  start on a 2-core CPU); the logger keeps it out, and torch still imports afterwards."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not installed: nothing to keep out")
  code = ("import sys; from training import logger\n"
          f"log = logger.MetricsLogger({str(tmp_path)!r}, 10); log.write({{'step': 1, "
          "'train_loss': 0.5}); log.close()\n"
          "assert log._tb is not None and 'torch' not in sys.modules, sorted(sys.modules)\n"
          "import torch; print('torch', torch.__version__)")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0 and "torch " in proc.stdout, proc.stderr[-2000:]
  assert any(f.startswith("events.out.tfevents")
             for f in os.listdir(tmp_path / "tensorboard"))
