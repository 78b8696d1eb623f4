"""tools/profile_summary.py: a jax.profiler trace, added up by XLA op."""

import json
import os
import re
import shutil

import jax
import jax.numpy as jnp
import pytest

from tools import profile_summary

CALLS = 4


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
  """A trace of ``CALLS`` calls of one small jitted program, and the names (less their
  numeric suffixes) of the instructions of its compiled entry computation."""
  f = jax.jit(lambda a, b: jnp.tanh(a @ b) + 1.0)
  a = jnp.ones((64, 64))
  compiled = f.lower(a, a).compile().as_text()
  entry = compiled[compiled.index("ENTRY"):]
  names = {re.sub(r"\.\d+$", "", m) for m in
           re.findall(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = ", entry, re.MULTILINE)}
  jax.block_until_ready(f(a, a))  # compiled before the trace starts
  out = tmp_path_factory.mktemp("trace")
  with jax.profiler.trace(str(out)):
    for _ in range(CALLS):
      jax.block_until_ready(f(a, a))
  return profile_summary.find_trace(str(out)), names


def test_ops_are_the_programs_instructions_once_per_call(trace):
  path, names = trace
  times = profile_summary.op_times(path)
  ops = times["/host:CPU"]
  # Only the program's own instructions: no Python frame, no runtime bookkeeping.
  assert set(ops) <= names, (set(ops) - names, names)
  assert all(calls % CALLS == 0 and ns > 0 for ns, calls in ops.values()), ops


def test_times_are_per_step_inside_a_runs_workdir(tmp_path, trace, capsys):
  path, _ = trace
  # A workdir as train.py leaves it: config.json beside profile/, the trace below it.
  inner = tmp_path / "w" / "profile" / "plugins" / "profile" / "2026_12_06"
  inner.mkdir(parents=True)
  shutil.copy(path, inner / "vm.xplane.pb")
  (tmp_path / "w" / "config.json").write_text(json.dumps({"profile_steps": [2, 6]}))
  assert profile_summary.traced_steps(str(inner / "vm.xplane.pb")) == CALLS
  assert profile_summary.main([str(tmp_path / "w" / "profile"), "--top", "1"]) == 0
  out = capsys.readouterr().out
  assert f"({CALLS} traced steps)" in out and "ms/step" in out, out
  assert "more ops; --top to list them" in out or out.count("%") == 1, out
  # Without the run's config the times are totals over the trace.
  os.remove(tmp_path / "w" / "config.json")
  assert profile_summary.main([str(tmp_path / "w" / "profile")]) == 0
  out = capsys.readouterr().out
  assert "traced steps" not in out and "ms of XLA ops in all" in out, out


def test_bad_input_is_one_line(tmp_path, capsys):
  assert profile_summary.main([str(tmp_path / "nowhere")]) == 2
  assert profile_summary.main([str(tmp_path)]) == 2
  assert profile_summary.main([str(tmp_path), "--top", "0"]) == 2
  (tmp_path / "notes.txt").write_text("not a trace")
  assert profile_summary.main([str(tmp_path / "notes.txt")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 4, err
  assert "does not exist" in err[0] and "no .xplane.pb trace under" in err[1], err
  assert "--top must be at least 1, got 0" in err[2], err
  assert "cannot read" in err[3] and "as a jax.profiler trace" in err[3], err
