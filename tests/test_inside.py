"""tools/inside.py: the measures on cases with known answers, and every command on tiny
configs (seconds), with bad input as one line and exit status 2."""

import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import input_pipeline
from models import analysis, create_model
from tools import inside
from training import config as config_lib


class ConvStack(nn.Module):
  """``depth`` 3x3 convolutions, VALID or circularly padded, stride 1 or ``stride``."""
  depth: int = 3
  padding: str = "VALID"
  stride: int = 1
  constant: bool = True

  @nn.compact
  def __call__(self, x, train=False):
    init = nn.initializers.constant(0.1) if self.constant else nn.initializers.lecun_normal()
    for i in range(self.depth):
      x = nn.Conv(4, (3, 3), strides=self.stride if i == 0 else 1, padding=self.padding,
                  kernel_init=init, name=f"conv{i + 1}")(x)
    return x


def _net(model, shape):
  return inside.Net("test", "test", model, inside.init_variables(model, shape), None,
                    shape, False)


def test_effective_field_of_constant_convs_is_the_theoretical_field():
  net = _net(ConvStack(depth=3), (15, 15, 1))
  x = jax.random.normal(jax.random.key(0), (4, 15, 15, 1))
  rows = inside.erf_table(net, np.asarray(x), most=3)
  assert [r["layer"] for r in rows] == ["conv1", "conv2", "conv3"]
  for r, rf in zip(rows, (3, 5, 7)):
    assert r["theoretical"] == [rf, rf]
    top, left, h, w = r["support"]
    assert (h, w) == (rf, rf)
    # Centred on the centre unit: output (n // 2) of a VALID stack starts at that pixel.
    out = 15 - (rf - 1)
    assert (top, left) == (out // 2, out // 2)
  # Constant weights: the gradient counts the paths from each pixel, per axis the
  # trinomial (1, 3, 6, 7, 6, 3, 1): Luo et al.'s Gaussian-like effective field.
  t = np.array([1, 3, 6, 7, 6, 3, 1.0])
  erf = rows[-1]["erf"][4:11, 4:11]
  np.testing.assert_allclose(erf / erf.max(), np.outer(t, t) / 49, rtol=1e-5)
  assert rows[-1]["effective_95"] == [7, 7]  # the 1/27 tails exceed 2.5% each


def test_circular_convolution_is_exactly_shift_equivariant_and_stride_two_is_not():
  x = jax.random.normal(jax.random.key(1), (3, 12, 12, 2))
  for stride, jump in ((1, 1), (2, 2)):
    net = _net(ConvStack(depth=2, padding="CIRCULAR", stride=stride, constant=False),
               (12, 12, 2))
    features = jax.jit(lambda v, net=net: inside.capture(net, v))
    result = inside.shift_equivariance(features, {"conv1": jump, "conv2": jump}, x, 4,
                                       circular=True)
    for s in range(5):
      exact = s % jump == 0
      for name in ("conv1", "conv2"):
        if exact:
          assert result[name][s] == pytest.approx(1.0, abs=1e-5), (stride, s)
        else:
          assert result[name][s] < 0.99, (stride, s, result[name][s])


def test_frac_roll_interpolates_between_integer_rolls():
  y = jnp.arange(8.0)[None, None, :, None]
  half = inside.frac_roll(y, 0.5, axis=2)
  np.testing.assert_allclose(half[0, 0, 1:, 0], np.arange(8.0)[:-1] + 0.5)
  np.testing.assert_allclose(inside.frac_roll(y, 2.0, axis=2), jnp.roll(y, 2, axis=2))


def test_each_column_of_the_strip_is_the_network_on_its_window():
  model = create_model("lenet5", num_classes=11)
  net = _net(model, (32, 32, 1))
  strip = jax.random.normal(jax.random.key(3), (32, 64, 1))
  scores = inside.column_scores(net, strip)
  assert scores.shape == (9, 11)
  field = analysis.analyze(model, (1, 32, 64, 1)).outputs[0]
  jump, size = field.jump[1], field.size[1]
  assert (jump, size) == (4, 32)
  apply = jax.jit(lambda x: model.apply(net.variables, x, train=False))
  for k in range(9):
    start, stop = inside.column_window(k, jump, size)
    window = apply(strip[None, :, start:stop])
    np.testing.assert_allclose(scores[k], jax.nn.softmax(window[0]), rtol=1e-4, atol=1e-6)


def test_compose_strip_places_digits_apart_and_refuses_too_many():
  digits = np.zeros((2, 4, 10, 1), np.uint8)
  digits[0, :, 2:5] = 255  # 3 inked columns
  digits[1, :, 6:8] = 255  # 2 inked columns
  strip, centres = inside.compose_strip(digits, width=12, gap=3)
  inked = np.flatnonzero(strip[..., 0].max(0))
  assert inked.tolist() == [2, 3, 4, 8, 9]
  assert centres == [3, 9]
  with pytest.raises(inside.InsideError, match="need 8 columns"):
    inside.compose_strip(digits, width=7)


def test_read_reference_takes_each_models_row():
  with open(inside.REFERENCE) as f:
    records = {r["model"]: r for r in inside.read_reference(f.read())}
  assert records["resnet50"] == {"model": "resnet50", "year": 2015, "params": 25_557_032,
                                 "gmacs": 4.09, "top1": 76.13}
  assert records["alexnet_torchvision"]["top1"] == 56.52  # not its top-5
  assert records["vgg16_bn"]["gmacs"] == 15.47  # "same" as VGG-16
  assert records["lenet5"]["params"] == 60_000 and records["lenet5"]["top1"] is None
  assert records["resnet20"]["top1"] is None  # a CIFAR-10 error, not ImageNet
  assert records["convnext_l"]["top1"] == 84.3


def test_measured_numbers_are_the_readmes():
  readme = open(os.path.join(inside.ROOT, "README.md")).read()
  for _, _, accuracy in inside.MEASURED:
    assert f"{100 - accuracy:.2f}%" in readme or f"{accuracy:.2f}%" in readme, accuracy


def test_background_class_adds_blank_and_off_centre_digits():
  ds = input_pipeline.load_dataset("synthetic", synthetic={
      "shape": (28, 28, 1), "num_classes": 10, "num_train": 200, "num_test": 50})
  # Synthetic images have no background: draw "digits" as centred bars on black.
  digit = np.zeros((28, 28, 1), np.uint8)
  digit[6:22, 11:17] = 255
  ds = ds.__class__(**{**ds.__dict__, "train_images": np.repeat(digit[None], 200, 0),
                       "test_images": np.repeat(digit[None], 50, 0)})
  out = input_pipeline.add_background_class(ds)
  assert out.num_classes == 11
  extra = out.train_images[out.train_labels == 10]
  assert len(extra) == 20 and len(out.test_labels) == 55
  ink = extra.max(axis=(1, 3)) > 0  # (n, columns)
  blank = ~ink.any(1)
  assert blank.sum() == 2  # a tenth blank
  # The others are off centre: no ink on the digit's centre columns 13-14, where the
  # centred digit has it.
  assert not ink[~blank][:, 13:15].any()


def test_background_config_has_eleven_classes_and_is_refused_on_the_host_pipeline():
  checked = config_lib.check("configs/lenet5.py:background,tiny")
  assert checked.num_classes == 11
  with pytest.raises(config_lib.ConfigError, match="background_class"):
    config_lib.check("configs/lenet5.py:background,tiny",
                     [("input_pipeline", "host")])


def _run(capsys, *argv):
  code = inside.main(list(argv))
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def test_every_command_on_tiny_configs(tmp_path, capsys):
  for what, extra in (("filters", []),
                      ("features", ["--layer", "H2"]),
                      ("rf", ["--images", "2"]),
                      ("shift", ["--images", "4", "--max_shift", "2"]),
                      ("timeline", [])):
    out = str(tmp_path / f"{what}.png")
    nets = [] if what == "timeline" else ["--config", "configs/lenet1989.py:tiny"]
    code, _, err = _run(capsys, what, *nets, *extra, "--output", out)
    assert code == 0, err
    assert os.path.getsize(out) > 1000
    result = json.load(open(out[:-4] + ".json"))
    assert result
  shift = json.load(open(tmp_path / "shift.json"))["lenet1989 (initialisation)"]
  assert shift["jumps"] == {"H1": 2, "H2": 4}
  assert shift["cosine"]["H1"][0] == pytest.approx(1.0)
  assert shift["cosine"]["same class"][0] == 1.0
  out = str(tmp_path / "strip.png")
  code, _, err = _run(capsys, "strip", "--config", "configs/lenet5.py:tiny", "--digits", "1",
                      "--output", out)
  assert code == 0, err
  strip = json.load(open(out[:-4] + ".json"))
  assert len(strip["scores"]) == 9 and (strip["window"], strip["jump"]) == (32, 4)


def test_bad_input_is_one_line_and_status_two(tmp_path, capsys):
  code, _, err = _run(capsys, "features", "--config", "configs/lenet1989.py:tiny",
                      "--layer", "C3", "--output", str(tmp_path / "f.png"))
  assert code == 2 and err.count("\n") == 1
  assert "no layer 'C3'" in err and "H1, H2" in err
  # A workdir of LeNet-1989, asked for as LeNet-5, and one whose weights are another's.
  import orbax.checkpoint as ocp
  model = create_model("lenet1989", num_classes=10)
  variables = inside.init_variables(model, (16, 16, 1))
  workdir = tmp_path / "run"
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(str(workdir / "checkpoints" / "1" / "default"),
                    {"params": variables["params"]})
  checkpointer.wait_until_finished()
  config = config_lib.load_config("configs/lenet1989.py:tiny")
  (workdir / "config.json").write_text(config.to_json_best_effort())
  code, _, err = _run(capsys, "filters", "--checkpoint", str(workdir), "--model", "lenet5")
  assert code == 2 and err.count("\n") == 1
  assert "a checkpoint of 'lenet1989', not --model 'lenet5'" in err
  config.model, config.model_kwargs = "lenet5", ml_collections.ConfigDict()
  (workdir / "config.json").write_text(config.to_json_best_effort())
  code, _, err = _run(capsys, "filters", "--checkpoint", str(workdir))
  assert code == 2 and err.count("\n") == 1 and "does not fit lenet5" in err
  code, _, err = _run(capsys, "rf", "--checkpoint", str(tmp_path / "missing"))
  assert code == 2 and err.count("\n") == 1
