"""Weights out: models/torch_convert.export (our variables -> a torchvision/timm state
dict, each converter's inverse) and tools/convert_weights.py --export; and the layouts
read besides each family's converter (a GoogLeNet without auxiliary heads, timm's VGG
names, timm's ResNetV2, timm's legacy SE-ResNets refused).

Every family round-trips ours -> state dict (in memory and through .safetensors) -> our
converter, bit for bit, on small networks whose variables are filled by jax.eval_shape and
NumPy (nothing compiles). Where torch and torchvision/timm are installed, the exported
state dicts also load strictly into the library's model and give our logits; those tests
skip elsewhere (CI). The layout tests build their state dicts from our own export, renamed
the way the other library names them, so they run without torch.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from models import torch_convert as tc
from tests import torch_reference as tr
from tools import convert_weights
from training import pretrained

# Small networks of each family: (model options, input size).
SMALL = {
    "resnet18": (dict(stage_sizes=(1, 1, 1, 1), width=8), 32),
    "resnet50": (dict(stage_sizes=(1, 2, 1, 1), width=8), 32),
    "se_resnet50": (dict(stage_sizes=(1, 1, 1, 1), width=16), 32),
    "resnet50_v2": (dict(stage_sizes=(1, 2, 1, 1), width=8), 32),
    "vgg11": (dict(width=0.125, hidden_units=128), 32),  # widths / 8: 8 .. 64, hidden 16
    "vgg11_bn": (dict(width=0.125, hidden_units=128), 32),
    "alexnet_torchvision": (dict(width=0.125, hidden_units=128), 64),
    "densenet121": (dict(growth_rate=4, block_config=(1, 2, 1, 1), num_init_features=8), 32),
    "googlenet": ({}, 32),
    "mobilenet_v1_025": ({}, 32),
    "mobilenet_v2_050": ({}, 32),
    "convnext_t": (dict(depths=(1, 2, 1, 1), dims=(8, 16, 16, 16)), 32),
    "vit_ti16": (dict(patch_size=8, hidden_size=16, num_layers=2, num_heads=2, mlp_dim=32,
                      image_size=32), 32),
}


def random_variables(model, size: int, seed: int = 0) -> dict:
  """``model``'s variable tree with random values of a sane scale (kernels ~ 1/sqrt(fan
  in), BN variances and scales in [0.5, 1.5]): eval_shape, no compilation."""
  abstract = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = getattr(path[-1], "key", "")
    if name in ("var", "scale"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(leaf.dtype)
    scale = 1 / np.sqrt(np.prod(leaf.shape[:-1])) if name == "kernel" else 0.1
    return (rng.standard_normal(leaf.shape) * scale).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def small(name: str, seed: int = 0, **overrides):
  kwargs, size = SMALL[name]
  model = models.create_model(name, num_classes=10, **{**kwargs, **overrides})
  return model, random_variables(model, size, seed), size


def assert_bitwise(got: dict, want: dict) -> None:
  got_leaves = dict(jax.tree_util.tree_leaves_with_path(got))
  want_leaves = dict(jax.tree_util.tree_leaves_with_path(want))
  assert set(map(jax.tree_util.keystr, got_leaves)) == set(
      map(jax.tree_util.keystr, want_leaves))
  got_by_key = {jax.tree_util.keystr(k): v for k, v in got_leaves.items()}
  for path, w in want_leaves.items():
    g = np.asarray(got_by_key[jax.tree_util.keystr(path)])
    w = np.asarray(w)
    assert g.dtype == w.dtype and g.shape == w.shape, jax.tree_util.keystr(path)
    assert g.tobytes() == w.tobytes(), jax.tree_util.keystr(path)


def without(variables: dict, *heads: str) -> dict:
  return {col: {k: v for k, v in tree.items() if k not in heads}
          for col, tree in variables.items()}


def test_every_family_with_a_converter_exports():
  assert tc.list_exportable() == tc.list_convertible()
  for name in tc.list_convertible():
    assert tc.export_layouts(name)


@pytest.mark.parametrize("name", list(SMALL))
def test_round_trip_is_bitwise(name, tmp_path):
  """ours -> state dict -> our converter gives the same variables bit for bit, in every
  layout the family exports to, in memory and through a .safetensors file."""
  model, variables, size = small(name)
  for source in tc.export_layouts(name):
    sd = tc.export(name, variables, model=model, source=source, verify=False)
    assert all(isinstance(a, np.ndarray) and a.flags.c_contiguous for a in sd.values())
    back = tc.convert(name, sd, model=model, input_shape=(1, size, size, 3), notes=[])
    assert_bitwise(back, variables)
    pytest.importorskip("safetensors")
    path = str(tmp_path / f"{name}_{source}.safetensors")
    tc.save_safetensors(path, sd)
    loaded = tc.load_state_dict(path)
    assert sorted(loaded) == sorted(sd)  # safetensors orders the keys
    assert all(loaded[k].dtype == a.dtype and loaded[k].tobytes() == a.tobytes()
               for k, a in sd.items())
    assert_bitwise(tc.convert(name, loaded, model=model, notes=[]), variables)
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_export_names_what_does_not_fit():
  model, variables, _ = small("resnet18")
  with pytest.raises(tc.ConversionError, match="torchvision or timm's layout, not 'caffe'"):
    tc.export("resnet18", variables, source="caffe")
  with pytest.raises(tc.ConversionError, match="timm's layout, not 'torchvision'"):
    tc.export("se_resnet50", small("se_resnet50")[1], source="torchvision")
  extra = {**variables, "params": {**variables["params"], "head2": {"kernel": np.ones((2, 2))}}}
  with pytest.raises(tc.ConversionError, match="1 of our variables have no place.*head2"):
    tc.export("resnet18", extra)
  with pytest.raises(tc.ConversionError, match="no PyTorch export for model 'lenet5'"):
    tc.export("lenet5", variables)
  # A v1 ResNet has the same tensors but another network: the converter's check refuses it.
  v1 = models.create_model("resnet18_v1", num_classes=10, **SMALL["resnet18"][0])
  with pytest.raises(tc.ConversionError, match="v1.5"):
    tc.export("resnet18", variables, model=v1)
  assert tc.num_classes("resnet18", variables) == 10


# ---------------------------------------------------------------- GoogLeNet's aux heads


def test_googlenet_without_aux_heads_converts_and_says_so(tmp_path, capsys):
  """torchvision deletes aux1/aux2 when it loads its weights with aux_logits=False: such a
  state dict converts, leaving our heads out (to be initialised), and says which."""
  model, variables, size = small("googlenet")
  no_aux = models.create_model("googlenet", num_classes=10, aux_logits=False)
  sd = tc.export("googlenet", without(variables, "aux1", "aux2"), model=no_aux)
  assert not any(k.startswith(("aux1.", "aux2.")) for k in sd)
  rest = without(variables, "aux1", "aux2")

  notes = []  # a model with aux heads: converted without them, checked against the rest
  got = tc.convert("googlenet", sd, model=model, input_shape=(1, size, size, 3), notes=notes)
  assert_bitwise(got, rest)
  assert len(notes) == 1 and "no auxiliary heads" in notes[0] and "aux1 and aux2" in notes[0]
  notes = []  # a model without them, or none: the same, with nothing (or that) to say
  assert_bitwise(tc.convert("googlenet", sd, model=no_aux, notes=notes), rest)
  assert notes == []
  assert_bitwise(tc.convert("googlenet", sd, notes=notes), rest)
  assert "converted without them" in notes[0]
  with pytest.warns(tc.ConversionNote, match="no auxiliary heads"):
    tc.convert("googlenet", sd, model=model)
  # A checkpoint with heads, for a model without: they are dropped, and said to be.
  notes = []
  full = tc.export("googlenet", variables, model=model)
  assert_bitwise(tc.convert("googlenet", full, model=no_aux, notes=notes), rest)
  assert "dropped" in notes[0] and "aux1, aux2" in notes[0]

  # Fine-tuning (train.py's --config.init_from): the heads stay as initialised, reported.
  ours = random_variables(model, size, seed=3)
  params, stats, fresh = pretrained.merge_into(ours["params"], ours["batch_stats"], got, 10)
  assert fresh == ["params['aux1']", "params['aux2']", "batch_stats['aux1']",
                   "batch_stats['aux2']"]
  np.testing.assert_array_equal(params["aux1"]["fc1"]["kernel"],
                                ours["params"]["aux1"]["fc1"]["kernel"])
  np.testing.assert_array_equal(params["conv1"]["conv"]["kernel"],
                                got["params"]["conv1"]["conv"]["kernel"])
  np.testing.assert_array_equal(stats["aux2"]["conv"]["bn"]["var"],
                                ours["batch_stats"]["aux2"]["conv"]["bn"]["var"])
  pytest.importorskip("safetensors")
  path = str(tmp_path / "googlenet.safetensors")
  tc.save_safetensors(path, sd)
  loaded = pretrained.load_variables(path, "googlenet", model, (size, size, 3))
  assert_bitwise(loaded, rest)
  assert "note:" in capsys.readouterr().out


# ------------------------------------------------------------------- timm's VGG names


def timm_vgg_names(sd: dict, channels: int) -> dict:
  """torchvision's VGG state dict renamed as timm's _filter_fn renames it."""
  out = {}
  for k, v in sd.items():
    if k.startswith("classifier.0."):
      k, v = k.replace("classifier.0", "pre_logits.fc1"), (
          v.reshape(-1, channels, 7, 7) if k.endswith("weight") else v)
    elif k.startswith("classifier.3."):
      k, v = k.replace("classifier.3", "pre_logits.fc2"), (
          v.reshape(v.shape[0], -1, 1, 1) if k.endswith("weight") else v)
    elif k.startswith("classifier.6."):
      k = k.replace("classifier.6", "head.fc")
    out[k] = v
  return out


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_timm_vgg_names_convert(name):
  model, variables, _ = small(name)
  tv = tc.export(name, variables, model=model, source="torchvision")
  channels = variables["params"]["conv5_1"]["kernel"].shape[-1]
  timm_sd = timm_vgg_names(tv, channels)
  assert timm_sd["pre_logits.fc1.weight"].shape == (16, channels, 7, 7)
  assert timm_sd["pre_logits.fc2.weight"].shape == (16, 16, 1, 1)
  assert_bitwise(tc.convert(name, timm_sd, model=model), variables)
  exported = tc.export(name, variables, model=model, source="timm")
  assert list(exported) == list(timm_sd)
  assert all(np.array_equal(exported[k], timm_sd[k]) for k in exported)
  bad = dict(timm_sd, **{"pre_logits.fc1.weight": np.zeros((16, channels * 49, 1, 1))})
  with pytest.raises(tc.ConversionError, match="7x7 conv") as e:
    tc.convert(name, bad)
  assert "\n" not in str(e.value)
  unused = dict(timm_sd, **{"head.extra": np.zeros(3)})
  with pytest.raises(tc.ConversionError, match="head.extra"):
    tc.convert(name, unused)


# ------------------------------------------------------------------- timm's ResNetV2


def test_timm_resnet_v2_names_and_refusals():
  model, variables, size = small("resnet50_v2")
  sd = tc.export("resnet50_v2", variables, model=model)
  # timm's names: no stem norm; the first unit's norm1 is our stem's bn1; a 1x1 conv head.
  assert "stem.conv.weight" in sd and "stem.norm.weight" not in sd
  np.testing.assert_array_equal(sd["stages.0.blocks.0.norm1.weight"],
                                variables["params"]["bn1"]["scale"])
  assert "stages.0.blocks.0.downsample.conv.weight" in sd
  assert "stages.0.blocks.1.downsample.conv.weight" not in sd
  assert sd["head.fc.weight"].shape == (10, 256, 1, 1) and "norm.running_var" in sd
  assert_bitwise(tc.convert("resnet50_v2", sd, model=model, input_shape=(1, size, size, 3)),
                 variables)
  flat_head = dict(sd, **{"head.fc.weight": sd["head.fc.weight"][:, :, 0, 0]})
  assert_bitwise(tc.convert("resnet50_v2", flat_head), variables)  # a linear head too

  def one_line(match, name, state_dict, **kw):
    with pytest.raises(tc.ConversionError, match=match) as e:
      tc.convert(name, state_dict, **kw)
    assert "\n" not in str(e.value)

  # The stem BN moves past the max pool in timm: equal only with scales >= 0.
  negative = dict(sd, **{"stages.0.blocks.0.norm1.weight":
                         -sd["stages.0.blocks.0.norm1.weight"]})
  one_line("8 of its 8 channels are negative", "resnet50_v2", negative)
  flipped = jax.tree.map(np.copy, variables)
  flipped["params"]["bn1"]["scale"][0] = -1.0
  with pytest.raises(tc.ConversionError, match="1 channels with a negative scale"):
    tc.export("resnet50_v2", flipped)
  # Wrong model or layout, each said in one line.
  one_line("into resnet50_v2, not 'resnet50'", "resnet50", sd)
  tv = tc.export("resnet50", small("resnet50")[1])
  one_line("post-activation", "resnet50_v2", tv)
  one_line("v2", "resnet50_v2", sd, model=models.create_model("resnet50", num_classes=10))
  bit = {k: v for k, v in sd.items() if not k.endswith(("running_mean", "running_var"))}
  one_line("GroupNorm", "resnet50_v2", bit)
  deep = {("stem.conv1.weight" if k == "stem.conv.weight" else k): v for k, v in sd.items()}
  one_line("deep-stem", "resnet50_v2", deep)
  # timm's basic-block ResNetV2 projects stage 1's first unit (64 -> 64); ours does not.
  basic_model, basic, _ = small("resnet50_v2", block="basic")
  with pytest.raises(tc.ConversionError, match="another layout"):
    tc.export("resnet18_v2", basic)
  basic["params"]["stage1_block1"]["proj_conv"] = {"kernel": np.ones((1, 1, 8, 8), np.float32)}
  basic_sd = tc.export("resnet18_v2", basic, verify=False)
  one_line("has a projection shortcut.*keeps the identity.*another layout", "resnet18_v2",
           basic_sd)
  assert basic_model.block == "basic"


# ------------------------------------------------------- timm's legacy SE-ResNet refused


def legacy_names(sd: dict) -> dict:
  """timm's seresnet* state dict in timm's legacy SENet names (legacy_seresnet*)."""
  out = {}
  for k, v in sd.items():
    if k.startswith(("conv1.", "bn1.")):
      k = f"layer0.{k}"
    k = k.replace(".se.", ".se_module.")
    out["last_linear." + k.split(".")[-1] if k.startswith("fc.") else k] = v
  return out


def test_legacy_seresnet_is_another_layout_in_one_line():
  model, variables, _ = small("se_resnet50")
  sd = legacy_names(tc.export("se_resnet50", variables, model=model))
  assert "layer0.conv1.weight" in sd and "last_linear.weight" in sd
  assert any(".se_module.fc1." in k for k in sd)
  for name, m in (("se_resnet50", model), ("resnet50", None), ("se_resnet18", None)):
    with pytest.raises(tc.ConversionError, match="legacy SENet layout.*another layout") as e:
      tc.convert(name, sd, model=m)
    assert "\n" not in str(e.value) and "seresnet" in str(e.value)


def test_legacy_seresnet_from_timm_is_refused():
  torch, _ = tr.import_torchvision()
  timm = pytest.importorskip("timm")
  net = timm.create_model("legacy_seresnet18", num_classes=10)
  with pytest.raises(tc.ConversionError, match="legacy SENet layout"):
    tc.convert("se_resnet18", net.state_dict())
  del torch


# --------------------------------------------------------------- the same logits in torch


def _torch_model(torch, tv, timm, name: str, source: str, variables: dict):
  """The library's model of the same small architecture, built without weights."""
  nn = torch.nn
  p = variables["params"]
  if name in ("resnet18", "resnet50", "se_resnet50"):  # at width 64 (TORCH_WIDTHS)
    layers = list(SMALL[name][0]["stage_sizes"])
    if source == "torchvision":
      block = tv.models.resnet.BasicBlock if name == "resnet18" else tv.models.resnet.Bottleneck
      return tv.models.resnet.ResNet(block, layers, num_classes=10)
    from timm.models import resnet  # pylint: disable=g-import-not-at-top
    block = resnet.BasicBlock if name == "resnet18" else resnet.Bottleneck
    return resnet.ResNet(block, layers, num_classes=10,
                         block_args=dict(attn_layer="se") if name.startswith("se_") else None)
  if name == "resnet50_v2":
    from timm.layers import BatchNormAct2d, create_conv2d  # pylint: disable=g-import-not-at-top
    from timm.models.resnetv2 import ResNetV2  # pylint: disable=g-import-not-at-top
    return ResNetV2(layers=[1, 2, 1, 1], channels=(32, 64, 128, 256), stem_chs=8,
                    conv_layer=create_conv2d, norm_layer=BatchNormAct2d, num_classes=10)
  if name.startswith("vgg"):
    bn = name.endswith("_bn")
    cfg = []
    for s in range(1, 6):
      cfg += [p[f"conv{s}_{i}"]["kernel"].shape[-1] for i in range(1, 5) if f"conv{s}_{i}" in p]
      cfg.append("M")
    hidden, channels = p["fc7"]["kernel"].shape[0], cfg[-2]
    if source == "torchvision":
      net = tv.models.vgg.VGG(tv.models.vgg.make_layers(cfg, batch_norm=bn), num_classes=10,
                              init_weights=False)
      net.classifier = nn.Sequential(nn.Linear(channels * 49, hidden), nn.ReLU(), nn.Dropout(),
                                     nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(),
                                     nn.Linear(hidden, 10))
      return net
    from timm.layers import ClassifierHead  # pylint: disable=g-import-not-at-top
    from timm.models import vgg  # pylint: disable=g-import-not-at-top
    net = vgg.VGG(cfg, num_classes=10, norm_layer=nn.BatchNorm2d if bn else None)
    net.pre_logits = vgg.ConvMlp(channels, hidden, 7, mlp_ratio=1.0)
    net.head = ClassifierHead(hidden, 10)
    return net
  if name == "alexnet_torchvision":
    c = [p[f"conv{i}"]["kernel"].shape[-1] for i in range(1, 6)]
    hidden = p["fc7"]["kernel"].shape[0]
    net = tv.models.AlexNet(num_classes=10)
    for j, (cin, cout, k, stride, pad) in zip((0, 3, 6, 8, 10), (
        (3, c[0], 11, 4, 2), (c[0], c[1], 5, 1, 2), (c[1], c[2], 3, 1, 1),
        (c[2], c[3], 3, 1, 1), (c[3], c[4], 3, 1, 1))):
      net.features[j] = nn.Conv2d(cin, cout, k, stride, pad)
    net.classifier[1] = nn.Linear(c[4] * 36, hidden)
    net.classifier[4] = nn.Linear(hidden, hidden)
    net.classifier[6] = nn.Linear(hidden, 10)
    return net
  if name == "densenet121":
    kw = SMALL[name][0]
    if source == "timm":
      return timm.models.densenet.DenseNet(growth_rate=kw["growth_rate"],
                                           block_config=kw["block_config"], num_classes=10)
    return tv.models.DenseNet(growth_rate=kw["growth_rate"], block_config=kw["block_config"],
                              num_init_features=kw["num_init_features"], num_classes=10)
  if name == "googlenet":
    return tv.models.GoogLeNet(num_classes=10, aux_logits=True, transform_input=False,
                               init_weights=False)
  if name == "mobilenet_v1_025":
    from timm.models import efficientnet  # pylint: disable=g-import-not-at-top
    return efficientnet._gen_mobilenet_v1("mobilenetv1_025", 0.25, num_classes=10)  # pylint: disable=protected-access
  if name == "mobilenet_v2_050":
    if source == "timm":
      return timm.create_model("mobilenetv2_050", num_classes=10)
    return tv.models.MobileNetV2(num_classes=10, width_mult=0.5)
  if name == "convnext_t":
    kw = SMALL[name][0]
    if source == "timm":
      return timm.models.convnext.ConvNeXt(depths=kw["depths"], dims=kw["dims"],
                                           num_classes=10)
    from torchvision.models.convnext import CNBlockConfig  # pylint: disable=g-import-not-at-top
    dims = list(kw["dims"]) + [None]
    return tv.models.ConvNeXt([CNBlockConfig(dims[i], dims[i + 1], d)
                               for i, d in enumerate(kw["depths"])], num_classes=10)
  if name == "vit_ti16":
    if source == "timm":
      return timm.models.vision_transformer.VisionTransformer(
          img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0,
          num_classes=10)
    return tv.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2,
                                       num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10)
  raise AssertionError(f"no PyTorch reference for {name} in {source}")


# Neither library's ResNet narrows its 64-channel stem: those run at full width.
TORCH_WIDTHS = {"resnet18": 64, "resnet50": 64, "se_resnet50": 64}


@pytest.mark.parametrize("name,source", [(name, source) for name in SMALL
                                         for source in tc.export_layouts(name)])
def test_exported_weights_give_our_logits_in_pytorch(name, source):
  """The export loads strictly into torchvision's or timm's model and gives our logits."""
  torch, tv = tr.import_torchvision()
  timm = pytest.importorskip("timm") if source == "timm" else None
  widths = {"width": TORCH_WIDTHS[name]} if name in TORCH_WIDTHS else {}
  model, variables, size = small(name, **widths)
  sd = tc.export(name, variables, model=model, source=source)
  net = _torch_model(torch, tv, timm, name, source, variables)
  net.load_state_dict({k: torch.from_numpy(a) for k, a in sd.items()}, strict=True)
  x = np.random.default_rng(1).standard_normal((2, size, size, 3)).astype(np.float32)
  ref = tr.torch_logits(torch, net, x)
  ours = np.asarray(model.apply(variables, x, train=False))
  assert ours.shape == ref.shape == (2, 10)
  assert tr.max_relative_error(ours, ref) < 1e-4


# -------------------------------------------------------------- convert_weights --export


def fake_run(workdir, name: str, steps=(1, 2), ema: bool = True) -> dict:
  """A train.py workdir as train.py writes it: config.json and checkpoints (TrainState)
  of ``steps``, each with other weights. Returns {step: (variables, ema variables)}."""
  from training import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from training import steps as steps_lib  # pylint: disable=g-import-not-at-top
  kwargs, _ = SMALL[name]
  os.makedirs(workdir)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump({"model": name, "model_kwargs": kwargs, "dtype": "float32"}, f)
  checkpointer = checkpoint_lib.Checkpointer(str(workdir), keep=5)
  saved = {}
  for step in steps:
    _, raw, _ = small(name, seed=step)
    _, avg, _ = small(name, seed=100 + step)
    state = steps_lib.TrainState(step=jnp.asarray(step, jnp.int32), params=raw["params"],
                                 batch_stats=raw.get("batch_stats", {}),
                                 opt_state={"mu": raw["params"]}, ema=avg if ema else {})
    checkpointer.save(step, state)
    saved[step] = (raw, avg)
  checkpointer.close()
  return saved


def read_back(path: str, name: str) -> dict:
  return tc.convert(name, tc.load_state_dict(path), notes=[])


def test_cli_exports_a_run_and_a_converted_directory(tmp_path, capsys):
  pytest.importorskip("safetensors")
  saved = fake_run(tmp_path / "run", "resnet18")
  out = str(tmp_path / "r18.safetensors")
  assert convert_weights.main(["--export", str(tmp_path / "run"), "--output", out]) == 0
  printed = capsys.readouterr().out
  assert "exported resnet18 (10 classes) in torchvision's layout" in printed
  assert "bit for bit" in printed
  assert_bitwise(read_back(out, "resnet18"), saved[2][0])  # the latest step
  assert "layer1.0.conv1.weight" in tc.load_state_dict(out)
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  with safe_open(out, "np") as f:
    assert f.metadata() == {"format": "pt", "model": "resnet18", "layout": "torchvision"}

  ema = str(tmp_path / "ema.safetensors")
  assert convert_weights.main(["--export", str(tmp_path / "run"), "--step", "1", "--ema",
                               "--format", "timm", "--out", ema]) == 0
  assert_bitwise(read_back(ema, "resnet18"), saved[1][1])

  # A converted directory (convert_weights.py --output) needs --model.
  model, variables, _ = small("vit_ti16")
  pretrained.save_variables(str(tmp_path / "vit"), variables)
  vit = str(tmp_path / "vit.safetensors")
  assert convert_weights.main(["--export", str(tmp_path / "vit"), "--output", vit]) == 2
  assert "pass --model" in capsys.readouterr().err
  assert convert_weights.main(["--export", str(tmp_path / "vit"), "--model", "vit_ti16",
                               "--format", "timm", "--output", vit]) == 0
  assert "pos_embed" in tc.load_state_dict(vit)
  assert_bitwise(tc.convert("vit_ti16", tc.load_state_dict(vit), model=model), variables)


def test_cli_export_errors_are_one_line(tmp_path, capsys):
  pytest.importorskip("safetensors")
  fake_run(tmp_path / "run", "alexnet_torchvision", steps=(3,), ema=False)
  run = str(tmp_path / "run")

  def fails(args, match):
    assert convert_weights.main(args) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1, err

  out = str(tmp_path / "a.safetensors")
  fails(["--export", run, "--format", "timm", "--output", out],
        "exports in torchvision's layout, not 'timm'")
  fails(["--export", run, "--step", "7", "--output", out], "no checkpoint of step 7")
  fails(["--export", run, "--ema", "--output", out], "kept no EMA weights")
  fails(["--export", run, "--model", "vgg11", "--output", out], "trained 'alexnet_torchvision'")
  fails(["--export", str(tmp_path / "nothing"), "--model", "vgg11", "--output", out],
        "is not a directory")
  os.makedirs(tmp_path / "empty" / "checkpoints")
  fails(["--export", str(tmp_path / "empty"), "--output", out], "has no checkpoint")
  (tmp_path / "taken.safetensors").write_bytes(b"")
  fails(["--export", run, "--output", str(tmp_path / "taken.safetensors")], "already exists")
  assert not os.path.exists(out)
  assert convert_weights.main(["--export", run, "--output", out]) == 0
  capsys.readouterr()
  with pytest.raises(SystemExit):
    convert_weights.main(["--export", run, "--output", str(tmp_path / "x.pth")])
  assert "FILE.safetensors" in capsys.readouterr().err
