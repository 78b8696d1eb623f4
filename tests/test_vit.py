"""Vision Transformer: models/vit.py and configs/vit_b16.py.

Counts and shapes go through jax.eval_shape. What executes without torch is tiny (hidden
size 16-32, 1-2 blocks, 16x16 or 32x32 inputs). The torch tests compare with torchvision's
and timm's ViT-B/16 at 224 (batch 1: E_pos fixes the size) and with tiny torchvision and
timm ViTs at other sizes, which check position-embedding resampling against both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models.vit  # noqa: F401  (registers the vit_* names)
from models import create_model, torch_convert
from models.vit import (EncoderBlock, VisionTransformer, interpolation_matrix,
                        resample_pos_embed)
from tests.model_testing import (abstract_init, compile_at_level_0, count_params,
                                 train_on_fixed_batch)
from tests.torch_reference import import_torchvision, max_relative_error, state_dict_numpy

IMAGENET = (1, 224, 224, 3)
# A tiny ViT: 16x16 inputs, 4x4 patches (a 4x4 grid), D = 16, two blocks, two heads.
TINY = dict(patch_size=4, hidden_size=16, num_layers=2, num_heads=2, mlp_dim=32, image_size=16)


def _apply(model, variables, x, train=False, rng=None):
  rngs = {"dropout": rng} if rng is not None else {}
  return model.apply(variables, jnp.asarray(x), train=train, rngs=rngs)


def _random_params(model, shape, seed=0, x=None):
  """The model's variables with random values (LayerNorm scales near 1), without running
  its init: ``x`` (an example input) or ``shape`` (NHWC) gives the tree."""
  rng = np.random.default_rng(seed)

  def fill(path, a):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']"):
      return rng.normal(0.0, np.prod(a.shape[:-1]) ** -0.5, a.shape)
    if name.endswith("['scale']"):
      return rng.uniform(0.5, 1.5, a.shape)
    return rng.normal(0.0, 0.5 if ("pos_embed" in name or "cls" in name) else 0.1, a.shape)

  if x is None:
    tree = abstract_init(model, shape)
  else:
    tree = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  return jax.tree_util.tree_map_with_path(lambda p, a: jnp.float32(fill(p, a)), tree)


def _timm_state_dict(d=16, depth=2, patch=4, grid=4, classes=10, cls=True, seed=0):
  """A random state dict with timm's names and shapes (no torch needed)."""
  rng = np.random.default_rng(seed)
  r = lambda *s: rng.normal(0.0, 0.3, s).astype(np.float32)
  sd = {"patch_embed.proj.weight": r(d, 3, patch, patch), "patch_embed.proj.bias": r(d),
        "pos_embed": r(1, grid * grid + cls, d), "norm.weight": 1 + r(d), "norm.bias": r(d),
        "head.weight": r(classes, d), "head.bias": r(classes)}
  if cls:
    sd["cls_token"] = r(1, 1, d)
  for i in range(depth):
    b = f"blocks.{i}"
    sd.update({f"{b}.norm1.weight": 1 + r(d), f"{b}.norm1.bias": r(d),
               f"{b}.attn.qkv.weight": r(3 * d, d), f"{b}.attn.qkv.bias": r(3 * d),
               f"{b}.attn.proj.weight": r(d, d), f"{b}.attn.proj.bias": r(d),
               f"{b}.norm2.weight": 1 + r(d), f"{b}.norm2.bias": r(d),
               f"{b}.mlp.fc1.weight": r(2 * d, d), f"{b}.mlp.fc1.bias": r(2 * d),
               f"{b}.mlp.fc2.weight": r(d, 2 * d), f"{b}.mlp.fc2.bias": r(d)})
  return sd


# ------------------------------------------------------------------ parameter counts


@pytest.mark.parametrize("name,expected", [
    ("vit_ti16", 5_717_416),  # timm vit_tiny_patch16_224
    ("vit_ti32", 6_131_560),  # timm VisionTransformer(patch 32, D 192, 12 x 3 heads)
    ("vit_s16", 22_050_664),  # timm vit_small_patch16_224
    ("vit_s32", 22_878_952),  # timm vit_small_patch32_224
    ("vit_b16", 86_567_656),  # REFERENCE.md: torchvision vit_b_16 = timm vit_base_patch16_224
    ("vit_b32", 88_224_232),  # torchvision vit_b_32 = timm vit_base_patch32_224
    ("vit_l16", 304_326_632),  # torchvision vit_l_16 = timm vit_large_patch16_224
    ("vit_l32", 306_535_400),  # torchvision vit_l_32 (timm's default has no head)
])
def test_param_counts(name, expected):
  v = abstract_init(create_model(name, num_classes=1000), IMAGENET)
  assert set(v) == {"params"}  # no BatchNorm statistics
  assert count_params(v["params"]) == expected


def test_layer_shapes_and_options():
  p = abstract_init(create_model("vit_b16", num_classes=1000), IMAGENET)["params"]
  assert p["patch_embed"]["kernel"].shape == (16, 16, 3, 768)
  assert p["cls_token"].shape == (1, 1, 768) and p["pos_embed"].shape == (1, 197, 768)
  assert p["block1"]["attn"]["qkv"]["kernel"].shape == (768, 3 * 768)
  assert p["block12"]["mlp"]["fc1"]["kernel"].shape == (768, 3072)
  assert "block13" not in p and p["head"]["kernel"].shape == (768, 1000)
  # The paper's pre-training head: + a D x D tanh layer.
  rep = abstract_init(create_model("vit_b16", num_classes=1000, representation_size=768),
                      IMAGENET)["params"]
  assert count_params(rep) - count_params(p) == 768 * 768 + 768
  # Global average pooling: no class token, no class-token row in E_pos.
  gap = abstract_init(create_model("vit_b16", num_classes=1000, pool="gap"), IMAGENET)["params"]
  assert "cls_token" not in gap and gap["pos_embed"].shape == (1, 196, 768)
  # image_size sizes E_pos: 384 / 16 = 24.
  big = abstract_init(create_model("vit_b16", num_classes=1000, image_size=384),
                      (1, 384, 384, 3))["params"]
  assert big["pos_embed"].shape == (1, 1 + 24 * 24, 768)


def test_outputs_and_bfloat16():
  model = create_model("vit_ti32", num_classes=7, dtype=jnp.bfloat16, dropout=0.1,
                       drop_path_rate=0.1)
  v = abstract_init(model, (2, 224, 224, 3))
  assert {x.dtype for x in jax.tree_util.tree_leaves(v)} == {jnp.dtype(jnp.float32)}
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  for train in (False, True):
    y = jax.eval_shape(lambda v, x: _apply(model, v, x, train, jax.random.key(0)), v, x)
    assert y.shape == (2, 7) and y.dtype == jnp.bfloat16


def test_input_size_errors():
  model = create_model("vit_b16", num_classes=10)
  v = abstract_init(model, IMAGENET)
  x = jax.ShapeDtypeStruct((1, 384, 384, 3), jnp.float32)
  with pytest.raises(ValueError, match="24x24 patch grid.*image_size=384.*resample"):
    jax.eval_shape(lambda v, x: _apply(model, v, x), v, x)
  with pytest.raises(ValueError, match="multiple of the patch size 16"):
    abstract_init(model, (1, 200, 200, 3))
  with pytest.raises(ValueError, match="pool"):
    abstract_init(create_model("vit_b16", num_classes=10, pool="max"), IMAGENET)
  with pytest.raises(ValueError, match="weight_init"):
    abstract_init(create_model("vit_b16", num_classes=10, weight_init="he"), IMAGENET)
  # dynamic_img_size: the same 224 variables run at 384 and on non-square inputs.
  dynamic = create_model("vit_b16", num_classes=10, dynamic_img_size=True)
  for shape in ((1, 384, 384, 3), (1, 160, 320, 3)):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    assert jax.eval_shape(lambda v, x: _apply(dynamic, v, x), v, x).shape == (1, 10)


# ------------------------------------------------------------------ resampling


def test_resample_identity_and_shapes():
  rng = np.random.default_rng(0)
  pe = rng.normal(size=(1, 1 + 14 * 14, 8)).astype(np.float32)
  assert np.array_equal(resample_pos_embed(pe, 14), pe)
  for grid in (24, (7, 7), (10, 20)):
    out = resample_pos_embed(pe, grid)
    h, w = (grid, grid) if isinstance(grid, int) else grid
    assert out.shape == (1, 1 + h * w, 8) and isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out[:, 0], pe[:, 0])  # class token kept
  # 2-D input, no prefix, a non-square old grid; JAX input under jit gives JAX output.
  out = resample_pos_embed(pe[0, 1:], (7, 28), 0, old_grid=(14, 14))
  assert out.shape == (7 * 28, 8)
  back = jax.jit(lambda p: resample_pos_embed(p, (14, 14), 0, old_grid=(7, 28)))(out)
  assert isinstance(back, jax.Array) and back.shape == (196, 8)
  with pytest.raises(ValueError, match="old_grid"):
    resample_pos_embed(pe[:, :-1], 8)  # 195 grid rows: not square


@pytest.mark.parametrize("rule", [
    dict(),  # timm: bicubic, antialiased, half-pixel centres
    dict(align_corners=True, antialias=False),  # torchvision
    dict(method="bilinear", antialias=False),
    dict(method="bilinear", align_corners=True, antialias=False),  # the paper's zoom
])
@pytest.mark.parametrize("old,new", [(4, 8), (8, 4), (14, 24), (24, 14), (5, 5)])
def test_resample_constant_grid_is_exact(rule, old, new):
  # Every interpolation row sums to 1: a constant embedding stays constant.
  w = interpolation_matrix(old, new, **rule)
  np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
  pe = np.concatenate([np.full((1, 1, 3), -7.0), np.full((1, old * old, 3), 2.5)], 1)
  out = resample_pos_embed(pe.astype(np.float32), new, **rule)
  np.testing.assert_allclose(out[0, 1:], 2.5, rtol=1e-6)
  assert out[0, 0, 0] == -7.0


def test_resample_linear_grid():
  # A linear ramp over the grid: bilinear with aligned corners (the paper's zoom)
  # reproduces it exactly everywhere; antialiased bicubic (Keys a = -0.5, third-order)
  # reproduces it away from the border when enlarging.
  old, new = 6, 11
  ramp = lambda n, a: np.linspace(0.0, 1.0, n)[:, None] * 3 + np.linspace(0.0, 1.0, n) * a
  pe = ramp(old, -2.0).reshape(1, old * old, 1).astype(np.float32)
  out = resample_pos_embed(pe, new, 0, method="bilinear", align_corners=True, antialias=False)
  np.testing.assert_allclose(out.reshape(new, new), ramp(new, -2.0), atol=1e-6)
  # Half-pixel centres: output pixel i sits at input coordinate (i + 0.5) * old/new - 0.5.
  pos = (np.arange(new) + 0.5) * old / new - 0.5
  expected = (pos[:, None] * 3 + pos[None, :] * -2.0) / (old - 1)
  out = resample_pos_embed(pe, new, 0).reshape(new, new)
  inner = slice(3, new - 3)  # all 4 taps inside the grid
  np.testing.assert_allclose(out[inner, inner], expected[inner, inner], atol=1e-5)


def test_converter_resamples_for_another_image_size():
  # A 16x16-trained checkpoint (4x4 grid) into a model for 32x32 (8x8 grid).
  sd = _timm_state_dict()
  model = VisionTransformer(num_classes=10, **dict(TINY, image_size=32))
  v = torch_convert.convert("vit_ti16", sd, model=model, input_shape=(2, 32, 32, 3))
  pos = v["params"]["pos_embed"]
  assert pos.shape == (1, 65, 16)
  np.testing.assert_array_equal(pos[0, 0], sd["pos_embed"][0, 0])
  np.testing.assert_allclose(pos, resample_pos_embed(sd["pos_embed"], 8), rtol=1e-6)
  x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
  # The same as the 16x16 model resampling on the fly (both use timm's rule).
  native = torch_convert.convert("vit_ti16", sd, model=VisionTransformer(num_classes=10, **TINY))
  dynamic = VisionTransformer(num_classes=10, dynamic_img_size=True, **TINY)
  both = lambda v, native, x: (_apply(model, v, x), _apply(dynamic, native, x))
  y, y_dynamic = map(np.asarray, compile_at_level_0(both, v, native, x)(v, native, x))
  assert y.shape == (2, 10) and np.all(np.isfinite(y)) and not np.allclose(y[0], y[1])
  np.testing.assert_allclose(y_dynamic, y, rtol=1e-5, atol=1e-5)
  # Strict conversion: a pooling mismatch, another kind of model, a stray key.
  with pytest.raises(torch_convert.ConversionError, match="pool='token'"):
    torch_convert.convert("vit_ti16", sd, model=VisionTransformer(pool="gap", **TINY))
  with pytest.raises(torch_convert.ConversionError, match="models.vit"):
    torch_convert.convert("vit_ti16", sd, model=create_model("resnet20", num_classes=10))
  with pytest.raises(torch_convert.ConversionError, match="fc_norm"):
    torch_convert.convert("vit_ti16", dict(sd, **{"fc_norm.weight": np.ones(16)}))
  no_class_row = dict(sd, pos_embed=sd["pos_embed"][:, 1:])
  with pytest.raises(torch_convert.ConversionError, match="no_embed_class"):
    torch_convert.convert("vit_ti16", no_class_row)
  assert set(models.vit.VIT_NAMES) <= set(torch_convert.list_convertible())


# ------------------------------------------------------------------ training behaviour


def test_drop_path_and_dropout_are_identity_in_eval():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 5, 16)), jnp.float32)
  block = lambda rate, dropout=0.0: EncoderBlock(num_heads=2, mlp_dim=32, drop_path=rate,
                                                 dropout=dropout, attention_dropout=dropout)
  v_block = _random_params(block(0.0), None, x=x)
  # The linear schedule starts at 0: a one-block ViT is deterministic in training even at
  # drop_path_rate 0.9; with two blocks the second drops its branches.
  vit = lambda layers: VisionTransformer(num_classes=3, drop_path_rate=0.9,
                                         **dict(TINY, num_layers=layers))
  img = jnp.asarray(np.random.default_rng(1).normal(size=(4, 16, 16, 3)), jnp.float32)
  v_vit = {n: _random_params(vit(n), img.shape) for n in (1, 2)}

  def outputs(v_block, v_vit, x, img):
    rng = {"dropout": jax.random.key(3)}
    return dict(
        ref=block(0.0).apply(v_block, x, train=False),
        eval=block(0.5, dropout=0.3).apply(v_block, x, train=False),
        train=block(0.5).apply(v_block, x, train=True, rngs=rng),
        train0=block(0.0).apply(v_block, x, train=True, rngs=rng),
        **{f"vit{n}_{mode}": vit(n).apply(v_vit[n], img, train=mode == "train", rngs=rng)
           for n in (1, 2) for mode in ("train", "eval")})

  run = compile_at_level_0(outputs, v_block, v_vit, x, img)
  out = jax.tree.map(np.asarray, run(v_block, v_vit, x, img))
  np.testing.assert_array_equal(out["eval"], out["ref"])
  # In training, rate 0 changes nothing (no dropout here); rate 0.5 drops or rescales
  # (x 1 / (1 - 0.5)) each example's branches.
  np.testing.assert_allclose(out["train0"], out["ref"], rtol=1e-6, atol=1e-6)
  assert (np.abs(out["train"] - out["ref"]).max(axis=(1, 2)) > 1e-3).all()
  np.testing.assert_allclose(out["vit1_train"], out["vit1_eval"], rtol=1e-6, atol=1e-6)
  assert not np.allclose(out["vit2_train"], out["vit2_eval"])


def test_train_steps_fit_a_fixed_batch():
  model = VisionTransformer(num_classes=10, **TINY)
  initial, losses, final = train_on_fixed_batch(model, (16, 16, 3), steps=8, batch=16)
  assert losses[0] == pytest.approx(np.log(10), rel=1e-5)  # the paper's zero head
  assert all(b < a for a, b in zip(losses, losses[1:])), losses
  assert losses[-1] < losses[0] - 0.05, losses
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), initial.params, final.params)
  assert all(jax.tree.leaves(changed))  # every tensor trains, the zero-init head too


def test_weight_inits():
  x = jnp.zeros((1, 16, 16, 3))
  models_ = {init: VisionTransformer(num_classes=10, weight_init=init,
                                     **dict(TINY, hidden_size=64))
             for init in ("paper", "trunc_normal")}
  init = lambda k: {n: m.init(k, x, train=False)["params"] for n, m in models_.items()}
  key = jax.random.key(0)
  params = jax.tree.map(np.asarray, compile_at_level_0(init, key)(key))
  for name, cls_zero, head_zero in (("paper", True, True), ("trunc_normal", False, False)):
    p = params[name]
    assert np.all(p["cls_token"] == 0) == cls_zero
    assert np.all(p["head"]["kernel"] == 0) == head_zero
    assert 0.01 < np.std(p["pos_embed"]) < 0.03
    qkv = p["block1"]["attn"]["qkv"]["kernel"]
    # paper: Xavier-uniform per 64 x 64 q/k/v matrix, std sqrt(2 / 128); else
    # trunc_normal(0.02) cut at 2 std (std 0.88 x 0.02).
    assert np.std(qkv) == pytest.approx(0.125 if name == "paper" else 0.02 * 0.88, rel=0.1)


# ------------------------------------------------------------------ torchvision, timm


def _randomize(torch, module, seed=0):
  """Random weights everywhere, zero-initialised ones (head, biases, class token) too,
  with LayerNorm scales near 1, so the equivalence test exercises every tensor."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in module.named_parameters():
      if name.endswith(("class_token", "cls_token", "pos_embedding", "pos_embed")):
        p.copy_(torch.randn(p.shape, generator=g) * 0.5)
      elif p.ndim >= 2:
        p.copy_(torch.randn(p.shape, generator=g) * p[0].numel() ** -0.5)
      elif name.endswith("weight"):
        p.copy_(torch.rand(p.shape, generator=g) + 0.5)
      else:
        p.copy_(torch.randn(p.shape, generator=g) * 0.1)
  return module.eval()


def _compare(torch, ref, model, variables, x_nhwc):
  with torch.no_grad():
    expected = ref(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))))
  expected = expected.numpy()
  ours = compile_at_level_0(lambda v, x: _apply(model, v, x), variables, x_nhwc)(
      variables, x_nhwc)
  return max_relative_error(ours, expected), expected


@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_vit_b16_equivalence(source):
  torch, tv = import_torchvision()
  timm = pytest.importorskip("timm") if source == "timm" else None
  with torch.device("meta"):  # no default init: _randomize sets every tensor
    if source == "torchvision":
      ref = tv.models.vit_b_16(weights=None)
    else:
      ref = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=1000)
  ref = ref.to_empty(device="cpu")
  assert not list(ref.buffers())
  _randomize(torch, ref)
  model = create_model("vit_b16", num_classes=1000)
  variables = torch_convert.convert("vit_b16", state_dict_numpy(ref), model=model,
                                    input_shape=IMAGENET)
  x = np.random.default_rng(0).normal(size=IMAGENET).astype(np.float32)
  err, expected = _compare(torch, ref, model, variables, x)
  print(f"vit_b16 vs {source} at 224: max relative error {err:.2e}")
  assert np.std(expected) > 0.5 and err < 1e-4


def test_tiny_timm_vit_at_other_sizes():
  """timm's own resampling (dynamic_img_size: bicubic, antialiased) at 32x32 and 8x8 of a
  16x16 model equals our converter's (fixed image_size) and our dynamic_img_size; and
  timm's global-average-pool ViT equals pool='gap'."""
  torch, _ = import_torchvision()
  pytest.importorskip("timm")
  from timm.models.vision_transformer import VisionTransformer as TimmViT
  torch.manual_seed(0)
  kw = dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2,
            num_classes=10)
  ref = _randomize(torch, TimmViT(dynamic_img_size=True, **kw))
  sd = state_dict_numpy(ref)
  rng = np.random.default_rng(0)
  for size in (32, 8):
    x = rng.normal(size=(2, size, size, 3)).astype(np.float32)
    model = VisionTransformer(num_classes=10, **dict(TINY, image_size=size))
    v = torch_convert.convert("vit_ti16", sd, model=model, input_shape=x.shape)
    err, _ = _compare(torch, ref, model, v, x)
    dynamic = VisionTransformer(num_classes=10, dynamic_img_size=True, **TINY)
    v16 = torch_convert.convert("vit_ti16", sd, model=dynamic)
    err_dynamic, _ = _compare(torch, ref, dynamic, v16, x)
    print(f"tiny timm ViT (16x16 weights) at {size}x{size}: converter {err:.2e}, "
          f"dynamic {err_dynamic:.2e}")
    assert err < 1e-4 and err_dynamic < 1e-4
  gap = _randomize(torch, TimmViT(class_token=False, global_pool="avg", fc_norm=False, **kw))
  model = VisionTransformer(num_classes=10, pool="gap", **TINY)
  v = torch_convert.convert("vit_ti16", state_dict_numpy(gap), model=model,
                            input_shape=(2, 16, 16, 3))
  x = rng.normal(size=(2, 16, 16, 3)).astype(np.float32)
  assert _compare(torch, gap, model, v, x)[0] < 1e-4


def test_tiny_torchvision_vit_resampled_and_pre_logits():
  """torchvision's interpolate_embeddings (bicubic, align_corners=True) to 32x32 of a
  16x16 model with a pre-logits layer equals our converter's resampling."""
  torch, tv = import_torchvision()
  from torchvision.models.vision_transformer import VisionTransformer as TvViT
  from torchvision.models.vision_transformer import interpolate_embeddings
  torch.manual_seed(0)
  kw = dict(patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
            num_classes=10, representation_size=12)
  small = _randomize(torch, TvViT(image_size=16, **kw))
  sd16 = state_dict_numpy(small)
  big = TvViT(image_size=32, **kw).eval()
  big.load_state_dict(interpolate_embeddings(32, 4, small.state_dict()))
  model = VisionTransformer(num_classes=10, representation_size=12, **dict(TINY, image_size=32))
  v = torch_convert.convert("vit_ti16", sd16, model=model, input_shape=(2, 32, 32, 3))
  x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  err, _ = _compare(torch, big, model, v, x)
  print(f"tiny torchvision ViT (16x16 weights) at 32x32: {err:.2e}")
  assert err < 1e-4


# ------------------------------------------------------------------ config


@pytest.mark.parametrize("arg", [None, "deit", "tiny", "deit,tiny"])
def test_config(arg):
  from training import config as config_lib
  from training import optim
  c = config_lib.load_config("configs/vit_b16.py" + (f":{arg}" if arg else ""))
  config_lib.validate(c)
  model = create_model(c.model, num_classes=10, **c.model_kwargs.to_dict())
  assert isinstance(model, VisionTransformer)
  if arg and "tiny" in arg:
    assert c.dataset == "synthetic" and c.num_epochs <= 2 and c.image_size == 32
    assert count_params(abstract_init(model, (1, 32, 32, 3))) < 100_000
    return
  assert c.dataset == "imagenet2012" and c.image_size == 224 and c.num_epochs == 300
  assert c.optimizer == "adamw" and c.schedule == "cosine"
  if arg == "deit":
    assert optim.peak_learning_rate(c) == pytest.approx(5e-4 * c.batch_size / 512)
    assert c.augment.rand_augment == "rand-m9-mstd0.5-inc1" and c.augment.mixup == 0.8
    assert (c.weight_decay, c.label_smoothing, c.model_kwargs.drop_path_rate) == (0.05, 0.1, 0.1)
  else:  # the paper's Table 3: Adam, batch 4096, lr 3e-3, wd 0.3, dropout 0.1, 10k warm-up
    assert (c.batch_size, c.learning_rate, c.weight_decay) == (4096, 3e-3, 0.3)
    assert c.model_kwargs.dropout == 0.1 and c.model_kwargs.representation_size == 768
    assert round(c.warmup_epochs * 1_281_167 / 4096) == 10_000
    c.batch_size = 1024  # as --config.batch_size=1024 sets it: still 10k steps
    assert round(c.warmup_epochs * 1_281_167 / 1024) == 10_000
