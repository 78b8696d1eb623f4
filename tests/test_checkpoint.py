"""Checkpoints that heal: a latest checkpoint that does not restore is moved aside (never
deleted) and the newest one that restores is used; when none restores, one line."""

import gc
import glob
import json
import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__":  # run as one of two processes (see _two_processes)
  sys.path.insert(0, ROOT)

from training import checkpoint as checkpoint_lib  # noqa: E402
from training.checkpoint import CheckpointError, Checkpointer  # noqa: E402


def state(i):
  """A tiny train-state-like pytree; ``a`` is big enough to be stored in a data file."""
  return {"a": jnp.arange(1000, dtype=jnp.float32) + i,
          "b": {"c": jnp.full((3, 4), i, jnp.int32), "h": jnp.ones(5, jnp.bfloat16) * i},
          "step": jnp.asarray(i)}


def same(x, y):
  return all(np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True))


def saved(workdir, steps=(1, 2, 3), keep=3):
  c = Checkpointer(str(workdir), keep=keep)
  for i in steps:
    c.save(i, state(i))
  c.close()
  return os.path.join(str(workdir), "checkpoints")


def files(directory):
  """Every file below ``directory``: relative path -> size."""
  return {os.path.relpath(os.path.join(r, f), directory): os.path.getsize(os.path.join(r, f))
          for r, _, fs in os.walk(directory) for f in fs}


def data_files(step_dir):
  found = [p for p in glob.glob(os.path.join(step_dir, "**", "d", "*"), recursive=True)
           if os.path.isfile(p)]
  assert found, os.listdir(step_dir)
  return found


def _delete(paths):
  for p in paths:
    os.remove(p)


def _truncate(paths):
  for p in paths:
    with open(p, "r+b") as f:
      f.truncate(os.path.getsize(p) // 2)


def _garble(paths):
  for p in paths:
    with open(p, "r+b") as f:
      b = bytearray(f.read())
      for k in range(len(b) // 3, min(len(b), len(b) // 3 + 8)):
        b[k] ^= 0xFF
      f.seek(0)
      f.write(b)


CORRUPTIONS = {
    "array data deleted": lambda d: _delete(data_files(d)),
    "array data truncated": lambda d: _truncate(data_files(d)),
    # Garbled compressed array bytes can decode without an error into other numbers:
    # only the checksum recorded at save time tells.
    "array data garbled": lambda d: _garble(data_files(d)),
    "array chunks garbled": lambda d: _garble(glob.glob(os.path.join(d, "*", "ocdbt.*", "d", "*"))),
    "array metadata garbled": lambda d: _garble([os.path.join(d, "default", "_METADATA")]),
    "array metadata deleted": lambda d: _delete([os.path.join(d, "default", "_METADATA")]),
    "step metadata deleted": lambda d: _delete([os.path.join(d, "_CHECKPOINT_METADATA")]),
    "step metadata truncated": lambda d: _truncate([os.path.join(d, "_CHECKPOINT_METADATA")]),
    "manifest truncated": lambda d: _truncate([os.path.join(d, "default", "manifest.ocdbt")]),
    "every file deleted": lambda d: _delete(files(d) and
                                            [os.path.join(d, f) for f in files(d)]),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_latest_is_moved_aside_and_the_previous_restores(tmp_path, corruption):
  ckpts = saved(tmp_path)
  CORRUPTIONS[corruption](os.path.join(ckpts, "3"))
  before = files(os.path.join(ckpts, "3"))
  warnings = []
  c = Checkpointer(str(tmp_path), keep=3)
  step, restored = c.restore_latest(checkpoint_lib.abstract_like(state(0)),
                                    warn=warnings.append)
  assert step == 2 and same(restored, state(2))
  # One line, naming the step, why, and where it went; nothing deleted.
  assert len(warnings) == 1 and "\n" not in warnings[0], warnings
  moved = os.path.join(ckpts, "corrupt-3")
  assert "step 3" in warnings[0] and moved in warnings[0] and "step 2" in warnings[0]
  assert sorted(os.listdir(ckpts)) == ["1", "2", "corrupt-3"]
  assert files(moved) == before
  # The manager forgot step 3: saving and retention go on around it, never touching it.
  assert c.latest_step() == 2
  c.save(3, state(30))  # step 3 again, after the run resumed from 2
  c.save(4, state(4))
  c.close()
  assert sorted(os.listdir(ckpts)) == ["2", "3", "4", "corrupt-3"]
  assert files(moved) == before
  c = Checkpointer(str(tmp_path), keep=3)
  assert c.restore_latest(checkpoint_lib.abstract_like(state(0)), warn=warnings.append)[0] == 4
  assert len(warnings) == 1
  c.save(5, state(5))
  c.close()
  assert sorted(os.listdir(ckpts)) == ["3", "4", "5", "corrupt-3"]
  assert files(moved) == before


def test_arrays_that_do_not_match_their_checksum_are_corrupt(tmp_path):
  """Bytes that decode without an error into other numbers: here, the recorded sums."""
  ckpts = saved(tmp_path)
  path = os.path.join(ckpts, "3", "_CHECKPOINT_METADATA")
  with open(path) as f:
    meta = json.load(f)
  entry = meta["custom_metadata"]["checksums"]["leaves"]["['b']['c']"]
  assert entry[0] == "int32"
  entry[1] ^= 1
  with open(path, "w") as f:
    json.dump(meta, f)
  warnings = []
  c = Checkpointer(str(tmp_path), keep=3)
  step, restored = c.restore_latest(checkpoint_lib.abstract_like(state(0)),
                                    warn=warnings.append)
  assert step == 2 and same(restored, state(2))
  assert "the array ['b']['c'] does not match its checksum" in warnings[0], warnings
  c.close()
  # restore(step) checks them too.
  os.rename(os.path.join(ckpts, "corrupt-3"), os.path.join(ckpts, "3"))
  c = Checkpointer(str(tmp_path), keep=3)
  with pytest.raises(CheckpointError, match="does not match its checksum"):
    c.restore(3, checkpoint_lib.abstract_like(state(0)))


def test_several_corrupt_fall_back_to_the_newest_that_restores(tmp_path):
  ckpts = saved(tmp_path, steps=(1, 2, 3, 4), keep=4)
  _garble(data_files(os.path.join(ckpts, "4")))
  _delete([os.path.join(ckpts, "3", "default", "_METADATA")])
  os.makedirs(os.path.join(ckpts, "corrupt-3"))  # taken by an earlier run: not reused
  warnings = []
  c = Checkpointer(str(tmp_path), keep=4)
  step, restored = c.restore_latest(checkpoint_lib.abstract_like(state(0)),
                                    warn=warnings.append)
  c.close()
  assert step == 2 and same(restored, state(2))
  assert len(warnings) == 2
  assert "step 4" in warnings[0] and os.path.join(ckpts, "corrupt-4") in warnings[0]
  assert "step 3" in warnings[1] and os.path.join(ckpts, "corrupt-3-2") in warnings[1]
  assert sorted(os.listdir(ckpts)) == ["1", "2", "corrupt-3", "corrupt-3-2", "corrupt-4"]


def test_none_restores_is_one_line_and_moves_nothing(tmp_path):
  ckpts = saved(tmp_path)
  for step in ("1", "2", "3"):
    _garble(data_files(os.path.join(ckpts, step)))
  before = files(ckpts)
  warnings = []
  c = Checkpointer(str(tmp_path), keep=3)
  with pytest.raises(CheckpointError) as e:
    c.restore_latest(checkpoint_lib.abstract_like(state(0)), warn=warnings.append)
  message = str(e.value)
  assert "\n" not in message and not warnings
  assert f"cannot restore any of the 3 checkpoints in {ckpts}" in message
  assert "steps 3, 2, 1" in message and "left untouched" in message
  assert files(ckpts) == before  # a new run would give the same answer, not start over
  assert c.latest_step() == 3


def test_only_checkpoint_corrupt_keeps_the_one_line_message(tmp_path):
  ckpts = saved(tmp_path, steps=(7,))
  _truncate(data_files(os.path.join(ckpts, "7")))
  c = Checkpointer(str(tmp_path), keep=3)
  with pytest.raises(CheckpointError) as e:
    c.restore_latest(checkpoint_lib.abstract_like(state(0)))
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith(f"cannot restore the checkpoint {os.path.join(ckpts, '7')} (")
  assert "It was left untouched." in message
  assert os.listdir(ckpts) == ["7"]
  # restore(step) says the same.
  with pytest.raises(CheckpointError, match="cannot restore the checkpoint"):
    c.restore(7, checkpoint_lib.abstract_like(state(0)))


def test_a_model_that_does_not_fit_moves_nothing(tmp_path):
  """Checkpoints of another model fail to restore too, but all of them do: nothing moves."""
  ckpts = saved(tmp_path)
  other = {"a": jax.ShapeDtypeStruct((7,), jnp.float32)}
  c = Checkpointer(str(tmp_path), keep=3)
  with pytest.raises(CheckpointError, match="cannot restore any of the 3 checkpoints"):
    c.restore_latest(other, warn=pytest.fail)
  assert sorted(os.listdir(ckpts)) == ["1", "2", "3"]


def test_empty_and_intact(tmp_path, capsys):
  c = Checkpointer(str(tmp_path), keep=3)
  assert c.restore_latest(checkpoint_lib.abstract_like(state(0))) == (None, None)
  c.close()
  saved(tmp_path)
  c = Checkpointer(str(tmp_path), keep=3)
  step, restored = c.restore_latest(checkpoint_lib.abstract_like(state(0)))
  assert step == 3 and same(restored, state(3))
  assert capsys.readouterr().err == ""


def test_default_warning_goes_to_stderr(tmp_path, capsys):
  ckpts = saved(tmp_path)
  _delete(data_files(os.path.join(ckpts, "3")))
  c = Checkpointer(str(tmp_path), keep=3)
  assert c.restore_latest(checkpoint_lib.abstract_like(state(0)))[0] == 2
  out = capsys.readouterr()
  assert out.out == "" and len(out.err.splitlines()) == 1
  assert out.err.startswith("warning: the checkpoint of step 3 cannot be restored (")


def test_checkpoints_without_checksums_still_restore(tmp_path):
  """Written before checksums were recorded: restored, unchecked."""
  manager = ocp.CheckpointManager(str(tmp_path / "checkpoints"),
                                  options=ocp.CheckpointManagerOptions(create=True))
  manager.save(5, args=ocp.args.StandardSave(state(5)))
  manager.wait_until_finished()
  manager.close()
  c = Checkpointer(str(tmp_path), keep=3)
  step, restored = c.restore_latest(checkpoint_lib.abstract_like(state(0)), warn=pytest.fail)
  assert step == 5 and same(restored, state(5))


def test_checksums_see_one_changed_word_in_every_dtype():
  tree = {"f32": jnp.linspace(-1, 1, 24).reshape(2, 3, 4),
          "bf16": jnp.linspace(-1, 1, 10).astype(jnp.bfloat16),
          "i8": jnp.arange(-5, 5, dtype=jnp.int8), "u8": jnp.arange(10, dtype=jnp.uint8),
          "bool": jnp.arange(6) % 2 == 0, "i32": jnp.arange(7, dtype=jnp.int32),
          "scalar": jnp.asarray(3), "key": jax.random.key(0), "raw_key": jax.random.PRNGKey(1),
          "python": 4}
  base = checkpoint_lib.checksums(tree)["leaves"]
  assert set(base) == {jax.tree_util.keystr((jax.tree_util.DictKey(k),)) for k in tree}
  assert checkpoint_lib.checksums(jax.tree.map(lambda x: x, tree))["leaves"] == base
  # Two equal values swapped places, and a single changed element, both show.
  swapped = dict(tree, i32=tree["i32"].at[jnp.array([1, 2])].set(tree["i32"][jnp.array([2, 1])]))
  changes = {"swapped": swapped,
             "f32": dict(tree, f32=tree["f32"].at[1, 2, 3].set(0.5)),
             "bf16": dict(tree, bf16=tree["bf16"].at[0].set(2)),
             "bool": dict(tree, bool=tree["bool"].at[5].set(True)),
             "u8": dict(tree, u8=tree["u8"].at[9].set(0)),
             "key": dict(tree, key=jax.random.key(1))}
  for name, changed in changes.items():
    now = checkpoint_lib.checksums(changed)["leaves"]
    differ = [k for k in base if base[k] != now[k]]
    assert len(differ) == 1, (name, differ)


_NOISY = """
import os, sys, glob
sys.path.insert(0, {root!r})
import jax.numpy as jnp
from training import checkpoint as checkpoint_lib
w = sys.argv[1]
st = lambda i: {{"a": jnp.arange(1000.0) + i, "b": jnp.full((3, 4), i), "s": jnp.asarray(i)}}
c = checkpoint_lib.Checkpointer(w, keep=3)
for i in (1, 2, 3, 4):
  c.save(i, st(i))
c.close()
for p in glob.glob(os.path.join(w, "checkpoints", "4", "default", "array_metadatas", "*")):
  open(p, "w").write("garbage")
open(os.path.join(w, "checkpoints", "3", "_CHECKPOINT_METADATA"), "w").write("garbage")
print("---", file=sys.stderr, flush=True)
c = checkpoint_lib.Checkpointer(w, keep=3)
step, _ = c.restore_latest(checkpoint_lib.abstract_like(st(0)))
c.save(5, st(5))
c.close()
print(step)
"""


def test_a_failed_restore_leaves_only_the_warning_on_stderr(tmp_path):
  """orbax leaves abandoned reads behind (tracebacks of a closed event loop) and logs
  unreadable metadata: the warning line is all the user sees."""
  proc = subprocess.run([sys.executable, "-c", _NOISY.format(root=ROOT), str(tmp_path)],
                        capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split() == ["2"]
  err = proc.stderr.split("---\n", 1)[1].splitlines()
  err = [line for line in err if "Warning" not in line]  # e.g. platform notices
  assert len(err) == 2, "\n".join(err)[-3000:]
  assert err[0].startswith("warning: the checkpoint of step 4 cannot be restored (")
  assert err[1].startswith("warning: the checkpoint of step 3 cannot be restored (")


def test_collecting_a_failed_restores_reads_drops_their_never_awaited_warnings():
  """Coroutines created and never awaited (orbax's, when a read fails before they are
  gathered) warn as they are collected: train.py would print that RuntimeWarning beside
  its one-line message. The collection after a failed restore drops those warnings."""
  async def read():  # stands in for orbax's Store._get_array_metadatas
    return None

  def abandon():
    cycle = [read()]
    cycle.append(cycle)  # freed by the cyclic collector only

  counts = []
  gc.disable()  # no collection but the one under test
  try:
    for collect in (gc.collect, checkpoint_lib._collect_abandoned_reads):  # pylint: disable=protected-access
      with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        abandon()
        collect()
      counts.append(sum("was never awaited" in str(w.message) for w in seen))
  finally:
    gc.enable()
  assert counts == [1, 0]  # plain collection warns; the restore's does not


def _two_processes(phase, workdir, port):
  """This file as a script, as 2 processes x 1 CPU device; returns their stdouts."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1",
             XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} "
             "--xla_force_host_platform_device_count=1")
  procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), phase, str(workdir),
                             str(port), str(i)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for i in range(2)]
  outs = []
  for p in procs:
    try:
      out, err = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail(f"{phase}: hung")
    assert p.returncode == 0, err[-3000:]
    outs.append((out, err))
  return outs


def _free_port():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_agree_when_only_one_cannot_read_its_part(tmp_path):
  """Each process reads its own half of a sharded array; here only process 1's half is
  unreadable. Both must fall back to step 2 together (not hang, not resume apart)."""
  _two_processes("save", tmp_path, _free_port())
  halves = glob.glob(str(tmp_path / "checkpoints" / "3" / "default" / "ocdbt.process_1" /
                         "d" / "*"))
  assert halves
  _truncate(halves)
  outs = _two_processes("restore", tmp_path, _free_port())
  assert [out.splitlines()[-1] for out, _ in outs] == ["2 ok", "2 ok"], outs
  warning = [line for line in outs[0][1].splitlines() if line.startswith("warning:")]
  assert len(warning) == 1 and "step 3" in warning[0], outs[0][1][-3000:]
  assert not any(line.startswith("warning:") for line in outs[1][1].splitlines())
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2", "4", "corrupt-3"]


def _process_main(phase, workdir, port, process_id):
  jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("d",))
  halves = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
  every = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  data = np.random.default_rng(0).standard_normal((2, 20000)).astype(np.float32)

  def big_state(i):  # big enough not to be inlined in orbax's index
    return {"a": jax.make_array_from_callback(data.shape, halves, lambda idx: (data + i)[idx]),
            "step": jax.make_array_from_callback((), every, lambda _: np.int32(i))}

  c = Checkpointer(workdir, keep=3)
  if phase == "save":
    for i in (1, 2, 3):
      c.save(i, big_state(i))
  else:
    step, restored = c.restore_latest(checkpoint_lib.abstract_like(big_state(0)))
    ok = all(np.array_equal(a.data, b.data) for a, b in
             zip(restored["a"].addressable_shards, big_state(step)["a"].addressable_shards))
    c.save(4, big_state(4))
    print(step, "ok" if ok else "wrong")
  c.close()


if __name__ == "__main__":
  _process_main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
