"""Pretrained weights: PyTorch checkpoints (torchvision, timm) or converted Flax ones.

    variables = load_variables("resnet50-0676ba61.pth", "resnet50", model, (224, 224, 3))
    save_variables("weights/resnet50", variables)           # Orbax, reloadable below
    variables = load_variables("weights/resnet50", "resnet50", model, (224, 224, 3))
    params, stats, fresh = merge_into(init_params, init_stats, variables, num_classes=10)

``merge_into`` is what fine-tuning needs: every pretrained leaf replaces the fresh one,
except the classifier, which is kept fresh when the class count differs (1000 ImageNet
classes -> 10). Any other mismatch is an error, never a silently half-loaded model.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from models import torch_convert

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


class PretrainedError(ValueError):
  """Weights that cannot be loaded; the message names the file and the fix."""


def load_variables(path: str, model_name: str, model, image_shape: tuple[int, ...]) -> dict:
  """Variables ``{'params', 'batch_stats'?}`` from a PyTorch file or a saved directory.

  A PyTorch file is converted with ``model_name``'s converter; a directory must have been
  written by :func:`save_variables` (``tools/convert_weights.py``).
  """
  if os.path.isdir(path):
    return _restore(path)
  if not os.path.exists(path):
    raise PretrainedError(f"pretrained weights not found: {path!r}")
  if not path.endswith(TORCH_SUFFIXES):
    raise PretrainedError(
        f"cannot tell the format of {path!r}: expected a PyTorch file "
        f"({', '.join(TORCH_SUFFIXES)}) or a directory written by tools/convert_weights.py")
  try:
    state_dict = torch_convert.load_state_dict(path)
    return torch_convert.convert(model_name, state_dict, model=model)
  except torch_convert.ConversionError as e:
    raise PretrainedError(f"{path}: {e}") from None


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
  classifier (their last axis is ``num_classes`` in our model); their paths are returned
  so the caller can say what was not loaded. Anything else that differs raises.
  """
  fresh: list[str] = []

  def merge(ours: Any, theirs: Any, collection: str) -> Any:
    theirs_flat = {jax.tree_util.keystr(p): v
                   for p, v in jax.tree_util.tree_leaves_with_path(theirs or {})}
    ours_paths = [jax.tree_util.keystr(p)
                  for p, _ in jax.tree_util.tree_leaves_with_path(ours)]
    missing = sorted(set(ours_paths) - set(theirs_flat))
    extra = sorted(set(theirs_flat) - set(ours_paths))
    if missing or extra:
      raise PretrainedError(
          f"the pretrained {collection} do not fit the model: missing {missing[:4]}, "
          f"unexpected {extra[:4]}; are they for another model or variant?")

    def pick(path, leaf):
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
