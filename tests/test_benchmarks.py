"""benchmarks/throughput.py: a tiny run's numbers agree with each other, its torch
modules match our parameter counts, its plot draws the ratios it measured, and bad input
is one line with exit status 2; benchmarks/conv_layers.py finds a network's convolutions
and BatchNorms, writes what it timed as JSON and draws it."""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import analysis
import models
from benchmarks import throughput

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _num_params(name: str, shape) -> int:
  model = models.create_model(name, num_classes=10)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                                jax.numpy.zeros((1, *shape)), train=False))
  return sum(x.size for x in jax.tree.leaves(variables["params"]))


def test_tiny_run_reports_consistent_numbers(tmp_path, capsys):
  out = tmp_path / "speed.md"
  assert throughput.main(["--models", "lenet5_modern/batch=8", "--warmup", "1",
                          "--windows", "2", "--window_steps", "2", "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "| lenet5_modern |" in printed and "ours img/s" in out.read_text()
  assert (tmp_path / "speed.png").stat().st_size > 0  # the plot beside the table
  record = json.loads((tmp_path / "speed.json").read_text())
  assert record["xla_flags"] == os.environ.get("XLA_FLAGS", "")  # results depend on them
  assert record["glibc_tunables"] == os.environ.get("GLIBC_TUNABLES", "")  # and on these
  (row,) = record["rows"]
  assert (row["batch"], row["image_size"], row["optimizer"]) == (8, 28, "adamw")
  assert row["images_per_s"] > 0 and row["step_s"] > 0 and row["compile_s"] >= 0
  assert len(row["windows_s"]) == 2 and all(t > 0 for t in row["windows_s"])
  assert math.isclose(row["images_per_s"], row["batch"] / row["step_s"], rel_tol=1e-9)
  assert math.isclose(row["tflops"], 6 * row["macs_per_image"] * row["images_per_s"] / 1e12,
                      rel_tol=1e-9)
  # analysis/'s count, and by hand: conv1 24*24*20*25, conv2 8*8*50*500,
  # fc1 800*500, fc2 500*10.
  model = models.create_model("lenet5_modern", num_classes=10)
  assert row["macs_per_image"] == analysis.count_macs(model, (1, 28, 28, 1)) == 2_293_000


@pytest.mark.parametrize("name,shape,builder", [
    ("resnet20", (32, 32, 3), lambda t: throughput.torch_cifar_resnet(t, 20)),
    ("resnet56", (32, 32, 3), lambda t: throughput.torch_cifar_resnet(t, 56)),
    ("lenet5_modern", (28, 28, 1), lambda t: throughput.torch_lenet5_modern(t)),
])
def test_torch_modules_match_our_parameter_counts(name, shape, builder):
  torch = pytest.importorskip("torch")
  module = builder(torch)
  assert sum(p.numel() for p in module.parameters()) == _num_params(name, shape)
  x = torch.zeros(2, shape[2], shape[0], shape[1])
  assert tuple(module(x).shape) == (2, 10)


@pytest.mark.parametrize("argv,words", [
    (["--model", "resnet20", "--batch", "0"], "--batch must be positive"),
    (["--model", "resnet20", "--image_size", "-3"], "--image_size must be positive"),
    (["--model", "resnet20", "--dtype", "float16"], "--dtype must be one of"),
    (["--models", "resnet20/batch=x"], "batch must be an integer"),
    (["--models", "resnet20/size=32"], "is not one of batch=..."),
    (["--config", "configs/nope.py"], "config file not found"),
    (["--model", "resnet20", "--config.no_such_field=1"], "unknown config key"),
])
def test_bad_input_is_one_line_and_status_2(argv, words, capsys):
  assert throughput.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert words in err and "\n" not in err


def test_argparse_errors_are_one_line_and_status_2(capsys):
  with pytest.raises(SystemExit) as e:
    throughput.main(["--model", "resnet20", "--windows", "0"])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err == "error: --windows must be at least 1, got 0"


def _row(name, images_per_s, eager=None, compiled=None):
  row = dict(name=name, image_size=32, batch=8, platform="cpu", dtype="float32",
             images_per_s=images_per_s)
  if eager is not None:
    row.update(ours_over_torch_eager=eager, ours_over_torch_compile=compiled)
  return row


def test_plot_draws_each_invocations_ratios_per_model(tmp_path, capsys):
  one, two = tmp_path / "one.json", tmp_path / "two.json"
  one.write_text(json.dumps({"rows": [_row("resnet20", 200.0, 0.4, 0.3),
                                      _row("lenet5", 900.0, 0.7, 1.2)]}))
  two.write_text(json.dumps({"rows": [_row("lenet5", 1000.0, 0.8, 1.3)]}))
  png = tmp_path / "both.png"
  assert throughput.main(["--plot", f"{one}=default", f"{two}=flag", "--out", str(png)]) == 0
  assert png.stat().st_size > 0 and str(png) in capsys.readouterr().out
  # The same runs, drawn: one bar series per invocation and torch mode, a model's bar
  # missing where that invocation did not time it.
  runs = [("default", json.loads(one.read_text())["rows"]),
          ("flag", json.loads(two.read_text())["rows"])]
  assert throughput.plot(runs, str(tmp_path / "again.png")) == {
      "default / eager": [0.4, 0.7], "default / torch.compile": [0.3, 1.2],
      "flag / eager": [None, 0.8], "flag / torch.compile": [None, 1.3]}
  # Without torch figures: ours in images/s.
  assert throughput.plot([("", [_row("resnet20", 200.0)])], str(tmp_path / "ours.png")) == {
      "images/s": [200.0]}


@pytest.mark.parametrize("argv,words", [
    (["--plot", "/no/such.json"], "--plot /no/such.json: not a JSON file that --out wrote"),
    (["--plot", "benchmarks/results/cpu_throughput.json", "--out", "x.md"],
     "with --plot, give a .png file"),
])
def test_plot_bad_input_is_one_line(argv, words, capsys, monkeypatch):
  monkeypatch.chdir(ROOT)
  assert throughput.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert words in err and "\n" not in err


def test_unknown_model_from_the_command_line():
  proc = subprocess.run([sys.executable, "benchmarks/throughput.py", "--model", "resnet5O"],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "resnet5O" in lines[0], proc.stderr


def test_conv_layers_finds_every_convolution_of_resnet20():
  from benchmarks import conv_layers  # pylint: disable=g-import-not-at-top
  convs = conv_layers.conv_shapes("resnet20", 2, (32, 32, 3))
  # The stem, 3 stages of 3 blocks x 2 convs (option A: no projection convs) = 19.
  assert sum(c["count"] for c in convs) == 19
  by_shape = {(c["input"], c["kernel"], c["strides"]): c["count"] for c in convs}
  assert by_shape[((2, 32, 32, 3), (3, 3, 3, 16), (1, 1))] == 1
  assert by_shape[((2, 32, 32, 16), (3, 3, 16, 16), (1, 1))] == 6
  assert by_shape[((2, 32, 32, 16), (3, 3, 16, 32), (2, 2))] == 1
  assert by_shape[((2, 8, 8, 64), (3, 3, 64, 64), (1, 1))] == 5


@pytest.mark.parametrize("formulation", ["shifted_matmul", "im2col", "onednn"])
def test_conv_layers_formulations_equal_the_convolution(formulation):
  from benchmarks import conv_layers  # pylint: disable=g-import-not-at-top
  from tests.test_kernels import needs_onednn  # pylint: disable=g-import-not-at-top
  if formulation == "onednn" and needs_onednn.args[0]:
    pytest.skip(needs_onednn.kwargs["reason"])
  rng = np.random.default_rng(0)
  for strides, padding, shape in [((1, 1), ((1, 1), (1, 1)), (2, 7, 6, 3)),
                                  ((2, 2), ((0, 1), (1, 0)), (2, 8, 7, 3))]:
    conv = {"strides": strides, "padding": padding, "groups": 1}
    x = rng.standard_normal(shape).astype(np.float32)
    k = rng.standard_normal((3, 3, 3, 5)).astype(np.float32)
    want = conv_layers.formulated(conv)(x, k)
    got = conv_layers.formulated(conv, formulation)(x, k)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_conv_layers_finds_every_batchnorm_of_resnet20():
  from benchmarks import conv_layers  # pylint: disable=g-import-not-at-top
  norms = conv_layers.norm_shapes("resnet20", 2, (32, 32, 3))
  # One BatchNorm after each of the 19 convolutions: the stem's and 6 more at 32x32, 6
  # at 16x16 and 6 at 8x8 (each stage's first conv strides down).
  assert {(n["input"], n["epsilon"]): n["count"] for n in norms} == {
      ((2, 32, 32, 16), 1e-5): 7, ((2, 16, 16, 32), 1e-5): 6, ((2, 8, 8, 64), 1e-5): 6}


def test_conv_layers_bad_input_is_one_line(capsys):
  from benchmarks import conv_layers  # pylint: disable=g-import-not-at-top
  assert conv_layers.main(["--image_shape", "32,32"]) == 2
  assert conv_layers.main(["--model", "resnet21"]) == 2
  assert conv_layers.main(["--formulation", "winograd"]) == 2
  assert conv_layers.main(["--model", "mobilenet_v1", "--image_shape", "32,32,3",
                           "--formulation", "im2col"]) == 2
  assert conv_layers.main(["--norms", "--formulation", "im2col"]) == 2
  assert conv_layers.main(["--norms", "--model", "lenet5", "--image_shape", "32,32,1"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 6 and "H,W,C" in err[0] and "resnet21" in err[1], err
  assert "'winograd' is not one of" in err[2] and "groups=" in err[3], err
  assert "--norms times the BatchNorms" in err[4], err
  assert "lenet5 has no BatchNorm" in err[5], err


def _conv_row(count, ours, torch=None):
  return {"input": [2, 8, 8, 4], "kernel": [3, 3, 4, 4], "strides": [1, 1],
          "padding": [[1, 1], [1, 1]], "groups": 1, "count": count,
          "ours": dict(zip(("fwd", "dgrad", "wgrad"), ours)),
          "torch": dict(zip(("fwd", "dgrad", "wgrad"), torch)) if torch else {}}


def test_conv_layers_out_writes_the_numbers_and_their_plot(tmp_path, capsys):
  from benchmarks import conv_layers  # pylint: disable=g-import-not-at-top
  out = tmp_path / "conv.md"
  assert conv_layers.main(["--model", "lenet1989", "--image_shape", "16,16,1", "--batch",
                           "2", "--repeats", "1", "--out", str(out)]) == 0
  record = json.loads((tmp_path / "conv.json").read_text())
  assert (tmp_path / "conv.png").stat().st_size > 0
  # The JSON holds the table's rows: LeNet-1989's two convolutions, each timed each way.
  table = [line for line in out.read_text().splitlines() if line.startswith("| 2x")]
  assert record["kind"] == "convolutions" and len(record["rows"]) == len(table) == 2
  for row, line in zip(record["rows"], table):
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[0] == "x".join(map(str, row["input"])) and int(cells[3]) == row["count"]
    assert [float(c) for c in cells[4:7]] == [round(row["ours"][d], 2)
                                              for d in ("fwd", "dgrad", "wgrad")]
  assert "conv.json" in capsys.readouterr().out


def test_conv_layers_plot_stacks_each_direction_times_its_count(tmp_path, capsys):
  from benchmarks import conv_layers  # pylint: disable=g-import-not-at-top
  one = {"kind": "convolutions", "model": "m", "batch": 2, "torch": "2.13.0",
         "rows": [_conv_row(3, (1.0, 2.0, 4.0), (0.5, 0.5, 1.0))]}
  two = {"kind": "convolutions", "model": "m", "batch": 2, "torch": None,
         "rows": [_conv_row(3, (1.0, 1.0, 1.0))]}
  drawn = conv_layers.plot([("a", one), ("b", two)], str(tmp_path / "p.png"))
  # Each bar: its direction's milliseconds times the count; no torch bar where torch
  # was not timed.
  assert drawn == {"a ours": [[3.0, 6.0, 12.0]], "a torch 2.13.0": [[1.5, 1.5, 3.0]],
                   "b ours": [[3.0, 3.0, 3.0]]}
  norms = {"kind": "norms", "model": "m", "batch": 2, "torch": None,
           "rows": [{"input": [2, 8, 8, 4], "epsilon": 1e-5, "count": 2,
                     "ours": {"fwd": 1.0, "fwd+bwd": 3.5}, "torch": {}}]}
  # A BatchNorm's backward is its fwd+bwd less its forward.
  assert conv_layers.plot([("", norms)], str(tmp_path / "n.png")) == {"ours": [[2.0, 5.0]]}
  # From the files, one plot; two kinds in one plot, or a file --out did not write, are
  # one line and status 2.
  for name, record in (("one", one), ("norms", norms)):
    (tmp_path / f"{name}.json").write_text(json.dumps(record))
  assert conv_layers.main(["--plot", f"{tmp_path / 'one.json'}=a",
                           "--out", str(tmp_path / "f.png")]) == 0
  assert (tmp_path / "f.png").stat().st_size > 0
  for argv, words in (([str(tmp_path / "one.json"), str(tmp_path / "norms.json")],
                       "hold convolutions and norms"),
                      (["/no/such.json"], "not a JSON file that --out wrote"),
                      ([str(tmp_path / "one.json"), "--norms"],
                       "--plot times nothing and draws what the files hold; drop --norms"),
                      ([str(tmp_path / "one.json"), "--out", "x.md"], "give a .png")):
    capsys.readouterr()
    assert conv_layers.main(["--plot", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err, err


HLO = """HloModule m, entry_computation_layout={(f32[2,4]{1,0})->f32[4,2]{1,0}}

%fused_computation (p: f32[2,4]) -> f32[4,2] {
  %p = f32[2,4]{1,0} parameter(0)
  ROOT %t = f32[4,2]{1,0} transpose(%p), dimensions={1,0}
}

ENTRY %main.7 (x.1: f32[2,4]) -> (f32[4,2], f32[2,4]) {
  %x.1 = f32[2,4]{1,0} parameter(0)
  %transpose_copy_fusion.3 = f32[4,2]{0,1} fusion(%x.1), kind=kLoop, calls=%fused_computation
  %transpose_copy_fusion = f32[4,2]{0,1} fusion(%x.1), kind=kLoop, calls=%fused_computation
  %add.2 = f32[2,4]{1,0} add(%x.1, %x.1)
  ROOT %tuple.1 = (f32[4,2]{1,0}, f32[2,4]{1,0}) tuple(%transpose_copy_fusion.3, %add.2)
}
"""


def test_entry_ops_counts_the_entry_computation_only():
  from benchmarks import conv_layers  # pylint: disable=g-import-not-at-top
  ops = conv_layers.entry_ops(HLO)
  assert {op: dict(c) for op, c in ops.items()} == {
      "parameter": {"f32[2,4]": 1}, "transpose_copy_fusion": {"f32[4,2]": 2},
      "add": {"f32[2,4]": 1}, "tuple": {"(f32[4,2], f32[2,4])": 1}}


def test_hlo_ops_of_a_real_gradient(tmp_path, capsys):
  """The compiled gradient takes every variable and the batch as entry parameters."""
  from benchmarks import conv_layers  # pylint: disable=g-import-not-at-top
  ops = conv_layers.entry_ops(conv_layers.gradient_hlo("lenet5_modern", 2, (28, 28, 1)))
  assert sum(ops["parameter"].values()) == 8 + 1  # 4 layers' kernel and bias, the batch
  assert ops["parameter"]["f32[2,28,28,1]"] == 1
  listing = tmp_path / "ops.txt"
  assert conv_layers.main(["--model", "lenet5_modern", "--batch", "2", "--image_shape",
                           "28,28,1", "--hlo_ops", "--out", str(listing)]) == 0
  out = capsys.readouterr().out
  assert "lenet5_modern, batch 2:" in out and "  parameter: " in out, out
  assert listing.read_text() == out
  assert conv_layers.main(["--hlo_ops", "--formulation", "im2col"]) == 2
  assert conv_layers.main(["--hlo_ops", "--norms"]) == 2
  assert conv_layers.main(["--repeats", "0"]) == 2
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 3 and "at least 1, got 0" in err[2], err
  assert all("drop --formulation, --repeats and --norms" in e for e in err[:2]), err


def test_cpu_dispatch_bad_input_is_one_line(capsys):
  from benchmarks import cpu_dispatch  # pylint: disable=g-import-not-at-top
  assert cpu_dispatch.main(["--sync_every", "-1"]) == 2
  assert "--sync_every must be >= 0" in capsys.readouterr().err
  # Its devices come from XLA_FLAGS, read when jax starts: here jax has started.
  assert cpu_dispatch.main(["--steps", "10"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "run it as its own process" in err
