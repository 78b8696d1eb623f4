"""Pretrained weights: PyTorch checkpoints (torchvision, timm) or converted Flax ones.

    variables = load_variables("resnet50-0676ba61.pth", "resnet50", model, (224, 224, 3))
    save_variables("weights/resnet50", variables)           # Orbax, reloadable below
    variables = load_variables("weights/resnet50", "resnet50", model, (224, 224, 3))
    params, stats, fresh = merge_into(init_params, init_stats, variables, num_classes=10)

``merge_into`` is what fine-tuning needs: every pretrained leaf replaces the fresh one,
except the classifier, which is kept fresh when the class count differs (1000 ImageNet
classes -> 10), and auxiliary heads the file lacks (``OPTIONAL_HEADS``). Any other
mismatch is an error, never a silently half-loaded model.

``load_trained`` reads the weights of a train.py run (its workdir) or of a directory
written by ``save_variables``, for ``tools/convert_weights.py --export``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from models import torch_convert

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
# Top-level modules a pretrained file may lack, kept as initialised (and said so):
# torchvision deletes GoogLeNet's auxiliary heads when it loads its weights with
# aux_logits=False, so a state dict saved from such a model has none.
OPTIONAL_HEADS = ("aux1", "aux2")


class PretrainedError(ValueError):
  """Weights that cannot be loaded; the message names the file and the fix."""


def load_variables(path: str, model_name: str, model, image_shape: tuple[int, ...]) -> dict:
  """Variables ``{'params', 'batch_stats'?}`` from a PyTorch file or a saved directory.

  A PyTorch file is converted with ``model_name``'s converter; a directory must have been
  written by :func:`save_variables` (``tools/convert_weights.py``).
  """
  check_path(path)
  if os.path.isdir(path):
    return _restore(path)
  notes: list[str] = []
  try:
    state_dict = torch_convert.load_state_dict(path)
    variables = torch_convert.convert(model_name, state_dict, model=model, notes=notes)
  except torch_convert.ConversionError as e:
    raise PretrainedError(f"{path}: {e}") from None
  if jax.process_index() == 0:
    for note in notes:
      print(f"note: {path}: {note}", flush=True)
  return variables


def check_path(path: str) -> None:
  """A PretrainedError unless ``path`` is a directory or a PyTorch file that exists: what
  train.py asks before it loads data or builds the state, so that a wrong
  ``--config.init_from`` costs a second, not the start-up."""
  if os.path.isdir(path):
    return
  if not os.path.exists(path):
    raise PretrainedError(f"pretrained weights not found: {path!r}; give a PyTorch file "
                          f"({', '.join(TORCH_SUFFIXES)}) or a directory written by "
                          "tools/convert_weights.py")
  if not path.endswith(TORCH_SUFFIXES):
    raise PretrainedError(
        f"cannot tell the format of {path!r}: expected a PyTorch file "
        f"({', '.join(TORCH_SUFFIXES)}) or a directory written by tools/convert_weights.py")


def save_variables(path: str, variables: dict) -> None:
  """Writes ``variables`` as an Orbax checkpoint at ``path``; refuses to overwrite."""
  import orbax.checkpoint as ocp
  path = os.path.abspath(path)
  if os.path.exists(path):
    raise PretrainedError(f"{path} already exists; choose a new --output (nothing was "
                          "overwritten)")
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, jax.tree.map(np.asarray, variables))
  checkpointer.wait_until_finished()


def load_trained(path: str, step: int | None = None,
                 ema: bool = False) -> tuple[dict, dict | None]:
  """``(variables, config)`` of a train.py workdir: the checkpoint of ``step`` (default:
  the latest), its EMA weights with ``ema``, and the run's ``config.json`` (a dict). A
  directory written by :func:`save_variables` gives its variables and no config."""
  if not os.path.isdir(path):
    raise PretrainedError(f"{path!r} is not a directory: pass a train.py workdir or a "
                          "directory written by tools/convert_weights.py --output")
  checkpoints = os.path.join(path, "checkpoints")
  config_path = os.path.join(path, "config.json")
  if not os.path.isdir(checkpoints) and not os.path.exists(config_path):
    if step is not None or ema:
      raise PretrainedError(f"{path} holds converted weights, not a train.py run: a step "
                            "or EMA weights apply to a workdir")
    return _restore(path), None
  steps = []  # orbax's step directories (not corrupt-<step> or temporary ones)
  if os.path.isdir(checkpoints):
    steps = sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit())
  if not steps:
    raise PretrainedError(f"{path} has no checkpoint (checkpoints/<step>): has its run "
                          "saved one?")
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise PretrainedError(f"{path} has no checkpoint of step {step}; it has steps "
                          f"{', '.join(map(str, steps))}")
  import orbax.checkpoint as ocp
  step_dir = os.path.abspath(os.path.join(checkpoints, str(step), "default"))
  try:
    # Onto this process's first device, whatever devices the run saved from (a run on two
    # devices or hosts restored without a target is a "topology mismatch").
    checkpointer = ocp.StandardCheckpointer()
    saved = checkpointer.metadata(step_dir).item_metadata
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=here),
                          getattr(saved, "tree", saved))
    state = checkpointer.restore(step_dir, target)
  except Exception as e:  # noqa: BLE001 - orbax raises many types; all mean "unreadable"
    reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    raise PretrainedError(f"cannot read the checkpoint of step {step} in {path} "
                          f"({reason})") from None
  if not isinstance(state, dict) or "params" not in state:
    raise PretrainedError(f"{step_dir} holds no 'params': not a train.py checkpoint")
  if ema:
    state = state.get("ema") or {}
    if not state:
      raise PretrainedError(f"{path}'s run kept no EMA weights (its config.ema_decay is 0)")
  variables = {"params": jax.tree.map(np.asarray, state["params"])}
  if state.get("batch_stats"):
    variables["batch_stats"] = jax.tree.map(np.asarray, state["batch_stats"])
  config = None
  if os.path.exists(config_path):
    with open(config_path) as f:
      config = json.load(f)
  return variables, config


def _restore(path: str) -> dict:
  import orbax.checkpoint as ocp
  try:
    checkpointer = ocp.StandardCheckpointer()
    restored = checkpointer.restore(os.path.abspath(path))
  except Exception as e:  # noqa: BLE001 - orbax raises many types; all mean "unreadable"
    reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    raise PretrainedError(f"cannot read {path!r} as converted weights ({reason}); "
                          "write it with tools/convert_weights.py") from None
  if not isinstance(restored, dict) or "params" not in restored:
    raise PretrainedError(f"{path!r} holds no 'params': not written by "
                          "tools/convert_weights.py")
  return restored


def merge_into(params: Any, batch_stats: Any, pretrained: dict, num_classes: int
               ) -> tuple[Any, Any, list[str]]:
  """Replaces ``params``/``batch_stats`` leaves by pretrained ones of the same path.

  Leaves whose shape differs are kept as initialised only if they belong to the
  classifier (their last axis is ``num_classes`` in our model), and so are the
  ``OPTIONAL_HEADS`` that ``pretrained`` lacks altogether; their paths are returned so
  the caller can say what was not loaded. Anything else that differs raises.
  """
  fresh: list[str] = []

  def top(path) -> Any:
    return getattr(path[0], "key", None) if path else None

  def merge(ours: Any, theirs: Any, collection: str) -> Any:
    theirs_leaves = jax.tree_util.tree_leaves_with_path(theirs or {})
    theirs_flat = {jax.tree_util.keystr(p): v for p, v in theirs_leaves}
    ours_leaves = jax.tree_util.tree_leaves_with_path(ours)
    kept = sorted({top(p) for p, _ in ours_leaves if top(p) in OPTIONAL_HEADS}
                  - {top(p) for p, _ in theirs_leaves})
    fresh.extend(f"{collection}['{head}']" for head in kept)
    ours_paths = [jax.tree_util.keystr(p) for p, _ in ours_leaves if top(p) not in kept]
    missing = sorted(set(ours_paths) - set(theirs_flat))
    extra = sorted(set(theirs_flat) - set(ours_paths))
    if missing or extra:
      raise PretrainedError(
          f"the pretrained {collection} do not fit the model: missing {missing[:4]}, "
          f"unexpected {extra[:4]}; are they for another model or variant?")

    def pick(path, leaf):
      if top(path) in kept:
        return leaf
      key = jax.tree_util.keystr(path)
      value = np.asarray(theirs_flat[key])
      if value.shape == leaf.shape:
        return value.astype(leaf.dtype)
      if leaf.shape and leaf.shape[-1] == num_classes:
        fresh.append(f"{collection}{key}")
        return leaf
      raise PretrainedError(f"pretrained {collection}{key} has shape {value.shape}, the "
                            f"model's is {leaf.shape}: is the model configured the same "
                            "way (width, image size)?")

    return jax.tree_util.tree_map_with_path(pick, ours)

  params = merge(params, pretrained["params"], "params")
  if batch_stats:
    batch_stats = merge(batch_stats, pretrained.get("batch_stats"), "batch_stats")
  return params, batch_stats, fresh
