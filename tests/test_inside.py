"""tools/inside.py: the measures on cases with known answers, and every command on tiny
configs (seconds), with bad input as one line and exit status 2.

The tiny networks are built once per module (fixtures) and the commands are called in
process, so each model is initialised and each measure compiled once."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import analysis
import input_pipeline
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


class DeadHead(nn.Module):
  """Two ReLU layers side by side: biases -100 (never on) and +100 (always on)."""

  @nn.compact
  def __call__(self, x, train=False):
    dead = nn.Dense(5, bias_init=nn.initializers.constant(-100.0), name="fc_dead")(x)
    live = nn.Dense(5, bias_init=nn.initializers.constant(100.0), name="fc_live")(x)
    return nn.relu(dead) + nn.relu(live)


def _net(model, shape):
  return inside.Net("test", "test", model, inside.init_variables(model, shape), None,
                    shape, False)


def _random_net(model, shape, seed=0):
  """``model`` with weights drawn by NumPy (no compiled initialiser): the properties
  tested hold for any weights."""
  rng = np.random.default_rng(seed)
  x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  variables = jax.tree.map(lambda v: 0.3 * rng.standard_normal(v.shape, np.float32), shapes)
  return inside.Net("test", "test", model, variables, None, shape, False)


@pytest.fixture(scope="module")
def l5bg():
  """LeNet-5 with the background class on its tiny config (32x32 synthetic images, 11
  classes), at initialisation: the one network the command tests share."""
  return inside.load_config("configs/lenet5.py:background,tiny")


def test_effective_field_of_constant_convs_is_the_theoretical_field():
  net = _net(ConvStack(depth=3), (15, 15, 1))
  x = np.random.default_rng(0).standard_normal((4, 15, 15, 1), np.float32)
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
  x = np.random.default_rng(1).standard_normal((3, 12, 12, 2), np.float32)
  for stride, jump in ((1, 1), (2, 2)):
    net = _random_net(ConvStack(depth=2, padding="CIRCULAR", stride=stride, constant=False),
                      (12, 12, 2))
    features = lambda v, net=net: inside.capture(net, v)  # compiled inside the measure
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


def test_each_column_of_the_strip_is_the_network_on_its_window(l5bg):
  model = l5bg.model
  strip = np.random.default_rng(3).standard_normal((32, 64, 1), np.float32)
  scores = inside.column_scores(l5bg, strip)
  assert scores.shape == (9, 11)
  field = analysis.analyze(model, (1, 32, 64, 1)).outputs[0]
  jump, size = field.jump[1], field.size[1]
  assert (jump, size) == (4, 32)
  # All 9 windows as one batch: one compiled program.
  windows = jnp.stack([strip[:, slice(*inside.column_window(k, jump, size))]
                       for k in range(9)])
  expected = jax.nn.softmax(model.apply(l5bg.variables, windows, train=False), -1)
  np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6)


def test_never_positive_counts_the_channels_no_image_turns_on():
  y = -np.ones((3, 2, 2, 4), np.float32)
  y[2, 1, 0, 1] = 0.5  # channel 1: on at one position of one image
  y[:, :, :, 2] = 1.0  # channel 2: always on; channels 0 and 3 never
  maps = {"conv": jnp.asarray(y), "fc": jnp.asarray([[0.0, 1.0], [0.0, -1.0]]),
          "scalar": jnp.zeros(3)}
  assert inside.never_positive(maps) == {"conv": 0.5, "fc": 0.5}  # 0 is not positive
  # A layer whose bias holds every pre-activation below 0 (its ReLU all dead), and one
  # that some input turns on.
  net = _net(DeadHead(), (7,))
  x = jax.random.uniform(jax.random.key(1), (16, 7))
  assert inside.never_positive(inside.capture(net, x)) == {"fc_dead": 1.0, "fc_live": 0.0}


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


def test_compose_strip_on_a_grid_puts_each_digit_on_a_window_centre():
  digits = np.zeros((3, 4, 10, 1), np.uint8)
  digits[:, :, 1:8] = 255  # 7 inked columns each
  # Windows of 8 px every 4 px on a 40-px strip: centres 4, 8, ..., 36.
  strip, centres = inside.compose_strip(digits, width=40, gap=3, grid=(4, 4, 36))
  # Pitch: 4 * ceil((7 + 3) / 4) = 12; span 24 of 32, centred by whole steps.
  assert centres == [8, 20, 32]
  inked = np.flatnonzero(strip[..., 0].max(0))
  assert inked.tolist() == [c + d for c in centres for d in range(-3, 4)]
  with pytest.raises(inside.InsideError, match="digits need"):
    inside.compose_strip(digits, width=28, gap=3, grid=(4, 4, 24))


# Rows of ../shared/REFERENCE.md's model table, as written there (the suite runs without
# ../shared).
REFERENCE_ROWS = """\
| model | year | params | GMACs @224 | ImageNet top-1 (source) |
|---|---|---|---|---|
| LeNet-5 (C1 6@28x28, S2 trainable subsampling, C3 16 maps with the paper's partial connection table, S4, C5 120, F6 84, RBF output with fixed codes) | 1998 | 60,000 (C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164) | | MNIST error 0.95%, 0.8% with distortions |
| AlexNet, torchvision single-tower | | 61,100,840 | 0.714 | 56.52 / 79.07 |
| VGG-11 / 13 / 16 / 19 | 2014 | 132,863,336 / 133,047,848 / 138,357,544 / 143,667,240 | 7.61 / 11.31 / 15.47 / 19.63 | 69.02 / 69.93 / 71.59 / 72.38 |
| VGG-11/13/16/19 with BN | 2015 | 132,868,840 / 133,053,736 / 138,365,992 / 143,678,248 | same | 70.37 / 71.59 / 73.36 / 74.22 |
| ResNet-18 / 34 / 50 / 101 / 152 (v1.5: stride on the 3x3) | 2015 | 11,689,512 / 21,797,672 / 25,557,032 / 44,549,160 / 60,192,808 | 1.81 / 3.66 / 4.09 / 7.80 / 11.51 | 69.76 / 73.31 / 76.13 / 77.37 / 78.31 |
| ResNet CIFAR-20 / 32 / 44 / 56 / 110 (He et al. 2015, Sec. 4.2) | 2015 | 0.27M / 0.46M / 0.66M / 0.85M / 1.7M | | CIFAR-10 error 8.75 / 7.51 / 7.17 / 6.97 / 6.43 |
| ConvNeXt-T / S / B / L | 2022 | 28,589,128 / 50,223,688 / 88,591,464 / 197,767,336 | 4.5 / 8.7 / 15.4 / 34.4 | 82.1 / 83.1 / 83.8 / 84.3 (paper) |
"""


def test_read_reference_takes_each_models_row():
  records = {r["model"]: r for r in inside.read_reference(REFERENCE_ROWS)}
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


def _command(what, nets, tmp_path, *argv):
  """The command run in process on already-built networks; its result and PNG checked."""
  args = inside.parse_args([what, *argv, "--output", str(tmp_path / f"{what}.png")])
  result = inside.COMMANDS[what](nets, args)
  assert os.path.getsize(args.output) > 1000
  assert json.loads(json.dumps(result))  # what main writes
  return result


def test_every_command_on_tiny_configs(l5bg, tmp_path, capsys):
  label = "lenet5 (initialisation)"
  filters = _command("filters", [l5bg], tmp_path)[label]
  assert filters["layer"] == "C1" and filters["shape"] == [5, 5, 1, 6]
  features = _command("features", [l5bg], tmp_path, "--layer", "C3")[label]
  assert features["shape"] == [10, 10, 16]
  assert len(features["max"]) == 16
  assert all(lo <= m <= hi for lo, m, hi in zip(features["min"], features["mean"],
                                                 features["max"]))
  rf = _command("rf", [l5bg], tmp_path, "--images", "2")[label]
  assert [(r["layer"], r["theoretical"]) for r in rf] == [
      ("C1", [5, 5]), ("S2", [6, 6]), ("C3", [14, 14]), ("S4", [16, 16])]
  assert rf[0]["support"][2:] == [5, 5]  # C1's gradient fills its 5x5 field exactly
  assert sum(rf[2]["marginal_x"]) == pytest.approx(1.0, abs=1e-2)
  shift = _command("shift", [l5bg], tmp_path, "--images", "4", "--max_shift", "2")[label]
  assert shift["jumps"] == {"C1": 1, "S2": 2, "C3": 2, "S4": 4, "F6": None}
  assert list(shift["cosine"])[-1] == "same class"  # the layers in program order
  assert shift["cosine"]["S2"][0] == pytest.approx(1.0)
  assert shift["cosine"]["same class"][0] == 1.0
  dead = _command("dead", [l5bg], tmp_path, "--images", "4")[label]
  assert dead["images"] == 4
  assert list(dead["never_positive"])[:4] == ["C1", "S2", "C3", "S4"]  # program order
  assert all(0 <= v <= 1 for v in dead["never_positive"].values())
  strip = _command("strip", [l5bg], tmp_path, "--digits", "1")
  assert len(strip["scores"]) == 9 and (strip["window"], strip["jump"]) == (32, 4)
  # The digit sits on an output column's window centre (pixel 16 of its window).
  assert [(c - 16) % 4 for c in strip["digit_centres"]] == [0]
  assert strip["winners"][strip["digit_columns"][0]] in strip["classes"]
  # main: the JSON beside the PNG (the timeline needs no network).
  out = str(tmp_path / "timeline.png")
  reference = tmp_path / "REFERENCE.md"
  reference.write_text(REFERENCE_ROWS)
  code, _, err = _run(capsys, "timeline", "--output", out, "--reference", str(reference))
  assert code == 0, err
  assert os.path.getsize(out) > 1000
  assert json.load(open(out[:-4] + ".json"))["measured"]


def test_bad_input_is_one_line_and_status_two(l5bg, tmp_path, capsys):
  # A workdir of LeNet-5 (the shared network's weights and config), asked for an unknown
  # layer, asked for as LeNet-1989, and then with another model's config.
  import orbax.checkpoint as ocp
  workdir = tmp_path / "run"
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(str(workdir / "checkpoints" / "1" / "default"),
                    {"params": l5bg.variables["params"]})
  checkpointer.wait_until_finished()
  config = ml_collections.ConfigDict(l5bg.config)
  (workdir / "config.json").write_text(config.to_json_best_effort())
  code, _, err = _run(capsys, "features", "--checkpoint", str(workdir), "--layer", "H1",
                      "--output", str(tmp_path / "f.png"))
  assert code == 2 and err.count("\n") == 1
  assert "no layer 'H1'" in err and "C1, S2, C3, S4" in err
  code, _, err = _run(capsys, "filters", "--checkpoint", str(workdir), "--model", "lenet1989")
  assert code == 2 and err.count("\n") == 1
  assert "a checkpoint of 'lenet5', not --model 'lenet1989'" in err
  config.model, config.model_kwargs = "lenet1989", ml_collections.ConfigDict()
  (workdir / "config.json").write_text(config.to_json_best_effort())
  code, _, err = _run(capsys, "filters", "--checkpoint", str(workdir))
  assert code == 2 and err.count("\n") == 1 and "does not fit lenet1989" in err
  code, _, err = _run(capsys, "rf", "--checkpoint", str(tmp_path / "missing"))
  assert code == 2 and err.count("\n") == 1
