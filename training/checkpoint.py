"""Orbax checkpoints under ``workdir/checkpoints``: keep the last N, resume the latest.

Restoring never deletes or overwrites anything: an unreadable or mismatched checkpoint
stops the run with a message that says which step directory it is and what to do.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be restored. The message is one line for the user."""


class Checkpointer:

  def __init__(self, workdir: str, keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any) -> None:
    if step in self._manager.all_steps():
      return  # never overwrite an existing step
    self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore(self, step: int, abstract_state: Any) -> Any:
    """Restores ``step`` into the shapes, dtypes and shardings of ``abstract_state``."""
    path = os.path.join(self.directory, str(step))
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
    except Exception as e:  # orbax raises many types; all mean "cannot use this one"
      reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
      raise CheckpointError(
          f"cannot restore the checkpoint {path} ({type(e).__name__}: {reason}). It was left "
          "untouched. If it is corrupt or from a different model/config, move it away or "
          "use a new --workdir.") from None

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(state: Any) -> Any:
  """ShapeDtypeStructs (with shardings) for a restore target."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
