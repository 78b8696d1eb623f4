"""Orbax checkpoints under ``workdir/checkpoints``: keep the last N, resume the latest.

Restoring never deletes or overwrites anything. ``restore_latest`` resumes from the
newest checkpoint that restores: newer ones that do not (files missing, truncated or
garbled, metadata gone) are moved aside to ``checkpoints/corrupt-<step>`` with a one-line
warning each. When none restores, nothing is moved and the run stops with one line.

Each save records a checksum of every array in the step's ``_CHECKPOINT_METADATA``:
garbled array bytes can decompress without an error into other numbers, and only the
checksum tells. Checkpoints written before it existed restore unchecked.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

_STEP_METADATA = "_CHECKPOINT_METADATA"  # orbax's per-step file (custom_metadata lives here)
_ITEM = "default"  # the item directory of a single-item (StandardSave) checkpoint
_CHECKSUM_KEY = "checksums"
_CHECKSUM_VERSION = 1
_BARRIER_MISMATCH = "sync_global_devices name mismatch"  # jax's message


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be restored. The message is one line for the user."""


class Checkpointer:

  def __init__(self, workdir: str, keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    _quiet_orbax_logs(self.directory)
    self._options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=self._options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any) -> None:
    if step in self._manager.all_steps():
      return  # never overwrite an existing step
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True,
                       custom_metadata={_CHECKSUM_KEY: checksums(state)})

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restores ``step`` into the shapes, dtypes and shardings of ``abstract_state``."""
    state, reason = self._attempt(step, abstract_state)
    if reason is not None:
      raise CheckpointError(_none_restores([(step, reason)], self.directory))
    return state

  def restore_latest(self, abstract_state: Any,
                     warn: Callable[[str], None] | None = None) -> tuple[int | None, Any]:
    """``(step, state)`` of the newest checkpoint that restores, ``(None, None)`` if none.

    Newer checkpoints that fail to restore (or whose arrays do not match their checksum)
    are then moved to ``checkpoints/corrupt-<step>`` (``-2``, ``-3``... if taken), one
    ``warn`` line each (default: stderr, process 0 only), and are no longer steps to the
    manager: later saves and ``keep`` retention ignore them. Nothing is deleted. If no
    checkpoint restores, nothing is moved and ``CheckpointError`` (one line) is raised:
    the same files may be from another model or config rather than corrupt.
    """
    failed: list[tuple[int, str]] = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      state, reason = self._attempt(step, abstract_state)
      if reason is None:
        self._set_aside(failed, step, warn or _warn)
        return step, state
      failed.append((step, reason))
    if failed:
      raise CheckpointError(_none_restores(failed, self.directory))
    return None, None

  def _attempt(self, step: int, abstract_state: Any) -> tuple[Any, str | None]:
    """``(state, None)``, or ``(None, reason)``; all processes agree on the outcome.

    Processes read different parts of a checkpoint, so one may fail where another does
    not. orbax ends a restore with a barrier (a collective, ``sync_global_devices``); a
    process that failed before it meets it with a differently named one, which makes the
    barrier fail on every process, and then all of them agree on one outcome."""
    path = os.path.join(self.directory, str(step))
    state, recorded, met_barrier = None, None, False
    _quiet_abandoned_reads()  # before: a failing restore's leftovers can outrun the raise
    try:
      recorded = _read_json(path, _STEP_METADATA)
      _read_json(path, os.path.join(_ITEM, "_METADATA"))
      state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
      met_barrier = True
      reason = _verify(state, recorded.get("custom_metadata") or {})
    except Exception as e:  # orbax raises many types; all mean "cannot use this one"
      reason = _one_line(e)
      met_barrier = _BARRIER_MISMATCH in str(e)
      if met_barrier:
        reason = "another process could not read its part of it"
      _collect_abandoned_reads()
    if jax.process_count() > 1:
      if not met_barrier:
        from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
        try:
          multihost_utils.sync_global_devices(f"checkpoint {step} failed to restore")
        except AssertionError:
          pass  # the others were in orbax's barrier: theirs failed too
      if not _everywhere(reason is None) and reason is None:
        reason = "another process could not restore it"
    return (state, None) if reason is None else (None, reason)

  def _set_aside(self, failed: list[tuple[int, str]], restored: int,
                 warn: Callable[[str], None]) -> None:
    if not failed:
      return
    primary = jax.process_index() == 0
    moved = []
    for step, reason in failed:
      target = os.path.join(self.directory, f"corrupt-{step}")
      n = 1
      while os.path.exists(target):
        n += 1
        target = os.path.join(self.directory, f"corrupt-{step}-{n}")
      if primary:
        os.rename(os.path.join(self.directory, str(step)), target)
      moved.append((step, reason, target))
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("checkpoints moved aside")
    # The manager caches its steps: it must forget these, or a later retention pass
    # would try to delete them.
    if hasattr(self._manager, "reload"):
      self._manager.reload()
    else:
      self._manager.close()
      self._manager = ocp.CheckpointManager(self.directory, options=self._options)
    assert not set(self._manager.all_steps()) & {s for s, _ in failed}
    if primary:
      for step, reason, target in moved:
        warn(f"warning: the checkpoint of step {step} cannot be restored ({reason}); "
             f"moved it to {target} and resumed from step {restored}")

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _warn(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def _one_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines()
  reason = lines[0].split(" See full TensorStore details")[0] if lines else ""
  if len(reason) > 200:
    reason = reason[:200] + "..."
  return f"{type(e).__name__}: {reason}" if reason else type(e).__name__


def _none_restores(failed: list[tuple[int, str]], directory: str) -> str:
  if len(failed) == 1:
    step, reason = failed[0]
    return (f"cannot restore the checkpoint {os.path.join(directory, str(step))} ({reason}). "
            "It was left untouched. If it is corrupt or from a different model/config, "
            "move it away or use a new --workdir.")
  steps = ", ".join(str(s) for s, _ in failed)
  return (f"cannot restore any of the {len(failed)} checkpoints in {directory} (steps "
          f"{steps}; step {failed[0][0]}: {failed[0][1]}). They were left untouched. If "
          "they are corrupt or from a different model/config, move them away or use a "
          "new --workdir.")


def _read_json(step_dir: str, name: str) -> dict:
  path = os.path.join(step_dir, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{name} is missing")
  with open(path, "rb") as f:
    data = json.loads(f.read().decode("utf-8"))
  if not isinstance(data, dict):
    raise ValueError(f"{name} is not a JSON object")
  return data


def _everywhere(ok: bool) -> bool:
  """Whether ``ok`` holds on every process (each decides alike, or none resumes)."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


# Checksums: the sum mod 2**32 of an array's 32-bit (or narrower) words, each times an
# odd weight, 2 * (its flat position) + 1: any one changed word changes the sum (an odd
# factor is invertible mod 2**32), other damage goes unseen with odds of about 2**-32.
# An integer sum does not depend on the order of the reduction, so neither on the
# sharding nor the devices. Per axis iotas, not a reshape: no sharded array is gathered.

def _words(x: jax.Array) -> jax.Array | None:
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    return x.astype(jnp.uint32)
  if jnp.issubdtype(x.dtype, jnp.complexfloating):
    return None
  size = jnp.dtype(x.dtype).itemsize
  if size in (1, 2):
    return jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * size}")).astype(jnp.uint32)
  if size in (4, 8):
    return jax.lax.bitcast_convert_type(x, jnp.uint32)  # 8 bytes: a trailing axis of 2
  return None


def _leaf_sums(x: Any) -> jax.Array:
  w = _words(jnp.asarray(x))
  if w is None:
    return jnp.zeros((0,), jnp.uint32)
  weight, stride = jnp.uint32(1), 2
  for axis in reversed(range(w.ndim)):
    weight = weight + jax.lax.broadcasted_iota(jnp.uint32, w.shape, axis) * jnp.uint32(stride)
    stride = (stride * w.shape[axis]) % 2**32
  return jnp.sum(w * weight, dtype=jnp.uint32)[None]


_leaf_sums_tree = jax.jit(lambda tree: jax.tree.map(_leaf_sums, tree))


def checksums(state: Any) -> dict:
  """``{"version", "leaves": {path: [dtype, sum]}}`` for a state (JSON-ready)."""
  sums = jax.device_get(_leaf_sums_tree(state))
  leaves = {}
  for (path, s), (_, x) in zip(jax.tree_util.tree_flatten_with_path(sums)[0],
                               jax.tree_util.tree_flatten_with_path(state)[0]):
    if s.size:
      dtype = x.dtype if hasattr(x, "dtype") else jnp.asarray(x).dtype
      leaves[jax.tree_util.keystr(path)] = [str(dtype)] + [int(v) for v in s]
  return {"version": _CHECKSUM_VERSION, "leaves": leaves}


def _verify(state: Any, custom_metadata: dict) -> str | None:
  """The first array that does not match its recorded checksum, or None. Leaves
  restored into another dtype than they were saved in are not compared."""
  recorded = custom_metadata.get(_CHECKSUM_KEY)
  if not recorded:
    return None  # written before checksums were recorded
  if recorded.get("version") != _CHECKSUM_VERSION:
    return None
  now = checksums(state)["leaves"]
  for path, entry in recorded.get("leaves", {}).items():
    mine = now.get(path)
    if mine is not None and mine[0] == entry[0] and mine != entry:
      return f"the array {path} does not match its checksum"
  return None


class _OrbaxMetadataNoise(logging.Filter):
  """Drops orbax's log lines about unreadable step metadata under ``directory``:
  ``restore_latest`` reports those checkpoints itself, in one line."""

  def __init__(self, directory: str):
    super().__init__()
    self.directory = directory

  def filter(self, record: logging.LogRecord) -> bool:
    try:
      message = record.getMessage()
    except Exception:  # noqa: BLE001
      return True
    return not ("Metadata file" in message and self.directory in message)


def _quiet_orbax_logs(directory: str) -> None:
  logger = logging.getLogger("absl")
  if not any(isinstance(f, _OrbaxMetadataNoise) and f.directory == directory
             for f in logger.filters):
    logger.addFilter(_OrbaxMetadataNoise(directory))


def _abandoned_read(unraisable: Any) -> bool:
  """The reads orbax leaves behind when a restore fails: tensorstore callbacks into its
  closed event loop, and coroutines collected with their error. Harmless; Python would
  print each with a traceback (hundreds of lines)."""
  exc = unraisable.exc_value
  if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
    return True
  code = getattr(unraisable.object, "cr_code", None)
  return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


def _collect_abandoned_reads() -> None:
  """Collects a failed restore's abandoned reads now, while they are known to be harmless.

  Coroutines that orbax created and never awaited (e.g. ``Store._get_array_metadatas``,
  when a read failed before they were gathered) warn when collected, a RuntimeWarning
  that train.py would print to stderr beside the one-line message: those warnings are
  dropped here; the ones of any later collection are not."""
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"coroutine '.*' was never awaited", RuntimeWarning)
    gc.collect()


def _quiet_abandoned_reads() -> None:
  """Installs (once) a ``sys.unraisablehook`` that drops those and passes on the rest."""
  if getattr(sys.unraisablehook, "_drops_abandoned_orbax_reads", False):
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    if not _abandoned_read(unraisable):
      previous(unraisable)

  hook._drops_abandoned_orbax_reads = True  # pylint: disable=protected-access
  sys.unraisablehook = hook


def abstract_like(state: Any) -> Any:
  """ShapeDtypeStructs (with shardings) for a restore target."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
