"""tools/soak.py: a run killed (SIGKILL) at random times and restarted ends bitwise where
an uninterrupted run ends; bad input is one line."""

import os
import re

import pytest

import test_train
from tools import soak

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# LeNet-1989 on digits, 84 steps, a checkpoint at each of the 2 epochs: ~5-10 s a run.
DIGITS = ["--config", "configs/lenet1989.py", "--config.num_epochs=2",
          "--config.batch_size=32", "--config.checkpoint_every_epochs=1",
          "--config.log_every_steps=10"]


def test_three_kills_end_bitwise_equal_to_the_uninterrupted_run(tmp_path, capsys, monkeypatch):
  w = tmp_path / "soak"
  # The soak in this process; its train.py runs are subprocesses, on one CPU device as
  # test_train's.
  for k, v in test_train.cpu_env(1).items():
    monkeypatch.setenv(k, v)
  monkeypatch.chdir(ROOT)
  # Seed 1 aims the third kill at a checkpoint save (the first two are timed).
  rc = soak.main([*DIGITS, "--kills", "3", "--seed", "1", "--workdir", str(w)])
  out, err = capsys.readouterr()
  assert rc == 0, out[-4000:] + err[-2000:]
  lines = out.strip().splitlines()
  assert lines[-1] == "soak: 3 kills, final state bitwise equal to the uninterrupted run"
  kills = [x for x in lines if x.startswith("kill ")]
  assert len(kills) == 3 and all(" -> restart: " in x for x in kills), out
  assert re.search(r"soak: reference: 84 steps in .*checkpoints at steps 42, 84", out)
  assert re.search(r"soak: final run \d+ .* finished in", out)
  assert "arrays bitwise equal; summary.json equal in eval_loss, eval_top1" in out
  assert re.search(r"\d+ landed after at least one checkpoint was on disk", out)
  # Each run's output in its own log; the killed run's final checkpoint is complete.
  logs = sorted(os.listdir(w / "logs"))
  assert logs[0] == "reference.log" and len(logs) >= 5, logs
  assert (w / "killed" / "checkpoints" / "84").is_dir()


def test_a_difference_is_found(tmp_path, monkeypatch):
  """The comparison itself: a state that differs in one bit is reported by leaf."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  state = {"params": {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3)},
           "step": jnp.int32(7)}
  other = {"params": {"w": state["params"]["w"].at[1, 2].set(jnp.nextafter(
      jnp.float32(5), jnp.float32(6)))}, "step": jnp.int32(7)}
  ckpt = ocp.StandardCheckpointer()
  for name, tree in (("a", state), ("b", state), ("c", other)):
    ckpt.save(tmp_path / name, tree)
  ckpt.wait_until_finished()
  assert soak.compare_states(str(tmp_path / "a"), str(tmp_path / "b")) == (2, None)
  n, diff = soak.compare_states(str(tmp_path / "a"), str(tmp_path / "c"))
  assert n == 2 and diff.startswith("params/w: 1 of 6 values differ"), diff


# A stand-in for train.py whose restarts fail, as one would on a checkpoint a kill broke.
FAKE_TRAIN = """
import os, sys, time
workdir = sys.argv[sys.argv.index("--workdir") + 1]
ckpt = os.path.join(workdir, "checkpoints")
if os.path.isdir(os.path.join(ckpt, "5")):
  print(f"resumed from {ckpt}/5 (step 5/10)", flush=True)
  print("error: this restart fails", file=sys.stderr, flush=True)
  sys.exit(2)
if os.path.basename(workdir) == "killed":
  os.makedirs(os.path.join(ckpt, "5"))  # then trains slowly, until the kill
for step in range(1, 11):
  print(f"[train] step {step}/10", flush=True)
  time.sleep(0.01 if os.path.basename(workdir) == "reference" else 1)
os.makedirs(os.path.join(ckpt, "10"))
"""


def test_a_restart_that_fails_is_a_failure_of_the_soak(tmp_path, monkeypatch, capsys):
  fake = tmp_path / "fake_train.py"
  fake.write_text(FAKE_TRAIN)
  monkeypatch.setattr(soak, "TRAIN", str(fake))
  rc = soak.main(["--config", "x.py", "--kills", "2", "--min_delay", "1", "--max_delay", "1",
                  "--workdir", str(tmp_path / "w")])
  out = capsys.readouterr().out
  assert rc == 1, out
  assert "kill 1/2: run 1 (from scratch) killed at 1." in out
  assert "-> restart: resumed from step 5/10" in out
  last = out.strip().splitlines()[-1]
  assert last.startswith("soak: 1 kills, FAILED: run 2 (from step 5) exited with status 2 by "
                         "itself: this restart fails (log: "), last
  assert last.endswith("run-02.log)")


@pytest.mark.parametrize("argv,message", [
    ([], "the following arguments are required: --config"),
    (DIGITS + ["--kills", "-1"], "--kills=-1"),
    (DIGITS + ["--min_delay", "5", "--max_delay", "2"], "above --max_delay"),
    (DIGITS + ["--save_kills", "2"], "--save_kills=2"),
    (DIGITS + ["--colour"], "unrecognized arguments: --colour"),
    (DIGITS + ["--config.num_epochs"], "--config.num_epochs needs a value"),
])
def test_bad_input_is_one_line(argv, message, capsys):
  assert soak.main(argv) == 2
  out, err = capsys.readouterr()
  assert out == "" and len(err.strip().splitlines()) == 1, err
  assert err.startswith("error: ") and message in err, err


def test_a_workdir_in_use_and_a_failing_reference_are_one_line(tmp_path, capsys, monkeypatch):
  (tmp_path / "used").mkdir()
  (tmp_path / "used" / "file").write_text("x")
  assert soak.main(DIGITS + ["--workdir", str(tmp_path / "used")]) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and "is not an empty directory" in err, err

  # A config train.py refuses: its own one-line error, from the reference run.
  for k, v in test_train.cpu_env(1).items():
    monkeypatch.setenv(k, v)
  assert soak.main(DIGITS + ["--config.nokey=1", "--workdir", str(tmp_path / "w")]) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1, err
  assert err.startswith("error: the uninterrupted run failed") and "nokey" in err, err
  assert "reference.log" in err
