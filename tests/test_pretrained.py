"""training/pretrained.py and train.py's --config.init_from (fine-tuning)."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
import train
from tests import test_train
from training import pretrained

SHAPE = (16, 16, 3)


def _variables(num_classes, width=4, seed=0, name="resnet20", **kwargs):
  """A model's variable tree filled with random values: eval_shape, no compilation."""
  model = models.create_model(name, num_classes=num_classes, width=width, **kwargs)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)),
                                             train=False))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), shapes)


def test_merge_keeps_a_fresh_classifier_when_classes_differ():
  ours = _variables(10, seed=0)
  theirs = _variables(1000, seed=1)
  params, stats, fresh = pretrained.merge_into(ours["params"], ours["batch_stats"], theirs, 10)
  assert sorted(fresh) == ["params['fc']['bias']", "params['fc']['kernel']"]
  np.testing.assert_array_equal(params["fc"]["kernel"], ours["params"]["fc"]["kernel"])
  np.testing.assert_array_equal(params["conv1"]["kernel"], theirs["params"]["conv1"]["kernel"])
  np.testing.assert_array_equal(stats["bn1"]["mean"], theirs["batch_stats"]["bn1"]["mean"])
  # Same classes: everything is loaded.
  same = _variables(10, seed=2)
  params, _, fresh = pretrained.merge_into(ours["params"], ours["batch_stats"], same, 10)
  assert fresh == []
  np.testing.assert_array_equal(params["fc"]["kernel"], same["params"]["fc"]["kernel"])


def test_merge_rejects_another_width_or_model():
  ours = _variables(10, width=4)
  with pytest.raises(pretrained.PretrainedError, match="shape"):
    pretrained.merge_into(ours["params"], ours["batch_stats"], _variables(10, width=8), 10)
  theirs = _variables(10, name="resnet32")
  with pytest.raises(pretrained.PretrainedError, match="unexpected"):
    pretrained.merge_into(ours["params"], ours["batch_stats"], theirs, 10)


def test_save_load_round_trip_and_no_overwrite(tmp_path):
  variables = _variables(10)
  path = str(tmp_path / "weights")
  pretrained.save_variables(path, variables)
  loaded = pretrained.load_variables(path, "resnet20", None, SHAPE)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(a, b)
  before = os.listdir(path)
  with pytest.raises(pretrained.PretrainedError, match="already exists"):
    pretrained.save_variables(path, _variables(10, seed=5))
  assert os.listdir(path) == before
  with pytest.raises(pretrained.PretrainedError, match="not found"):
    pretrained.load_variables(str(tmp_path / "nope.pth"), "resnet20", None, SHAPE)
  (tmp_path / "w.npz").write_bytes(b"x")
  with pytest.raises(pretrained.PretrainedError, match="format"):
    pretrained.load_variables(str(tmp_path / "w.npz"), "resnet20", None, SHAPE)
  (tmp_path / "broken").mkdir()
  with pytest.raises(pretrained.PretrainedError, match="cannot read"):
    pretrained.load_variables(str(tmp_path / "broken"), "resnet20", None, SHAPE)


def test_train_starts_from_init_from(tmp_path, capsys):
  """With lr 0, the trained parameters are the pretrained ones, except the classifier
  (1000 -> 10 classes), which is new."""
  theirs = _variables(1000, seed=7, blocks_per_stage=1)  # TINY_BN's ResNet-8
  pretrained.save_variables(str(tmp_path / "w"), theirs)
  workdir = tmp_path / "run"
  args = test_train.TINY_BN + ["--config.learning_rate=0", "--config.stop_after_steps=1"]
  assert train.main(args + [f"--config.init_from={tmp_path / 'w'}",
                            "--workdir", str(workdir)]) == 0
  out = capsys.readouterr().out
  assert "initialised from" in out and "['fc']['kernel']" in out
  import orbax.checkpoint as ocp
  step_dir = workdir / "checkpoints" / "1" / "default"
  state = ocp.StandardCheckpointer().restore(str(step_dir))
  np.testing.assert_allclose(state["params"]["conv1"]["kernel"],
                             theirs["params"]["conv1"]["kernel"], rtol=0, atol=0)
  assert state["params"]["fc"]["kernel"].shape == (16, 10)

  # The run resumes from its checkpoint without the file it started from.
  shutil.rmtree(tmp_path / "w")
  assert train.main(args + [f"--config.init_from={tmp_path / 'w'}",
                            "--config.stop_after_steps=2", "--workdir", str(workdir)]) == 0
  out = capsys.readouterr().out
  assert "resumed from" in out and "initialised from" not in out

  # A file that is not there: one line before the data are read, and no workdir.
  assert train.main(args + [f"--config.init_from={tmp_path / 'none.pth'}",
                            "--workdir", str(tmp_path / "bad")]) == 2
  out, err = capsys.readouterr()
  assert err.count("\n") == 1 and "pretrained weights not found" in err
  assert "data:" not in out and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("name", ["w.pth", "w.safetensors", "w.bin", "w.pt"])
def test_a_file_that_is_no_checkpoint_is_said_to_be_so(tmp_path, name):
  """Not "pip install torch": the file is not a checkpoint at all, and we say so."""
  from models import torch_convert  # pylint: disable=g-import-not-at-top
  path = tmp_path / name
  path.write_text("these are not weights\n")
  with pytest.raises(torch_convert.ConversionError, match="is not a (PyTorch checkpoint|"
                     "safetensors file)") as e:
    torch_convert.load_state_dict(str(path))
  assert "pip install" not in str(e.value) and "\n" not in str(e.value)


def test_merge_keeps_auxiliary_heads_the_file_lacks():
  """torchvision's GoogLeNet files may lack aux1/aux2 (OPTIONAL_HEADS): those stay as
  initialised and are reported once per head; a head only partly there, or any other
  missing module, is still an error."""
  rng = np.random.default_rng(0)
  leaf = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
  ours = {"conv": {"kernel": leaf(3, 3, 3, 4)}, "fc": {"kernel": leaf(4, 10)},
          "aux1": {"fc1": {"kernel": leaf(4, 8)}, "fc2": {"kernel": leaf(8, 10)}}}
  stats = {"bn": {"mean": leaf(4)}, "aux1": {"bn": {"mean": leaf(8)}}}
  theirs = {"params": {"conv": {"kernel": leaf(3, 3, 3, 4)}, "fc": {"kernel": leaf(4, 10)}},
            "batch_stats": {"bn": {"mean": leaf(4)}}}
  params, new_stats, fresh = pretrained.merge_into(ours, stats, theirs, 10)
  assert fresh == ["params['aux1']", "batch_stats['aux1']"]
  np.testing.assert_array_equal(params["aux1"]["fc2"]["kernel"], ours["aux1"]["fc2"]["kernel"])
  np.testing.assert_array_equal(params["conv"]["kernel"], theirs["params"]["conv"]["kernel"])
  np.testing.assert_array_equal(new_stats["aux1"]["bn"]["mean"], stats["aux1"]["bn"]["mean"])
  partial = {"params": {**theirs["params"], "aux1": {"fc1": {"kernel": leaf(4, 8)}}},
             "batch_stats": theirs["batch_stats"]}
  with pytest.raises(pretrained.PretrainedError, match="missing.*aux1.*fc2"):
    pretrained.merge_into(ours, stats, partial, 10)
  no_conv = {"params": {"fc": theirs["params"]["fc"]}, "batch_stats": theirs["batch_stats"]}
  with pytest.raises(pretrained.PretrainedError, match="missing.*conv"):
    pretrained.merge_into(ours, stats, no_conv, 10)
