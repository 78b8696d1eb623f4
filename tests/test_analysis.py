"""analysis/ and tools/model_report.py: multiply-adds, parameters, receptive fields.

Everything is traced (jax.eval_shape, jax.make_jaxpr), nothing compiled. The receptive
fields of the real networks are checked against hand derivations from their layer
tables (rf' = rf + (k - 1) jump, jump' = stride jump).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import pytest

import analysis
import models
from tools import model_report


def _rf(field) -> tuple:
  assert isinstance(field, analysis.Field), field
  return field.size, field.jump


# ------------------------------------------------------------------- tiny models


class ConvDense(nn.Module):
  """8x8x2 -> conv 3x3 VALID (6x6x4) -> flatten -> dense 5; one parameter never read."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    self.param("unused", nn.initializers.zeros, (7,))
    x = nn.Conv(4, (3, 3), padding="VALID", name="conv")(x)
    return nn.Dense(5, name="dense")(x.reshape(x.shape[0], -1))


def test_count_macs_by_hand():
  # conv: 6*6 positions x 4 filters x (3*3*2) taps; dense: 144 inputs x 5 outputs.
  assert analysis.count_macs(ConvDense(), (1, 8, 8, 2)) == 6 * 6 * 4 * 18 + 144 * 5
  assert analysis.count_macs(ConvDense(), (3, 8, 8, 2)) == 3 * (6 * 6 * 4 * 18 + 144 * 5)


def test_stages_params_and_macs_by_hand():
  r = analysis.analyze(ConvDense(), (1, 8, 8, 2))
  assert r.params == 76 + 725 + 7 and r.unused_params == 7
  assert [(s.name, s.shape, s.params, s.macs) for s in r.stages] == [
      ("conv", (1, 6, 6, 4), 76, 2592), ("flatten", (1, 144), 0, 0),
      ("dense", (1, 5), 725, 720)]
  assert _rf(r.stages[0].field) == ((3, 3), (1, 1))
  assert r.stages[1].field.size == (None, None)  # flattened into a dense layer: global
  assert [(l.path, l.op) for l in r.layers] == [
      ("conv", "conv 3x3/1"), ("", "flatten"), ("dense", "dense")]


class Branches(nn.Module):
  """Two paths that meet: by addition, by concatenation, and after a stride."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    a = nn.Conv(4, (3, 3), name="a3")(x)                   # rf 3
    b = nn.Conv(4, (1, 1), name="b1")(x)                   # rf 1
    added = a + b                                          # rf 3
    deep = nn.Conv(4, (3, 3), name="a3b")(a)               # rf 5
    cat = jnp.concatenate([deep, b], axis=-1)              # rf 5
    down = nn.Conv(4, (3, 3), strides=2, name="down")(cat)     # 5 + 2 = 7, jump 2
    pooled = nn.max_pool(down, (2, 2), strides=(2, 2))     # 7 + 1*2 = 9, jump 4
    dilated = nn.Conv(4, (3, 3), kernel_dilation=2, name="dil")(pooled)  # 9 + 2*2*4 = 25
    gate = jnp.mean(dilated, axis=(1, 2), keepdims=True)   # squeeze-excite: global
    return added, cat, down, pooled, dilated, dilated * gate


def _fields(module, shape=(1, 16, 16, 3)):
  return analysis.analyze(module, shape).outputs


def test_branches_take_the_largest_field():
  added, cat, down, pooled, dilated, gated = _fields(Branches())
  assert _rf(added) == ((3, 3), (1, 1))
  assert _rf(cat) == ((5, 5), (1, 1))
  assert _rf(down) == ((7, 7), (2, 2))
  assert _rf(pooled) == ((9, 9), (4, 4))
  assert _rf(dilated) == ((25, 25), (4, 4))
  assert gated.size == (None, None) and gated.jump == (4, 4)  # sees all, keeps its grid


class Tokens(nn.Module):
  """ViT's patchify: a 4x4/4 conv, then H and W merged into one token axis."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(8, (4, 4), strides=4, padding="VALID", name="patch")(x)
    t = x.reshape(x.shape[0], -1, x.shape[-1])                         # (n, 16, 8)
    mixed = nn.Dense(8, name="mlp")(t)                                 # per token
    scores = jnp.einsum("bqc,bkc->bqk", mixed, mixed)                  # token pairs
    return mixed, jnp.einsum("bqk,bkc->bqc", nn.softmax(scores), mixed)


def test_tokens_keep_the_patch_field_until_attention():
  mixed, attended = _fields(Tokens())
  assert _rf(mixed) == ((4, 4), (4, 4))
  assert attended.size == (None, None) and attended.jump == (4, 4)


class Unfollowable(nn.Module):
  mode: str

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.mode == "cumsum":
      return jnp.cumsum(x, axis=1)
    # A crop (jump 1) added to a stride-2 map (jump 2) of the same shape.
    return x[:, :8, :8] + nn.Conv(3, (1, 1), strides=2, name="s2")(x)


@pytest.mark.parametrize("mode,reason", [("cumsum", "cumsum"), ("jumps", "strides")])
def test_what_cannot_be_followed_is_unknown(mode, reason):
  (out,) = _fields(Unfollowable(mode))
  assert isinstance(out, analysis.Unknown) and reason in out.reason


class Nested(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = Block(name="block1")(x)
    return Block(name="block2")(x)


class Block(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    y = nn.relu(nn.Conv(4, (3, 3), name="conv_a")(x))
    return x + nn.Conv(4, (3, 3), name="conv_b")(y)


def test_depth_chooses_the_stage_modules():
  shape = (1, 8, 8, 4)
  one = analysis.analyze(Nested(), shape, depth=1)
  assert [(s.name, s.field.size[0]) for s in one.stages] == [("block1", 5), ("block2", 9)]
  two = analysis.analyze(Nested(), shape, depth=2)
  assert [(s.name, s.field.size[0]) for s in two.stages] == [
      ("block1/conv_a", 3), ("block1/conv_b", 5), ("block2/conv_a", 7),
      ("block2/conv_b", 9)]
  assert sum(s.params for s in two.stages) == two.params == 4 * (9 * 4 * 4 + 4)


# ------------------------------------------------------------------ real networks


def test_vgg16_receptive_fields():
  r = analysis.analyze(models.create_model("vgg16", num_classes=1000), (1, 224, 224, 3))
  assert r.params == 138_357_544 and r.macs == 15_470_264_320
  assert _rf(r.layer("conv5_3").field) == ((196, 196), (16, 16))
  assert _rf(r.layer("", "max_pool").field) == ((212, 212), (32, 32))  # after pool5
  convs = [s.field.size[0] for s in r.stages if s.name.startswith("conv")]
  assert convs == [3, 5, 10, 14, 24, 32, 40, 60, 76, 92, 132, 164, 196]
  assert r.stages[1].params == 36_928  # conv1_2: 3*3*64*64 + 64


def test_resnet50_macs_and_final_stride():
  model = models.create_model("resnet50", num_classes=1000)
  macs = analysis.count_macs(model, (1, 224, 224, 3))
  assert macs == 4_089_184_256
  assert abs(macs / 4.09e9 - 1) < 0.005  # torchvision's 4.09 GFLOPS (multiply-adds)
  r = analysis.analyze(model, (1, 224, 224, 3))
  assert r.macs == macs and r.params == 25_557_032 and r.unused_params == 0
  last = [s for s in r.stages if s.name == "stage4_block3"][0]
  # v1.5: the stride-2 3x3 at 4/8/16 adds 2*jump; each bottleneck's 3x3 adds 2*jump.
  assert _rf(last.field) == ((427, 427), (32, 32))
  assert [s.name for s in r.stages[-2:]] == ["global_pool", "fc"]
  assert r.stages[-1].field.size == (None, None)


def test_alexnet_and_lenet_by_hand():
  # AlexNet: 11/4, pool 3/2, 5/1, pool 3/2, 3 x 3/1, pool 3/2.
  r = analysis.analyze(models.create_model("alexnet", num_classes=1000), (1, 224, 224, 3))
  assert _rf(r.layer("conv1").field) == ((11, 11), (4, 4))
  assert _rf(r.layer("conv5").field) == ((163, 163), (16, 16))
  assert _rf(r.layer("", "max_pool").field) == ((195, 195), (32, 32))
  # LeNet-1989: H1 5x5/2, H2 5x5/2 (read through a channel gather and -1 padding).
  r = analysis.analyze(models.create_model("lenet1989", num_classes=10), (1, 16, 16, 1))
  assert [(s.name, _rf(s.field)) for s in r.stages[:2]] == [
      ("H1", ((5, 5), (2, 2))), ("H2", ((13, 13), (4, 4)))]
  assert r.params == 9760


def test_method_scopes_do_not_hide_modules():
  # LeNet-5 runs its layers inside a method: the name stack reads
  # "LeNet5/LeNet5._lenet5_1998/C1".
  r = analysis.analyze(models.create_model("lenet5", num_classes=10), (1, 32, 32, 1))
  assert [s.name for s in r.stages[:6]] == ["C1", "S2", "C3", "S4", "C5", "F6"]
  assert _rf(r.stages[3].field) == ((16, 16), (4, 4))  # 5, pool 2/2, 5, pool 2/2
  assert r.params == 60_000


# --------------------------------------------------------------------------- CLI


def test_cli_prints_the_table(capsys):
  assert model_report.main(["--model", "lenet1989", "--layers"]) == 0
  out = capsys.readouterr().out
  assert "input 16x16x1, 10 classes" in out and "9,760" in out
  h2 = [line.split() for line in out.splitlines() if line.startswith("H2 ")][0]
  assert h2 == ["H2", "4x4x12", "2,592", "38.4K", "13", "4"]
  assert "conv 5x5/2 g3" in out


def test_cli_errors_are_one_line(capsys):
  assert model_report.main(["--model", "vgg61"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: unknown model 'vgg61'") and "vgg16" in err
  assert len(err.strip().splitlines()) == 1
  assert model_report.main(["--model", "alexnet", "--image_size", "32"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: alexnet does not run on a 32x32x3 input")


@pytest.mark.parametrize("name,expected", [
    ("lenet1989", (16, 1, 10)), ("lecun1989_net3", (16, 1, 10)), ("lenet5", (32, 1, 10)),
    ("lenet5_modern", (28, 1, 10)), ("resnet20", (32, 3, 10)), ("resnet50", (224, 3, 1000)),
    ("allcnn_c_maxpool", (32, 3, 10)), ("densenet_bc100_k12", (32, 3, 10)),
    ("densenet121", (224, 3, 1000))])
def test_canonical_inputs(name, expected):
  assert model_report.canonical_input(name) == expected


def test_locally_connected_patch_extraction_is_not_counted():
  """LeCun 1989's net-3 extracts patches with a fixed identity-kernel convolution; only
  its weighted connections are multiply-adds (paper: 1,226 connections with biases)."""
  model = models.create_model("lecun1989_net3", num_classes=10)
  macs = analysis.count_macs(model, (1, 16, 16, 1))
  assert macs == 1136  # 1,226 connections less the 90 biases
  assert analysis.analyze(model, (1, 16, 16, 1)).macs == macs
