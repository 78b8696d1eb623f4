"""PyTorch references for equivalence tests: skipped where torch/torchvision are missing.

    torch, torchvision = import_torchvision()   # inside a test; skips if unavailable
    logits_ref = torch_logits(torch_model, x_nhwc)

On a CPU-only PyTorch, torchvision's compiled operators (NMS, RoI pooling) cannot load,
and its import fails while registering their fake kernels. The classification models
are pure Python, so the import is retried with that registration disabled.
"""

from __future__ import annotations

import numpy as np
import pytest


def import_torch():
  return pytest.importorskip("torch")


def import_torchvision():
  import_torch()  # skips without torch
  from models import torch_convert  # pylint: disable=g-import-not-at-top
  torch, torchvision = torch_convert.import_torch()
  if torchvision is None:
    pytest.skip("torchvision does not import beside this torch")
  return torch, torchvision


def state_dict_numpy(module) -> dict[str, np.ndarray]:
  return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def randomize_batch_norm(torch, module, seed: int = 0) -> None:
  """Gives every BatchNorm non-trivial running statistics and affine parameters, so an
  equivalence test also checks that statistics and epsilon are converted."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in module.modules():
      if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
        n = m.num_features
        m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
        m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
        if m.affine:
          m.weight.copy_(torch.rand(n, generator=g) + 0.5)
          m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def torch_logits(torch, module, x_nhwc: np.ndarray) -> np.ndarray:
  module.eval()
  with torch.no_grad():
    out = module(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))))
  return out.numpy()


def max_relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
  """max |ours - ref| / max |ref|: the error relative to the logits' scale."""
  return float(np.max(np.abs(np.asarray(ours) - ref)) / np.max(np.abs(ref)))
