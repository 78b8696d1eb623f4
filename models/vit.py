"""Vision Transformer (ViT): Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale" (ICLR 2021, arXiv 2010.11929).

ViT showed that a standard Transformer encoder, applied with almost no image-specific
inductive bias to a sequence of image patches, matches or beats the best CNNs when it is
pre-trained on enough data (ImageNet-21k, JFT-300M). Trained on ImageNet-1k alone it
trails ResNets of its size unless strongly regularised (DeiT, Touvron et al. 2020).

Architecture (the paper's Sec. 3.1, Eqs. 1-4):

  z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos    (N = HW / P^2 patches of P x P)
  z'_l = MSA(LN(z_{l-1})) + z_{l-1}                  l = 1 .. L
  z_l = MLP(LN(z'_l)) + z'_l                         (MLP: D -> 4D, GELU, -> D)
  y = LN(z_L^0)                                      (the class token's output)

The patch embedding E is a P x P convolution with stride P (the same as flattening each
patch and applying one dense layer); x_class is a learned "class token"; E_pos a learned
1-D position embedding of 1 + N rows; LN is LayerNorm (eps 1e-6); MSA is multi-head
self-attention with biases on the query, key and value projections. A dense head maps
y to the logits.

Variants (Table 1; 1000 classes, 224 x 224; exact counts = torchvision vit_{b,l}_{16,32}
and timm vit_{tiny,small,base,large}_patch{16,32}_224 built with 1000 classes):

| variant  | D    | layers | heads | MLP  | patch | params      | ImageNet top-1           |
|----------|------|--------|-------|------|-------|-------------|--------------------------|
| vit_ti16 | 192  | 12     | 3     | 768  | 16    | 5,717,416   | 72.2 (DeiT-Ti)           |
| vit_ti32 | 192  | 12     | 3     | 768  | 32    | 6,131,560   |                          |
| vit_s16  | 384  | 12     | 6     | 1536 | 16    | 22,050,664  | 79.8 (DeiT-S)            |
| vit_s32  | 384  | 12     | 6     | 1536 | 32    | 22,878,952  |                          |
| vit_b16  | 768  | 12     | 12    | 3072 | 16    | 86,567,656  | 81.07 (torchvision)      |
| vit_b32  | 768  | 12     | 12    | 3072 | 32    | 88,224,232  | 75.91 (torchvision)      |
| vit_l16  | 1024 | 24     | 16    | 4096 | 16    | 304,326,632 | 79.66 (torchvision)      |
| vit_l32  | 1024 | 24     | 16    | 4096 | 32    | 306,535,400 | 76.97 (torchvision)      |

Ti and S are DeiT's sizes (Touvron et al. 2020), not in the ViT paper. timm's default
``vit_large_patch32_224`` has no head (its only weights are ImageNet-21k features):
305,510,400 without the 1000-class head.

Choices:

* Head. The paper's head is an MLP with one tanh hidden layer ("pre-logits") during
  pre-training and a single dense layer when fine-tuning; torchvision's and timm's
  ImageNet weights have the single layer, our default. ``representation_size=D`` adds the
  pre-logits layer (torchvision's ``representation_size``; the paper's from-scratch
  recipe in configs/vit_b16.py uses it).
* Pooling. ``pool='token'`` (default) classifies from the class token. ``pool='gap'`` is
  the paper's alternative (Appendix D.3): no class token, E_pos has N rows, and the head
  reads the mean of the final LayerNorm's outputs (= timm ``class_token=False,
  global_pool='avg', fc_norm=False``).
* Attention is written out (not nn.MultiHeadDotProductAttention): one dense ``qkv``
  layer of 3D outputs, query, key, value in that order (timm's ``attn.qkv``; torchvision's
  ``in_proj_weight`` has the same layout), softmax in float32, then the ``proj`` layer.
  Both checkpoints convert with a transpose.
* Dropout (``dropout``, paper: 0.1 for ImageNet from scratch, 0 when fine-tuning) goes
  where the paper puts it: "after every dense layer except for the qkv-projections and
  directly after adding positional- to patch embeddings" (Appendix B.1), never on the
  head. ``attention_dropout`` drops attention weights (0 in the paper; torchvision's
  ``attention_dropout``). ``drop_path_rate`` (stochastic depth, DeiT: 0.1) rises linearly
  over the blocks (models.layers.drop_path_rates); both residual branches use it.
* Init (``weight_init``). ``'paper'`` (default) is the paper's JAX code (= timm's
  ``weight_init='jax'``): dense kernels Xavier-uniform (q, k, v each as its own D x D
  matrix), MLP biases N(0, 1e-6), other biases 0, patch embedding LeCun normal, class
  token 0, E_pos N(0, 0.02), head kernel and bias 0. ``'trunc_normal'`` is DeiT's and
  timm's default: every dense kernel (head included) trunc_normal(0.02), biases 0, E_pos
  trunc_normal(0.02), class token N(0, 1e-6), patch embedding as PyTorch's default conv
  (uniform, variance 1 / (3 fan_in)). torchvision mixes the two (Xavier MLP, trunc-normal
  patch embedding, zero head); its weights load either way.
* Input scaling of pretrained weights: torchvision's and DeiT's expect ImageNet mean/std
  (``normalization='imagenet'``); timm's ``vit_*_patch*_224`` (AugReg, Steiner et al.
  2021) and the paper's expect [-1, 1] (``normalization='symmetric'``).
* Image size. ``image_size`` (default 224) fixes E_pos's grid ((image_size / P)^2 rows).
  An input whose patch grid differs is an error that names the two fixes, unless
  ``dynamic_img_size=True``, which resamples E_pos to the input's grid on every call
  (timm's ``dynamic_img_size``; the stored E_pos keeps its size and gets the gradients).
  Heights and widths must be multiples of P (the convolution would drop the rest).
* Resampling (:func:`resample_pos_embed`, the paper's Sec. 3.2 "2D interpolation of the
  pre-trained position embeddings"): the class-token row is kept, the N grid rows are
  resized as a 2-D image, separably, with PyTorch's exact ``F.interpolate`` weights, so a
  resampled checkpoint equals what the source library computes. Default: bicubic with
  antialiasing and half-pixel centres, timm's default for checkpoints and
  ``dynamic_img_size`` (bicubic is smoother than bilinear when enlarging a learned
  embedding; antialiasing avoids aliasing when shrinking one). torchvision's
  ``interpolate_embeddings`` uses bicubic with ``align_corners=True`` and no
  antialiasing; the converter uses each library's own rule for its checkpoints. The
  paper's code used bilinear spline zoom (scipy ``zoom(order=1)``), ``method='bilinear',
  align_corners=True`` here.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import register
from models import torch_convert as tc
from models.layers import (Conv, DropPath, check_choice, check_drop_path_rate, check_dropout,
                           check_option, check_positive, drop_path_rates, get_activation,
                           layer_ids_in_block_order, trunc_normal_02)

Array = jax.Array

POOLS = ("token", "gap")
WEIGHT_INITS = ("paper", "trunc_normal")
RESAMPLE_METHODS = ("bicubic", "bilinear")

xavier_uniform = nn.initializers.xavier_uniform()
lecun_normal = nn.initializers.lecun_normal()
# PyTorch's default Conv2d / Linear weight init (kaiming_uniform with a = sqrt(5)).
torch_default = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def qkv_xavier_uniform(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
  """Xavier-uniform for a (D, 3D) qkv kernel as three D x D matrices (the paper's code
  has separate query, key and value layers; timm's 'jax' init does the same)."""
  fan_in, fan_out = shape[0], shape[1] // 3
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  return jax.random.uniform(key, shape, dtype, -limit, limit)


# ---------------------------------------------------------------------------------------
# Position-embedding resampling.


def _cubic(x: float, a: float) -> float:
  """Keys' cubic convolution kernel (PyTorch: a = -0.75, and -0.5 when antialiasing)."""
  x = abs(x)
  if x < 1.0:
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
  if x < 2.0:
    return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
  return 0.0


def interpolation_matrix(in_size: int, out_size: int, method: str = "bicubic",
                         antialias: bool = True, align_corners: bool = False) -> np.ndarray:
  """The (out_size, in_size) matrix of 1-D ``torch.nn.functional.interpolate`` weights.

  Follows ATen's CPU kernels: without antialiasing, bicubic is Keys' kernel with
  a = -0.75 on 4 taps clamped at the border, bilinear clamps negative source positions to
  0; with antialiasing (PIL's method) the kernel (bicubic a = -0.5, or a triangle) is
  stretched by the scale when shrinking and each row is normalised to sum to 1.
  """
  if method not in RESAMPLE_METHODS:
    raise ValueError(f"unknown interpolation {method!r}; valid: {', '.join(RESAMPLE_METHODS)}")
  if align_corners:
    scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
  else:
    scale = in_size / out_size
  w = np.zeros((out_size, in_size), np.float64)
  if antialias:
    taps = 4 if method == "bicubic" else 2
    kernel = ((lambda x: _cubic(x, -0.5)) if method == "bicubic"
              else (lambda x: max(0.0, 1.0 - abs(x))))
    support = taps / 2 * scale if scale >= 1.0 else taps / 2
    inv_scale = 1.0 / scale if scale >= 1.0 else 1.0
    for i in range(out_size):
      center = scale * (i + 0.5)
      lo = max(int(center - support + 0.5), 0)
      hi = min(int(center + support + 0.5), in_size)
      row = np.array([kernel((j - center + 0.5) * inv_scale) for j in range(lo, hi)])
      if row.sum() != 0.0:
        row = row / row.sum()
      w[i, lo:hi] = row
    return w
  for i in range(out_size):
    src = scale * i if align_corners else scale * (i + 0.5) - 0.5
    if method == "bicubic":
      x0 = math.floor(src)
      t = src - x0
      coeffs = (_cubic(t + 1.0, -0.75), _cubic(t, -0.75), _cubic(1.0 - t, -0.75),
                _cubic(2.0 - t, -0.75))
      for k, c in enumerate(coeffs):
        w[i, min(max(x0 - 1 + k, 0), in_size - 1)] += c
    else:
      src = max(src, 0.0)
      x0 = int(src)
      x1 = x0 + (1 if x0 < in_size - 1 else 0)
      frac = src - x0
      w[i, x0] += 1.0 - frac
      w[i, x1] += frac
  return w


def resample_pos_embed(posemb: Any, new_grid: int | Sequence[int], num_prefix_tokens: int = 1,
                       *, old_grid: Sequence[int] | None = None, method: str = "bicubic",
                       antialias: bool = True, align_corners: bool = False) -> Any:
  """Resizes a position embedding to a new patch grid, keeping its prefix rows.

  ``posemb``: (1, prefix + h * w, D) or (prefix + h * w, D), as NumPy (result NumPy)
  or JAX (result JAX, traceable). The first ``num_prefix_tokens`` rows (the class
  token's) are kept as they are; the others, a row-major h x w grid (square unless
  ``old_grid`` says otherwise), are resized to ``new_grid`` (an int for a square grid).
  The defaults are timm's (bicubic, antialiased, half-pixel centres); torchvision's
  ``interpolate_embeddings`` is ``align_corners=True, antialias=False``. Exactly the
  weights of PyTorch's ``F.interpolate`` (see :func:`interpolation_matrix`).
  """
  new_grid = (new_grid, new_grid) if isinstance(new_grid, int) else tuple(new_grid)
  squeeze = posemb.ndim == 2
  if squeeze:
    posemb = posemb[None]
  n = posemb.shape[1] - num_prefix_tokens
  if old_grid is None:
    side = math.isqrt(n)
    if side * side != n:
      raise ValueError(f"the position embedding has {n} grid rows, not a square grid; "
                       "pass old_grid=(h, w)")
    old_grid = (side, side)
  old_grid = tuple(old_grid)
  if old_grid[0] * old_grid[1] != n:
    raise ValueError(f"old_grid {old_grid} has {old_grid[0] * old_grid[1]} cells but the "
                     f"embedding has {n} grid rows (after {num_prefix_tokens} prefix rows)")
  if old_grid != new_grid:
    xp = np if isinstance(posemb, np.ndarray) else jnp
    wh, ww = (interpolation_matrix(a, b, method, antialias, align_corners).astype(np.float32)
              for a, b in zip(old_grid, new_grid))
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    grid = grid.reshape(grid.shape[0], *old_grid, grid.shape[-1]).astype(np.float32)
    kw = {} if xp is np else {"precision": jax.lax.Precision.HIGHEST}
    grid = xp.einsum("hH,wW,bHWd->bhwd", wh, ww, grid, **kw)
    grid = grid.reshape(grid.shape[0], new_grid[0] * new_grid[1], -1).astype(posemb.dtype)
    posemb = xp.concatenate([prefix, grid], axis=1)
  return posemb[0] if squeeze else posemb


# ---------------------------------------------------------------------------------------
# The encoder.


class MultiHeadSelfAttention(nn.Module):
  """MSA: softmax(q k^T / sqrt(D / heads)) v per head, then an output projection."""

  num_heads: int
  attention_dropout: float = 0.0
  qkv_init: Callable = qkv_xavier_uniform
  proj_init: Callable = xavier_uniform
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    b, n, d = x.shape
    if d % self.num_heads:
      raise ValueError(f"hidden size {d} is not divisible by num_heads={self.num_heads}")
    head_dim = d // self.num_heads
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    qkv = dense(3 * d, kernel_init=self.qkv_init, name="qkv")(x)
    q, k, v = jnp.moveaxis(qkv.reshape(b, n, 3, self.num_heads, head_dim), 2, 0)
    logits = jnp.einsum("bqhc,bkhc->bhqk", q * head_dim**-0.5, k)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
    weights = nn.Dropout(self.attention_dropout, deterministic=not train)(weights)
    y = jnp.einsum("bhqk,bkhc->bqhc", weights, v).reshape(b, n, d)
    return dense(d, kernel_init=self.proj_init, name="proj")(y)


class MlpBlock(nn.Module):
  """D -> mlp_dim -> D with GELU between and dropout after each dense layer."""

  mlp_dim: int
  dropout: float = 0.0
  kernel_init: Callable = xavier_uniform
  bias_init: Callable = nn.initializers.normal(1e-6)
  act: Callable[[Array], Array] = get_activation("gelu")
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    dense = functools.partial(nn.Dense, kernel_init=self.kernel_init, bias_init=self.bias_init,
                              dtype=self.dtype, param_dtype=jnp.float32)
    y = self.act(dense(self.mlp_dim, name="fc1")(x))
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    y = dense(x.shape[-1], name="fc2")(y)
    return nn.Dropout(self.dropout, deterministic=not train)(y)


class EncoderBlock(nn.Module):
  """One pre-LN Transformer layer (Eqs. 2 and 3)."""

  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  attention_dropout: float = 0.0
  drop_path: float = 0.0
  weight_init: str = "paper"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    norm = functools.partial(nn.LayerNorm, epsilon=1e-6, dtype=self.dtype,
                             param_dtype=jnp.float32)
    if self.weight_init == "paper":
      inits = dict(qkv=qkv_xavier_uniform, kernel=xavier_uniform,
                   mlp_bias=nn.initializers.normal(1e-6))
    else:
      inits = dict(qkv=trunc_normal_02, kernel=trunc_normal_02, mlp_bias=nn.initializers.zeros)
    drop_path = DropPath(self.drop_path)

    y = norm(name="ln1")(x)
    y = MultiHeadSelfAttention(self.num_heads, self.attention_dropout, inits["qkv"],
                               inits["kernel"], self.dtype, name="attn")(y, train)
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    x = x + drop_path(y, deterministic=not train)

    y = norm(name="ln2")(x)
    y = MlpBlock(self.mlp_dim, self.dropout, inits["kernel"], inits["mlp_bias"],
                 dtype=self.dtype, name="mlp")(y, train)
    return x + drop_path(y, deterministic=not train)


class VisionTransformer(nn.Module):
  """ViT (Eqs. 1-4) with a dense classifier; see the module docstring for the options."""

  num_classes: int = 1000
  patch_size: int = 16
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  mlp_dim: int | None = None  # None: 4 x hidden_size
  image_size: int = 224  # sizes E_pos: (image_size // patch_size)^2 grid rows
  pool: str = "token"  # token | gap
  representation_size: int | None = None  # pre-logits tanh layer (paper pre-training)
  dropout: float = 0.0
  attention_dropout: float = 0.0
  drop_path_rate: float = 0.0
  weight_init: str = "paper"  # paper | trunc_normal
  dynamic_img_size: bool = False  # resample E_pos to each input's grid
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    for field in ("patch_size", "hidden_size", "num_layers", "num_heads", "image_size"):
      check_positive(self, field, getattr(self, field))
    check_option(self.hidden_size % self.num_heads == 0, self, "num_heads", self.num_heads,
                 f"divisors of hidden_size {self.hidden_size}")
    check_positive(self, "mlp_dim", self.mlp_dim, optional=True)
    check_choice(self, "pool", self.pool, POOLS)
    check_positive(self, "representation_size", self.representation_size,
                   off="no pre-logits layer")
    check_dropout(self, "dropout", self.dropout)
    check_dropout(self, "attention_dropout", self.attention_dropout)
    check_drop_path_rate(self, "drop_path_rate", self.drop_path_rate)
    check_choice(self, "weight_init", self.weight_init, WEIGHT_INITS)

  @property
  def grid(self) -> tuple[int, int]:
    side = self.image_size // self.patch_size
    return side, side

  @property
  def num_prefix_tokens(self) -> int:
    return 1 if self.pool == "token" else 0

  def _check(self, x: Array) -> tuple[int, int]:
    h, w = x.shape[1:3]
    p = self.patch_size
    if h % p or w % p:
      raise ValueError(f"input {h}x{w} is not a multiple of the patch size {p}")
    grid = (h // p, w // p)
    if grid != self.grid and not self.dynamic_img_size:
      fix = (f"build the model with image_size={h} and resample trained weights "
             "(models.vit.resample_pos_embed; torch_convert.convert does it), or "
             if h == w else "")
      raise ValueError(
          f"input {h}x{w} gives a {grid[0]}x{grid[1]} patch grid, but the position "
          f"embedding is for image_size={self.image_size} ({self.grid[0]}x{self.grid[1]}): "
          f"{fix}set dynamic_img_size=True to resample it on every call")
    return grid

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    grid = self._check(x)
    paper = self.weight_init == "paper"
    d = self.hidden_size
    x = x.astype(self.dtype)

    # Eq. 1: patch embedding E (a P x P convolution of stride P), class token, E_pos.
    p = self.patch_size
    x = Conv(d, (p, p), strides=(p, p), padding="VALID",
             kernel_init=lecun_normal if paper else torch_default, dtype=self.dtype,
             param_dtype=jnp.float32, name="patch_embed")(x)
    x = x.reshape(x.shape[0], grid[0] * grid[1], d)
    if self.pool == "token":
      cls_init = nn.initializers.zeros if paper else nn.initializers.normal(1e-6)
      cls = self.param("cls_token", cls_init, (1, 1, d), jnp.float32)
      x = jnp.concatenate([jnp.broadcast_to(cls.astype(self.dtype), (x.shape[0], 1, d)), x],
                          axis=1)
    pos_init = nn.initializers.normal(0.02) if paper else trunc_normal_02
    pos = self.param("pos_embed", pos_init,
                     (1, self.num_prefix_tokens + self.grid[0] * self.grid[1], d), jnp.float32)
    if grid != self.grid:  # dynamic_img_size
      pos = resample_pos_embed(pos, grid, self.num_prefix_tokens, old_grid=self.grid)
    x = x + pos.astype(self.dtype)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)

    # Eqs. 2-3: L encoder blocks; Eq. 4: the final LayerNorm.
    rates = drop_path_rates(self.drop_path_rate, (self.num_layers,))[0]
    for i in range(self.num_layers):
      x = EncoderBlock(self.num_heads, self.mlp_dim or 4 * d, self.dropout,
                       self.attention_dropout, rates[i], self.weight_init, self.dtype,
                       name=f"block{i + 1}")(x, train)
    x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, param_dtype=jnp.float32,
                     name="encoder_norm")(x)
    x = x[:, 0] if self.pool == "token" else jnp.mean(x, axis=1)

    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    if self.representation_size:
      x = jnp.tanh(dense(self.representation_size,
                         kernel_init=lecun_normal if paper else trunc_normal_02,
                         name="pre_logits")(x))
    head_init = nn.initializers.zeros if paper else trunc_normal_02
    return dense(self.num_classes, kernel_init=head_init, name="head")(x)


VARIANTS = {  # name: (hidden size D, layers, heads); MLP 4D
    "ti": (192, 12, 3),
    "s": (384, 12, 6),
    "b": (768, 12, 12),
    "l": (1024, 24, 16),
}
VIT_NAMES = tuple(f"vit_{size}{patch}" for size in VARIANTS for patch in (16, 32))

_BLOCK = re.compile(r"^block(\d+)$")


def layer_ids(names: Sequence[str]) -> tuple[dict[str, int], int]:
  """Layer groups for layer-wise learning-rate decay, BEiT's assignment
  (``get_num_layer_for_vit`` in microsoft/unilm beit/optim_factory.py): the embeddings
  (``patch_embed``, ``pos_embed``, ``cls_token``) are layer 0, encoder block i is layer i,
  the rest (``encoder_norm``, ``pre_logits``, ``head``) L + 1."""
  return layer_ids_in_block_order(names, _BLOCK, stem=("patch_embed", "pos_embed", "cls_token"))


for _size, (_d, _layers, _heads) in VARIANTS.items():
  for _patch in (16, 32):
    register(f"vit_{_size}{_patch}",
             functools.partial(VisionTransformer, patch_size=_patch, hidden_size=_d,
                               num_layers=_layers, num_heads=_heads),
             layer_groups=layer_ids)


# ---------------------------------------------------------------------------------------
# PyTorch checkpoints: torchvision's VisionTransformer and timm's.

_TORCHVISION = dict(conv="conv_proj", cls="class_token", pos="encoder.pos_embedding",
                    block="encoder.layers.encoder_layer_{}", ln1="ln_1", ln2="ln_2",
                    qkv="self_attention.in_proj_", proj="self_attention.out_proj",
                    fc1="mlp.0", fc2="mlp.3", norm="encoder.ln", head="heads.head",
                    pre_logits="heads.pre_logits")
_TIMM = dict(conv="patch_embed.proj", cls="cls_token", pos="pos_embed", block="blocks.{}",
             ln1="norm1", ln2="norm2", qkv="attn.qkv.", proj="attn.proj", fc1="mlp.fc1",
             fc2="mlp.fc2", norm="norm", head="head", pre_logits=None)


@tc.register_converter(*VIT_NAMES)
def convert_vit(sd: tc.StateDict, model=None) -> dict:
  """torchvision (``vit_b_16`` ...) or timm (``vit_base_patch16_224`` ...) state dict ->
  variables of our ViT.

  The encoder's depth and width come from the checkpoint (the head count does not change
  any tensor). With ``model``, E_pos is resampled to ``model.image_size`` when the
  checkpoint's grid differs, by the source library's own rule (timm: bicubic,
  antialiased; torchvision: bicubic, align_corners=True), so the result equals that
  library's model at the new size.
  """
  source = tc.detect_source(sd, "vit", {"torchvision": "conv_proj.weight",
                                        "timm": "patch_embed.proj.weight"})
  names = _TORCHVISION if source == "torchvision" else _TIMM
  if model is not None and not isinstance(model, VisionTransformer):
    raise tc.ConversionError(f"a ViT checkpoint converts into a models.vit model, not "
                             f"{type(model).__name__}")
  has_cls = names["cls"] in sd
  if model is not None and has_cls != (model.pool == "token"):
    raise tc.ConversionError(
        f"the checkpoint {'has' if has_cls else 'has no'} class token but the model has "
        f"pool={model.pool!r}; use pool={'token' if has_cls else 'gap'!r}")
  params: dict[str, Any] = {"patch_embed": tc.conv(sd, names["conv"])}
  prefix = 1 if has_cls else 0
  if has_cls:
    params["cls_token"] = sd.get(names["cls"])
  pos = sd.get(names["pos"])
  if has_cls and math.isqrt(pos.shape[1]) ** 2 == pos.shape[1]:
    raise tc.ConversionError(
        f"{names['pos']} has {pos.shape[1]} rows, a square grid without the class token's "
        "row: a timm no_embed_class model (DeiT III, big_vision), which models.vit does not "
        "implement")
  if model is not None and (pos.shape[1] - prefix) != model.grid[0] * model.grid[1]:
    rule = (dict(align_corners=True, antialias=False) if source == "torchvision"
            else dict(align_corners=False, antialias=True))
    pos = resample_pos_embed(pos, model.grid, prefix, method="bicubic", **rule)
  params["pos_embed"] = pos

  depth = 0
  while f"{names['block'].format(depth)}.{names['ln1']}.weight" in sd:
    depth += 1
  if depth == 0:
    raise tc.ConversionError(f"the {source} checkpoint has no encoder blocks "
                             f"({names['block'].format(0)}...)")
  for i in range(depth):
    b = names["block"].format(i)
    params[f"block{i + 1}"] = {
        "ln1": tc.layer_norm(sd, f"{b}.{names['ln1']}"),
        "attn": {"qkv": {"kernel": sd.get(f"{b}.{names['qkv']}weight").T,
                         "bias": sd.get(f"{b}.{names['qkv']}bias")},
                 "proj": tc.dense(sd, f"{b}.{names['proj']}")},
        "ln2": tc.layer_norm(sd, f"{b}.{names['ln2']}"),
        "mlp": {"fc1": tc.dense(sd, f"{b}.{names['fc1']}"),
                "fc2": tc.dense(sd, f"{b}.{names['fc2']}")},
    }
  params["encoder_norm"] = tc.layer_norm(sd, names["norm"])
  if names["pre_logits"] and f"{names['pre_logits']}.weight" in sd:
    params["pre_logits"] = tc.dense(sd, names["pre_logits"])
  params["head"] = tc.dense(sd, names["head"])
  # Copies: a state dict's arrays may share memory with the torch tensors.
  return {"params": jax.tree.map(np.array, params)}
