"""training/rundir.py: the run directory's files, written by train.py and read by the
sweep, the collector and the speedrun."""

import json
import os

import pytest

import train
from launch import collect
from training import rundir


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  train.main(["--config", os.path.join(os.path.dirname(__file__), "..", "configs",
                                       "speedrun_fashion_mnist.py") + ":tiny",
              "--workdir", workdir, "--config.num_epochs=1"])
  return workdir


def test_train_py_writes_run_info_at_start(tiny_run):
  info = rundir.read(tiny_run, rundir.RUN_INFO)
  summary = rundir.read(tiny_run, rundir.SUMMARY)
  assert info["image_shape"] == [28, 28, 1] == summary["image_shape"]
  assert info["num_classes"] == 10 and info["num_params"] == summary["num_params"]
  assert info["model"] == "airbench94" and info["devices"] >= 1
  assert info["start_step"] == 0 and info["total_steps"] == summary["total_steps"]
  assert info["xla_flags"] == os.environ.get("XLA_FLAGS", "")  # tests/conftest.py sets some
  assert info["glibc_tunables"] == os.environ.get("GLIBC_TUNABLES", "")
  assert rundir.is_finished(summary)


def test_the_collector_reads_the_shape_from_run_info_not_the_log(tiny_run, tmp_path):
  # A copy of the run without summary.json or a log: run_info.json alone says the shape.
  import shutil  # pylint: disable=g-import-not-at-top
  copy = str(tmp_path / "copy")
  shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("checkpoints"))
  os.remove(os.path.join(copy, rundir.SUMMARY))
  config = rundir.read(copy, rundir.CONFIG)
  config["dataset"] = "npz:/nowhere.npz"  # nothing else could tell
  assert collect.input_shape(copy, config, None) == ((28, 28, 1), 10)


def test_read_json_and_metrics_tolerate_a_file_being_written(tmp_path):
  assert rundir.read(str(tmp_path), rundir.SUMMARY) is None
  (tmp_path / rundir.SUMMARY).write_text('{"step": 3, "eval_to')
  assert rundir.read(str(tmp_path), rundir.SUMMARY) is None
  assert rundir.read_metrics(str(tmp_path)) == []
  (tmp_path / rundir.METRICS).write_text(json.dumps({"step": 1, "train_loss": 2.0})
                                         + '\n{"step": 2, "tr')
  assert rundir.read_metrics(str(tmp_path)) == [{"step": 1, "train_loss": 2.0}]


def test_is_finished_needs_the_last_step_and_an_evaluation():
  assert rundir.is_finished({"step": 8, "total_steps": 8, "eval_top1": 0.5})
  assert not rundir.is_finished({"step": 4, "total_steps": 8, "eval_top1": 0.5})
  assert not rundir.is_finished({"step": 8, "total_steps": 8})
  assert not rundir.is_finished(None)
