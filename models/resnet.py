"""ResNet: He et al. 2015, "Deep Residual Learning for Image Recognition" (CVPR 2016,
arXiv 1512.03385), with the pre-activation (v2) and Squeeze-and-Excitation variants.

Residual learning: each block learns a residual F(x) that is added to an identity
shortcut, y = relu(F(x) + x), so very deep networks train as easily as shallow ones
(a 110-layer CIFAR net beats a 20-layer one instead of degrading; ResNet-152 won
ILSVRC 2015 with 3.57% top-5 error as an ensemble).

CIFAR ResNets (Sec. 4.2): a 3x3 conv with 16 filters, then three stages of n basic
blocks (two 3x3 convs each) on 32x32, 16x16 and 8x8 maps with 16, 32 and 64 filters,
stride 2 in the first conv of stages 2 and 3, global average pooling and a dense
classifier: 6n + 2 weighted layers. Every conv is followed by BatchNorm, then ReLU
(after the addition in a block). Parameter counts for 3-channel input, 10 classes:

| variant   | n  | params (shortcut A) | paper | shortcut B | CIFAR-10 error (paper) |
|-----------|----|---------------------|-------|------------|------------------------|
| resnet20  | 3  | 269,722             | 0.27M | 272,474    | 8.75%                  |
| resnet32  | 5  | 464,154             | 0.46M | 466,906    | 7.51%                  |
| resnet44  | 7  | 658,586             | 0.66M | 661,338    | 7.17%                  |
| resnet56  | 9  | 853,018             | 0.85M | 855,770    | 6.97%                  |
| resnet110 | 18 | 1,727,962           | 1.7M  | 1,730,714  | 6.43%                  |

The plain nets (``shortcut='plain'``) have option A's counts (plain-20: 269,722).

ImageNet ResNets (Table 1, ``ResNet``): a 7x7/2 conv with 64 filters (``conv1``), BN,
ReLU and a 3x3/2 max pool (224 -> 56), then four stages (the paper's conv2_x .. conv5_x,
here ``stage1`` .. ``stage4``) on 56, 28, 14 and 7 maps, stride 2 in the first block of
stages 2-4, global average pooling and a 1000-way ``fc``. ResNet-18/34 stack basic
blocks (two 3x3 convs; 64, 128, 256, 512 filters); ResNet-50/101/152 stack bottleneck
blocks (1x1 reduce to 64 .. 512, 3x3, 1x1 expand to 4x: 256 .. 2048). Blocks per stage:
18: 2-2-2-2, 34: 3-4-6-3, 50: 3-4-6-3, 101: 3-4-23-3, 152: 3-8-36-3. Trainable
parameters (1000 classes; BN statistics excluded):

| depth | v1.5 = v1  | v2         | SE         | torchvision top-1 (v1.5) |
|-------|------------|------------|------------|--------------------------|
| 18    | 11,689,512 | 11,687,720 | 11,779,624 | 69.76%                   |
| 34    | 21,797,672 | 21,795,880 | 21,960,416 | 73.31%                   |
| 50    | 25,557,032 | 25,549,352 | 28,088,024 | 76.13%                   |
| 101   | 44,549,160 | 44,541,480 | 49,326,872 | 77.37%                   |
| 152   | 60,192,808 | 60,185,128 | 66,821,848 | 78.31%                   |

Registered as ``resnet{d}`` (v1.5), ``resnet{d}_v1``, ``resnet{d}_v2`` and
``se_resnet{d}`` (v1.5 + SE). v1.5 counts = torchvision's; v2-50 = timm's
``resnetv2_50``; SE counts = timm's ``seresnet{d}`` (SE-ResNet-50: 76.71% top-1 with
timm's weights; the SE paper reports 23.29% top-1 error).

Versions (the ``version`` field; all keep the same parameter shapes except v2):

* ``v1`` (the paper's Caffe models): a bottleneck's stride sits on its first 1x1 conv,
  which then discards 3/4 of its input positions.
* ``v1.5`` (default; torchvision, timm, fb.resnet.torch): the stride sits on the 3x3
  conv instead; about +0.5% top-1 (NVIDIA's figure) for 4.09 instead of 3.86 GMACs
  (ResNet-50). Basic blocks stride their first 3x3 conv in both versions, so
  ``resnet18_v1``/``resnet34_v1`` equal ``resnet18``/``resnet34``.
* ``v2``: pre-activation units of He et al. 2016, "Identity Mappings in Deep Residual
  Networks" (ECCV 2016, arXiv 1603.05027), full pre-activation (Fig. 4e): BN-ReLU before
  each conv, a pure addition at the output, so the shortcut path is an identity from
  block to block. As the paper's appendix and fb.resnet.torch's ``preresnet.lua`` (the
  Torch implementation of this paper): the stem keeps conv-BN-ReLU-max pool and the
  first unit of stage 1 reuses that activation instead of its own; a unit whose shape changes applies its
  BN-ReLU to the input before splitting and projects that pre-activated input with a
  1x1 conv (no BN, as nothing follows it before the addition); one extra BN + ReLU
  (``final_bn``) before the pooling; stride on the 3x3 conv. Counts: each branch loses
  the BN after its last conv, gains one before its first conv (none in the first unit),
  projections lose their BN, plus ``final_bn``: ResNet-50 -7,680. In v2 ``bn{i}`` is the
  BN that precedes ``conv{i}``. timm's ``resnetv2_50`` has the same count but moves the
  stem's BN-ReLU after the max pool (into the first unit), so its weights do not load.

Choices:

* Shortcuts. On CIFAR the paper uses option A everywhere: identity shortcuts, and
  where the shape changes, the input subsampled by 2 and its new channels zero-padded,
  adding no parameters. We append the zero channels after the identity ones (the paper
  does not say where; any placement is the same network up to a channel permutation).
  Option B (a 1x1 conv + BN projection where the shape changes) is ``shortcut='B'``,
  which the ImageNet nets use (the paper's choice after Table 3). ``shortcut='plain'``
  removes the shortcuts: the paper's "plain" networks (Sec. 4.1-4.2, Fig. 6 left), the
  same stack of conv-BN-ReLU layers, y = relu(F(x)), with exactly the parameters of
  option A (which adds none); the degradation experiment compares plain-20/56 with
  ResNet-20/56 (``experiments/degradation.py``).
* Padding. 3x3 convs pad by 1 on each side, also at stride 2 (as in the original
  Torch/Caffe code), not Flax's asymmetric 'SAME'; the stem conv pads 3 and the max
  pool 1 with PyTorch's semantics (``layers.max_pool``: padding never wins).
* Init. Convs use He normal init in fan-out mode (He et al. 2015 [13], as torchvision);
  the classifier keeps Flax's default. ``zero_init_residual`` (Goyal et al. 2017; off by
  default, as in the paper) makes each residual branch output zero at init, so each
  block starts as relu(shortcut(x)) (v1/v1.5; the identity where the shape is kept):
  the scale of the branch's last BN starts at zero. In v2 no BN follows the last conv,
  and a zero BN scale before it would leave ReLU at 0, where it has no gradient, so the
  branch never wakes; the last conv's kernel starts at zero instead (as timm's
  ResNetV2) and each block starts as its shortcut (the identity where the shape is
  kept).
* Squeeze-and-Excitation (Hu et al. 2017, "Squeeze-and-Excitation Networks", CVPR
  2018, arXiv 1709.01507, Fig. 3): ``se_reduction=r`` adds ``layers.SqueezeExcite`` to
  every block, rescaling the channels of the residual branch (after its last BN; in v2,
  after its last conv) before the addition, as the paper and timm. Hidden width C/r
  rounded as timm (``se_divisor=8``: a multiple of 8, at least 8), which changes only
  the 64-channel blocks of SE-ResNet-18/34 (8 hidden instead of 4; ``se_divisor=1`` is
  exactly C/r, 11,778,592 / 21,958,868 parameters there). ``se_resnet{d}`` are v1.5, as
  timm's ``seresnet{d}``; the paper's Caffe SE-ResNets stride the 1x1 conv
  (``version='v1'``).
* PyTorch weights. torchvision's ``resnet{18..152}``, timm's ``resnet{18..152}`` (same
  tensor names) and timm's ``seresnet{18..152}`` convert into ``resnet{d}`` /
  ``se_resnet{d}`` (:func:`convert_resnet`). No library has v1 or v2 weights under these
  layouts.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import register
from models import torch_convert as tc
from models.layers import (STAGE_BLOCK, Conv, SqueezeExcite, check_choice, check_option,
                           check_positive, check_positive_entries, layer_ids_in_block_order,
                           max_pool)

Array = jax.Array
ModuleDef = Any

# He et al. 2015 ("Delving deep into rectifiers"), fan-out mode as in torchvision.
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

_PAD_1 = ((1, 1), (1, 1))
# "plain": no shortcuts (the paper's plain nets). Not "none", which the command line
# (--config.model_kwargs.shortcut=none) reads as None.
SHORTCUTS = ("A", "B", "plain")
VERSIONS = ("v1", "v1.5", "v2")
BLOCKS = ("basic", "bottleneck")
# Table 1: blocks per stage (conv2_x .. conv5_x) and block type of each depth.
DEPTHS = {18: ((2, 2, 2, 2), "basic"), 34: ((3, 4, 6, 3), "basic"),
          50: ((3, 4, 6, 3), "bottleneck"), 101: ((3, 4, 23, 3), "bottleneck"),
          152: ((3, 8, 36, 3), "bottleneck")}


def shortcut_a(x: Array, features: int, strides: int) -> Array:
  """Option A: subsample spatially by ``strides`` and zero-pad channels to ``features``."""
  x = x[:, ::strides, ::strides, :]
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))


def se_channels(channels: int, reduction: int, divisor: int = 8) -> int:
  """Hidden width of an SE block: ``channels / reduction`` rounded to a multiple of
  ``divisor`` and at least ``divisor`` (timm's ``make_divisible(..., round_limit=0)``;
  ``divisor=1`` is the paper's C/r). For r=16 the two agree wherever C >= 128."""
  return max(divisor, int(channels / reduction + divisor / 2) // divisor * divisor)


def squeeze_excite(channels: int, *, reduction: int, divisor: int, dtype: Any,
                   name: str) -> SqueezeExcite:
  return SqueezeExcite(hidden=se_channels(channels, reduction, divisor), dtype=dtype,
                       name=name)


def residual_unit(block: nn.Module, x: Array, branch: Sequence[tuple[int, int, int]]) -> Array:
  """y = F(x) + shortcut(x) for ``block``, whose branch F is the convolutions ``branch``
  ((kernel size, features, stride) each) named conv1, conv2, ...; y = F(x) alone when
  ``block.shortcut`` is 'plain' (a plain network's two layers).

  Post-activation (He et al. 2015; ``block.preact`` False): conv-BN-ReLU each, no ReLU
  after the last BN, ReLU after the addition. Pre-activation (He et al. 2016): BN-ReLU
  before each conv (``bn{i}`` precedes ``conv{i}``), nothing after the addition; the
  first BN-ReLU is skipped when ``block.preactivate`` is False (the block right after
  the stem, whose BN-ReLU it shares), and a projection shortcut takes the pre-activated
  input, an identity shortcut the raw one. An SE block (``block.se``) rescales F(x)
  before the addition.
  """
  check_choice(block, "shortcut", block.shortcut, SHORTCUTS)
  features = branch[-1][1]
  project = x.shape[-1] != features or block.strides != 1
  zero = block.zero_init_residual
  shortcut = y = x
  for i, (k, f, strides) in enumerate(branch, 1):
    last = i == len(branch)
    if block.preact and (i > 1 or block.preactivate):
      y = block.act(block.norm(name=f"bn{i}")(y))
      if i == 1 and project:
        shortcut = y
    # v2's zero_init_residual: the last conv starts at zero (no BN follows it).
    init = {"kernel_init": nn.initializers.zeros} if block.preact and zero and last else {}
    y = block.conv(f, (k, k), strides, padding=_PAD_1 if k == 3 else "VALID",
                   name=f"conv{i}", **init)(y)
    if not block.preact:
      scale_init = nn.initializers.zeros if zero and last else nn.initializers.ones
      y = block.norm(scale_init=scale_init, name=f"bn{i}")(y)
      if not last:
        y = block.act(y)
  if block.se is not None:
    y = block.se(features, name="se")(y)
  if block.shortcut == "plain":  # plain: no addition; the ReLU of the branch's last layer
    return y if block.preact else block.act(y)
  if project:
    if block.shortcut == "A":
      shortcut = shortcut_a(shortcut, features, block.strides)
    else:
      shortcut = block.conv(features, (1, 1), block.strides, padding="VALID",
                            name="proj_conv")(shortcut)
      if not block.preact:
        shortcut = block.norm(name="proj_bn")(shortcut)
  y = y + shortcut
  return y if block.preact else block.act(y)


class BasicBlock(nn.Module):
  """Two 3x3 convs with a shortcut (the paper's Fig. 2 and Fig. 5 left; ResNet-18/34
  and the CIFAR nets).

  ``conv`` and ``norm`` are factories (partials of nn.Conv and nn.BatchNorm) supplied
  by the network, which fixes dtype, init and train/eval mode in one place. ``se`` is
  None or a factory ``(channels, name=) -> module`` of an SE block.
  """

  features: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  shortcut: str = "B"
  zero_init_residual: bool = False
  act: Callable[[Array], Array] = nn.relu
  preact: bool = False
  preactivate: bool = True
  se: ModuleDef | None = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    return residual_unit(self, x, [(3, self.features, self.strides), (3, self.features, 1)])


class Bottleneck(nn.Module):
  """1x1 (reduce), 3x3, 1x1 (expand to 4 x ``features``) convs with a shortcut (the
  paper's Fig. 5 right; ResNet-50/101/152). The stride of a downsampling block sits on
  the 3x3 conv (v1.5) or on the first 1x1 (``stride_on_1x1``: v1, the paper's Caffe
  models). Fields as :class:`BasicBlock`.
  """

  features: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  stride_on_1x1: bool = False
  shortcut: str = "B"
  zero_init_residual: bool = False
  act: Callable[[Array], Array] = nn.relu
  preact: bool = False
  preactivate: bool = True
  se: ModuleDef | None = None

  expansion = 4

  @nn.compact
  def __call__(self, x: Array) -> Array:
    s1, s3 = (self.strides, 1) if self.stride_on_1x1 else (1, self.strides)
    return residual_unit(self, x, [(1, self.features, s1), (3, self.features, s3),
                                   (1, self.expansion * self.features, 1)])


class CifarResNet(nn.Module):
  """The 6n+2-layer CIFAR ResNet of Sec. 4.2 (n = ``blocks_per_stage``); with
  ``shortcut='plain'`` the plain 6n+2-layer network of the same section."""

  num_classes: int = 10
  blocks_per_stage: int = 3
  width: int = 16  # filters in stage 1; stages 2 and 3 use 2x and 4x.
  shortcut: str = "A"  # A | B | plain (no shortcuts)
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_positive(self, "blocks_per_stage", self.blocks_per_stage)
    check_positive(self, "width", self.width)
    check_choice(self, "shortcut", self.shortcut, SHORTCUTS)
    # A plain block whose last BN starts at zero outputs relu(0) = 0, with no gradient:
    # the network would never train.
    check_option(not (self.zero_init_residual and self.shortcut == "plain"), self,
                 "zero_init_residual", self.zero_init_residual,
                 "False when shortcut='plain' (a plain block has no shortcut to start as)")

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    conv = functools.partial(Conv, use_bias=False, kernel_init=he_normal_fan_out,
                             dtype=self.dtype, param_dtype=jnp.float32)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32)
    x = x.astype(self.dtype)
    x = conv(self.width, (3, 3), padding=_PAD_1, name="conv1")(x)
    x = norm(name="bn1")(x)
    x = nn.relu(x)
    for stage in range(3):
      for block in range(self.blocks_per_stage):
        x = BasicBlock(
            features=self.width * 2**stage,
            conv=conv,
            norm=norm,
            strides=2 if stage > 0 and block == 0 else 1,
            shortcut=self.shortcut,
            zero_init_residual=self.zero_init_residual,
            name=f"stage{stage + 1}_block{block + 1}")(x)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                    name="fc")(x)


def layer_ids(names: Sequence[str]) -> tuple[dict[str, int], int]:
  """Layer groups for layer-wise learning-rate decay: the stem (``conv1``, ``bn1``) is
  layer 0, the blocks ``stage{s}_block{b}`` layers 1..L in network order, the rest
  (``final_bn``, ``fc``) L + 1 (CIFAR and ImageNet ResNets alike)."""
  return layer_ids_in_block_order(names, STAGE_BLOCK, stem=("conv1", "bn1"))


for _depth, _n in ((20, 3), (32, 5), (44, 7), (56, 9), (110, 18)):
  register(f"resnet{_depth}", functools.partial(CifarResNet, blocks_per_stage=_n),
           layer_groups=layer_ids)


class ResNet(nn.Module):
  """The ImageNet ResNets of Table 1, with the v1 / v1.5 / v2 and SE options.

  Stem: 7x7/2 conv (``conv1``) + BN + ReLU, 3x3/2 max pool. Four stages (the paper's
  conv2_x .. conv5_x, here ``stage1`` .. ``stage4``) of ``stage_sizes`` blocks with
  ``width`` x 1, 2, 4, 8 filters (x 4 at a bottleneck's output), stride 2 in the first
  block of stages 2-4; global average pool; ``fc``. ``stage_sizes`` has one entry per
  stage (the tests run nets of two or three stages).
  """

  num_classes: int = 1000
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  block: str = "bottleneck"  # basic | bottleneck
  version: str = "v1.5"  # v1 | v1.5 | v2
  width: int = 64  # stem and stage-1 filters
  se_reduction: int | None = None  # Squeeze-and-Excitation ratio r (paper: 16)
  se_divisor: int = 8  # SE hidden width rounding (timm); 1: exactly C / r
  zero_init_residual: bool = False
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_positive_entries(self, "stage_sizes", self.stage_sizes)
    check_choice(self, "block", self.block, BLOCKS)
    check_choice(self, "version", self.version, VERSIONS)
    check_positive(self, "width", self.width)
    check_positive(self, "se_reduction", self.se_reduction, off="no SE blocks")
    check_positive(self, "se_divisor", self.se_divisor)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    preact = self.version == "v2"
    conv = functools.partial(Conv, use_bias=False, kernel_init=he_normal_fan_out,
                             dtype=self.dtype, param_dtype=jnp.float32)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32)
    se = None
    if self.se_reduction:
      se = functools.partial(squeeze_excite, reduction=self.se_reduction,
                             divisor=self.se_divisor, dtype=self.dtype)
    block = Bottleneck if self.block == "bottleneck" else BasicBlock
    extra = {"stride_on_1x1": self.version == "v1"} if block is Bottleneck else {}

    x = x.astype(self.dtype)
    x = conv(self.width, (7, 7), 2, padding=((3, 3), (3, 3)), name="conv1")(x)
    x = norm(name="bn1")(x)
    x = nn.relu(x)
    x = max_pool(x, 3, 2, pad=1)
    for stage, blocks in enumerate(self.stage_sizes):
      for b in range(blocks):
        x = block(features=self.width * 2**stage, conv=conv, norm=norm,
                  strides=2 if stage > 0 and b == 0 else 1,
                  zero_init_residual=self.zero_init_residual, preact=preact,
                  preactivate=stage > 0 or b > 0, se=se,
                  name=f"stage{stage + 1}_block{b + 1}", **extra)(x)
    if preact:  # v2: the last unit's output is normalised and activated once more
      x = nn.relu(norm(name="final_bn")(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                    name="fc")(x)


for _depth, (_sizes, _block) in DEPTHS.items():
  _net = functools.partial(ResNet, stage_sizes=_sizes, block=_block)
  register(f"resnet{_depth}", _net, layer_groups=layer_ids)
  register(f"resnet{_depth}_v1", functools.partial(_net, version="v1"), layer_groups=layer_ids)
  register(f"resnet{_depth}_v2", functools.partial(_net, version="v2"), layer_groups=layer_ids)
  register(f"se_resnet{_depth}", functools.partial(_net, se_reduction=16),
           layer_groups=layer_ids)


# ------------------------------------------------------------------- PyTorch weights


@tc.register_converter(*(f"{p}resnet{d}" for p in ("", "se_") for d in DEPTHS))
def convert_resnet(sd: tc.StateDict, model=None) -> dict:
  """torchvision's or timm's ResNet / timm's SE-ResNet state dict -> our variables.

  Both libraries name a ResNet's tensors alike (``layer{s}.{b}.conv{i}``, ``bn{i}``,
  ``downsample.0``/``.1``, ``fc``), so one reader takes either; timm's SE-ResNets add
  ``layer{s}.{b}.se.fc1``/``fc2``. Both are v1.5 networks (stride on the 3x3 conv): a
  v1 model would load the same shapes and compute something else, so it is refused.
  """
  if model is not None and not (isinstance(model, ResNet) and model.version == "v1.5"):
    raise tc.ConversionError("torchvision/timm ResNet weights convert into v1.5 models "
                             "(resnet18..152, se_resnet*), not into v1 or v2 models")
  has_se = any(".se.fc1." in k for k in sd.keys())
  if model is not None and has_se != bool(model.se_reduction):
    raise tc.ConversionError(
        f"the checkpoint {'has' if has_se else 'has no'} SE blocks but the model "
        f"{'has none' if not model.se_reduction else 'has them'}: use se_resnet* for "
        "timm's seresnet*, resnet* otherwise")
  params: dict[str, Any] = {"conv1": tc.conv(sd, "conv1")}
  stats: dict[str, Any] = {}
  params["bn1"], stats["bn1"] = tc.batch_norm(sd, "bn1")
  stage = 1
  while f"layer{stage}.0.conv1.weight" in sd:
    b = 0
    while f"layer{stage}.{b}.conv1.weight" in sd:
      theirs, ours = f"layer{stage}.{b}", f"stage{stage}_block{b + 1}"
      p, s = params.setdefault(ours, {}), stats.setdefault(ours, {})
      i = 1
      while f"{theirs}.conv{i}.weight" in sd:
        p[f"conv{i}"] = tc.conv(sd, f"{theirs}.conv{i}")
        p[f"bn{i}"], s[f"bn{i}"] = tc.batch_norm(sd, f"{theirs}.bn{i}")
        i += 1
      if f"{theirs}.downsample.0.weight" in sd:
        p["proj_conv"] = tc.conv(sd, f"{theirs}.downsample.0")
        p["proj_bn"], s["proj_bn"] = tc.batch_norm(sd, f"{theirs}.downsample.1")
      if f"{theirs}.se.fc1.weight" in sd:
        p["se"] = {"fc1": tc.conv(sd, f"{theirs}.se.fc1"), "fc2": tc.conv(sd, f"{theirs}.se.fc2")}
      b += 1
    stage += 1
  params["fc"] = tc.dense(sd, "fc")
  # Copies: a state dict's arrays may share memory with the torch tensors.
  return {"params": jax.tree.map(np.array, params), "batch_stats": jax.tree.map(np.array, stats)}
