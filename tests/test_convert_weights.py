"""tools/convert_weights.py: convert a PyTorch checkpoint, save it, evaluate it."""

import json
import os

import numpy as np
import pytest

import input_pipeline
import train
from tests.torch_reference import import_torchvision, randomize_batch_norm, torch_logits
from tools import convert_weights
from training import data as data_lib


def test_user_errors_are_one_line(tmp_path, capsys):
  assert convert_weights.main(["--model", "resnet18", "--checkpoint",
                               str(tmp_path / "missing.pth")]) == 2
  assert "not found" in capsys.readouterr().err
  assert convert_weights.main(["--model", "resnet5o", "--checkpoint", "x.pth"]) == 2
  assert "Did you mean" in capsys.readouterr().err
  assert convert_weights.main(["--model", "lenet5", "--checkpoint", "x.pth"]) == 2
  assert "no PyTorch converter" in capsys.readouterr().err
  (tmp_path / "taken").mkdir()
  assert convert_weights.main(["--model", "resnet18", "--checkpoint", "x.pth",
                               "--output", str(tmp_path / "taken")]) == 2
  assert "already exists" in capsys.readouterr().err


def test_list_names_the_convertible_models(capsys):
  assert convert_weights.main(["--list"]) == 0
  names = capsys.readouterr().out.split()
  for name in ("resnet50", "se_resnet50", "densenet121", "mobilenet_v2", "vit_b16",
               "convnext_t"):
    assert name in names


def test_convert_save_and_evaluate_matches_torch(tmp_path):
  """A torchvision ResNet-18 (10 classes, random weights) saved as .pth: the tool's
  top-1 on synthetic images equals torch's own accuracy on the same images, and the
  saved directory starts train.py's fine-tuning."""
  torch, tv = import_torchvision()
  torch.manual_seed(0)
  net = tv.models.resnet18(num_classes=10)
  randomize_batch_norm(torch, net)
  path = str(tmp_path / "r18.pth")
  torch.save(net.state_dict(), path)

  out = tmp_path / "converted"
  result = convert_weights.run(convert_weights.parse_args(
      ["--model", "resnet18", "--checkpoint", path, "--output", str(out),
       "--dataset", "synthetic", "--batch_size", "48"]))
  assert result["num_classes"] == 10 and result["eval_count"] == 256
  with open(out / "eval.json") as f:
    assert json.load(f)["eval_top1"] == result["eval_top1"]

  ds = input_pipeline.load_dataset("synthetic")
  x = (ds.test_images / 255.0 - np.array(data_lib.IMAGENET_MEAN)) / np.array(data_lib.IMAGENET_STD)
  ref = torch_logits(torch, net, x.astype(np.float32))
  top1 = float(np.mean(ref.argmax(-1) == ds.test_labels))
  assert result["eval_top1"] == pytest.approx(top1, abs=1.5 / 256)  # at most one tie flips
  assert os.path.isdir(out) and "eval.json" in os.listdir(out)


def test_triton_is_kept_out_only_where_tensorflow_is_loaded(monkeypatch):
  """After TensorFlow, importing triton crashes the process (two LLVMs), and torchvision
  and timm import it: ``import_torch`` makes it an ImportError there, and only there."""
  import sys  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  from models import torch_convert  # pylint: disable=g-import-not-at-top
  monkeypatch.delitem(sys.modules, "triton", raising=False)  # conftest's block, undone
  monkeypatch.delitem(sys.modules, "tensorflow", raising=False)
  torch_convert.keep_triton_out_beside_tensorflow()
  assert "triton" not in sys.modules
  monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
  torch_convert.keep_triton_out_beside_tensorflow()
  assert sys.modules["triton"] is None
  with pytest.raises(ImportError):
    import triton  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  # A triton already imported is left as it is.
  loaded = types.ModuleType("triton")
  monkeypatch.setitem(sys.modules, "triton", loaded)
  torch_convert.keep_triton_out_beside_tensorflow()
  assert sys.modules["triton"] is loaded
