"""tools/evaluate.py: a trained run evaluated again gives the run's own figure under the
run's own protocol, and other protocols through the same step."""

import json
import os

import pytest

import train
from kernels import onednn
from tools import evaluate

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs",
                      "speedrun_fashion_mnist.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run") / "sr")
  # The tiny speedrun: 2 epochs of 256 synthetic images, evaluated with six views.
  assert train.main(["--config", f"{CONFIG}:tiny", "--workdir", workdir]) == 0
  with open(os.path.join(workdir, "summary.json")) as f:
    return workdir, json.load(f)


def test_the_runs_own_protocol_gives_the_runs_own_figure(trained, tmp_path, capsys):
  workdir, summary = trained
  out = str(tmp_path / "rows.json")
  assert evaluate.main([workdir, "--eval_modes", "flip_translate,center,flip",
                        "--output", out]) == 0
  with open(out) as f:
    rows = {r["eval_mode"]: r for r in json.load(f)}
  assert rows["flip_translate"]["eval_count"] == 100  # the tiny config's test images
  assert rows["flip_translate"]["eval_top1"] == pytest.approx(summary["eval_top1"], abs=1e-6)
  assert rows["flip_translate"]["eval_loss"] == pytest.approx(summary["eval_loss"], rel=1e-4)
  # Other protocols see other views of the same weights.
  assert rows["center"]["eval_loss"] != pytest.approx(rows["flip_translate"]["eval_loss"],
                                                      rel=1e-4)
  assert rows["flip"]["eval_loss"] != pytest.approx(rows["center"]["eval_loss"], rel=1e-4)
  assert "| flip_translate | top-1" in capsys.readouterr().out


def test_an_unknown_mode_is_one_line(trained, capsys):
  with pytest.raises(SystemExit) as e:
    evaluate.main([trained[0], "--eval_modes", "mirror"])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "'mirror' is not an eval mode" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where,message", [("run", "has no checkpoint of step 12345"),
                                           ("empty", "error:")])
def test_a_missing_checkpoint_is_one_line(trained, where, message, tmp_path, capsys):
  args = [trained[0], "--step", "12345"] if where == "run" else [str(tmp_path)]
  assert evaluate.main(args) == 2
  err = capsys.readouterr().err
  assert message in err and len(err.strip().splitlines()) == 1


def test_default_modes_follow_whether_a_mirror_image_keeps_the_label(trained, tmp_path,
                                                                      capsys):
  # The tiny run's synthetic classes are not mirror-symmetric (flip=False): by default
  # its digits-like data gets the shifted views, not the mirrored ones.
  out = str(tmp_path / "rows.json")
  assert evaluate.main([trained[0], trained[0], "--output", out]) == 0
  with open(out) as f:
    assert [r["eval_mode"] for r in json.load(f)] == ["center", "translate"] * 2
  captured = capsys.readouterr()
  assert "warning" not in captured.err
  assert "mean over 2 runs |      translate" in captured.out
  assert evaluate.main([trained[0], "--eval_modes", "center,flip"]) == 0
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("warning: ") and "mirror images" in err[0]


@pytest.mark.skipif(not onednn.installed(), reason="oneDNN's packages or g++ are missing")
def test_conv_backend_is_the_runs_own_unless_chosen(trained, tmp_path, monkeypatch):
  """The XLA run evaluated with oneDNN's convolutions: the same figures at float32
  rounding, through the same step; a run's config.json that says onednn is evaluated so."""
  workdir, summary = trained
  out = str(tmp_path / "rows.json")
  assert evaluate.main([workdir, "--eval_modes", "flip_translate", "--conv_backend",
                        "onednn", "--output", out]) == 0
  with open(out) as f:
    (row,) = json.load(f)
  assert row["eval_loss"] == pytest.approx(summary["eval_loss"], rel=1e-4)
  assert abs(row["eval_top1"] - summary["eval_top1"]) <= 0.01  # one image of 100 at most
  config, ds, model, variables = evaluate.load_run(workdir)
  calls = []
  real = onednn.conv_general_dilated
  monkeypatch.setattr(onednn, "conv_general_dilated",
                      lambda *a, **k: calls.append(1) or real(*a, **k))
  evaluate.evaluate(config, ds, model, variables, "center")  # the run's own: XLA
  assert not calls
  config.conv_backend = "onednn"  # as a run trained with oneDNN records it
  evaluate.evaluate(config, ds, model, variables, "center")
  assert calls  # every convolution of the traced eval step
