"""training/parallel.py and multi-device / multi-process training.

Several devices come from ``--xla_force_host_platform_device_count`` in a subprocess;
two processes are two train.py runs on localhost joined by ``jax.distributed`` (CPU
collectives over gloo).
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from tests import test_train
from training import parallel
from training import pretrained

ROOT = test_train.ROOT


def test_leaf_spec_splits_the_largest_divisible_dimension():
  assert parallel.leaf_spec((3, 3, 64, 128), fsdp=2) == P(None, None, None, "fsdp")
  assert parallel.leaf_spec((768, 3072), fsdp=4) == P(None, "fsdp")
  assert parallel.leaf_spec((1000, 3), fsdp=8) == P("fsdp", None)  # 3 does not divide
  assert parallel.leaf_spec((7, 9, 33), fsdp=2) == P()  # nothing divides
  assert parallel.leaf_spec((128,), fsdp=2) == P()  # small: replicated
  assert parallel.leaf_spec((3, 3, 64, 128), fsdp=1) == P()


def test_mesh_errors_name_the_fix():
  with pytest.raises(parallel.ParallelError, match="mesh.fsdp=3 does not divide the 1 devices"):
    parallel.create_mesh(fsdp=3)
  mesh = parallel.create_mesh(fsdp=1)
  assert mesh.axis_names == ("data", "fsdp") and mesh.size == jax.device_count()


def test_dispatch_limit_waits_only_on_a_cpu_mesh_of_several_local_devices(monkeypatch):
  import types  # pylint: disable=g-import-not-at-top
  me = jax.process_index()
  mesh = lambda *devs: types.SimpleNamespace(devices=np.asarray(
      [types.SimpleNamespace(platform=p, process_index=i) for p, i in devs], dtype=object))
  assert parallel.DispatchLimit(mesh(("cpu", me), ("cpu", me))).limit == 16
  assert parallel.DispatchLimit(mesh(("cpu", me))).limit == 0  # one device: nothing to wait
  assert parallel.DispatchLimit(mesh(("gpu", me), ("gpu", me))).limit == 0
  assert parallel.DispatchLimit(mesh(("cpu", me), ("cpu", me + 1))).limit == 0  # 1 each
  assert parallel.DispatchLimit(parallel.create_mesh()).limit == (
      16 if jax.local_device_count() > 1 else 0)  # this process's own devices
  waited = []
  monkeypatch.setattr(jax, "block_until_ready", waited.append)
  limit = parallel.DispatchLimit(mesh(("cpu", me), ("cpu", me)), limit=3)
  assert [limit(i) for i in range(7)] == list(range(7))  # outputs pass through
  assert waited == [2, 5]  # after every third program


def test_two_cpu_devices_survive_a_host_far_ahead(tmp_path):
  """Two in-process CPU devices with 200 quick steps between log points, and 128 eval
  batches: without DispatchLimit XLA:CPU deadlocks on its all-reduce within seconds and,
  with the collective timeout cut to 10 s here, aborts the run (checked)."""
  env = test_train.cpu_env(2)
  env["XLA_FLAGS"] += " --xla_cpu_collective_call_terminate_timeout_seconds=10"
  args = ["--config", "configs/lenet1989.py", "--config.dataset=synthetic",
          "--config.synthetic.shape=16,16,1", "--config.synthetic.num_train=6400",
          "--config.synthetic.num_test=2048", "--config.batch_size=32",
          "--config.eval_batch_size=16", "--config.log_every_steps=200",
          "--config.num_epochs=1", "--config.device_loop=false"]
  proc = subprocess.run([sys.executable, "train.py", *args, "--workdir", str(tmp_path / "w")],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  assert "2 device(s)" in proc.stdout and "2048 examples" in proc.stdout
  assert "step 200/200" in proc.stdout


def test_distributed_setup_from_flags_and_environment(monkeypatch):
  for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
              "SLURM_NTASKS", "SLURM_STEP_ID", "TPU_WORKER_HOSTNAMES", "OMPI_COMM_WORLD_SIZE"):
    monkeypatch.delenv(var, raising=False)
  assert parallel.initialize_distributed() == "1 process"
  assert parallel.initialize_distributed(num_processes=1) == "1 process"
  with pytest.raises(parallel.ParallelError, match="needs all of --coordinator_address"):
    parallel.initialize_distributed(num_processes=2)
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  monkeypatch.setenv("JAX_PROCESS_ID", "2")
  with pytest.raises(parallel.ParallelError, match=r"--process_id=2 must be in \[0, 2\)"):
    parallel.initialize_distributed("localhost:1234")
  # What JAX's auto-detection would pick up.
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert parallel._multi_process_env() is None  # the batch script itself, not srun
  monkeypatch.setenv("SLURM_STEP_ID", "0")
  assert parallel._multi_process_env() == "SLURM"
  monkeypatch.setenv("SLURM_NTASKS", "1")
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t-0,t-1")
  assert parallel._multi_process_env() == "Cloud TPU pod"


_env = test_train.cpu_env


def test_slurm_one_task_per_node_drives_all_gpus(monkeypatch):
  for var in ("JAX_LOCAL_DEVICE_IDS", "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv("SLURM_STEP_ID", "0")
  monkeypatch.setenv("SLURM_GPUS_ON_NODE", "8")
  monkeypatch.setenv("SLURM_TASKS_PER_NODE", "1(x2)")
  assert parallel._slurm_node_gpus() == list(range(8))
  monkeypatch.setenv("SLURM_TASKS_PER_NODE", "8(x2)")  # one task per GPU: JAX's default
  assert parallel._slurm_node_gpus() is None
  monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "1")
  monkeypatch.setenv("JAX_LOCAL_DEVICE_IDS", "0,1")  # set by the user: left alone
  assert parallel._slurm_node_gpus() is None


_FOUR_DEVICE_CHECKS = ["ghost_bn", "fsdp_shardings"]


@pytest.fixture(scope="module")
def four_device_checks():
  """All the checks in one subprocess (one JAX start-up); each test reads its own line."""
  return subprocess.run([sys.executable, "tests/multidevice_checks.py", *_FOUR_DEVICE_CHECKS],
                        cwd=ROOT, env=_env(4), capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("check", _FOUR_DEVICE_CHECKS)
def test_on_four_devices(check, four_device_checks):
  proc = four_device_checks
  assert proc.returncode == 0 and f"{check} ok" in proc.stdout, proc.stderr[-3000:]


def _losses(workdir):
  return [r["train_loss"] for r in test_train.rows(workdir) if "train_loss" in r]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _two_processes(args, workdir, devices_each):
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, "train.py", *args, "--workdir", str(workdir),
       "--coordinator_address", f"localhost:{port}", "--num_processes", "2",
       "--process_id", str(i)], cwd=ROOT, env=_env(devices_each), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, out[-2000:] + err[-3000:]
  return [out for out, _ in outs]


def test_devices_processes_and_fsdp_match_one_device(tmp_path, capsys):
  """The same global batch on 1 device, on 2 processes x 4 devices (8 on the data axis),
  and on 8 devices as 4 (data) x 2 (fsdp: parameters split), whose checkpoint then
  resumes on 1 device: the same losses (1e-5), one set of files."""
  train = test_train.TINY_BN
  one = tmp_path / "one"
  test_train.run_here(train, one, capsys)  # 1 device: this process
  a = _losses(one)
  assert len(a) == 8 and a[-1] < a[0]  # 256 // 32 steps, every one logged; it trains
  eval_losses = lambda w: [r["eval_loss"] for r in test_train.rows(w) if "eval_loss" in r]

  two = tmp_path / "two"
  outs = _two_processes(train, two, devices_each=4)
  assert "process 0 of 2" in outs[0] and "8 device(s)" in outs[0]
  assert outs[1].count("[train]") == 0  # only process 0 prints and writes
  np.testing.assert_allclose(_losses(two), a, atol=1e-5, rtol=0)
  np.testing.assert_allclose(eval_losses(two), eval_losses(one), atol=1e-5, rtol=0)
  assert len(test_train.rows(two)) == len(test_train.rows(one))  # written once
  assert json.loads((two / "summary.json").read_text())["processes"] == 2
  assert sorted(os.listdir(two / "checkpoints")) == sorted(os.listdir(one / "checkpoints"))

  split = tmp_path / "split"
  fsdp = test_train.run(train + ["--config.mesh.fsdp=2", "--config.stop_after_steps=4"],
                        split, devices=8)
  assert "parameter arrays split over 2 devices" in fsdp.stdout
  np.testing.assert_allclose(_losses(split), a[:4], atol=1e-5, rtol=0)
  # The 8-device checkpoint read back on this one device, as tools/evaluate.py and
  # --config.init_from read it (without a target orbax refuses: a topology mismatch).
  variables, saved_config = pretrained.load_trained(str(split))
  assert saved_config["mesh"]["fsdp"] == 2
  assert all(isinstance(v, np.ndarray) for v in jax.tree.leaves(variables))
  assert {"params", "batch_stats"} <= set(variables)
  proc = test_train.run_here(train, split, capsys)
  assert "resumed from" in proc.stdout and "(step 4/8)" in proc.stdout
  np.testing.assert_allclose(_losses(split), a, atol=1e-5, rtol=0)
  np.testing.assert_allclose(eval_losses(split), eval_losses(one), atol=1e-5, rtol=0)
