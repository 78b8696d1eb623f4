"""airbench: Keller Jordan (2024), "94% on CIFAR-10 in 3.29 Seconds on a Single GPU"
(arXiv 2404.00498; github.com/KellerJordan/cifar10-airbench, ``airbench94.py``).

Not a milestone of the CNN story but its stopwatch: the network and training tricks that
a decade of speedruns (Page's ResNet-9 "DAWNBench" runs, tysam-code's hlb-CIFAR10,
airbench) converged on, used here for the time-to-accuracy speedrun
(``configs/speedrun_fashion_mnist.py``). The network (``make_net`` of airbench94.py):

  2x2 conv, no padding, 2 * C * 4 filters, with bias ("whitening" layer), GELU
  three ConvGroups of widths (64, 256, 256), each:
      3x3 conv (same), 2x2 max-pool, BatchNorm, GELU, 3x3 conv (same), BatchNorm, GELU
  3x3 max-pool (the 3x3 map left from 32x32 or 28x28 input -> 1x1), flatten
  linear to the classes, no bias, times 1/9

with BatchNorm that learns only its bias (the scale is frozen at 1), eps 1e-12 and
running statistics updated by ``running = 0.6 * running + 0.4 * batch`` (the paper's
"momentum 0.6": PyTorch's ``momentum=0.4``, Flax's ``momentum=0.6``). Convolutions have
no bias; each 3x3 conv starts as PyTorch's default (uniform, variance 1 / (3 fan_in))
with its first ``in`` filters set to the identity (``torch.nn.init.dirac_``), so the
group starts close to passing its input through.

| variant    | widths         | params, CIFAR-10 (3 channels) | Fashion-MNIST (1) |
|------------|----------------|-------------------------------|-------------------|
| airbench94 | (64, 256, 256) | 1,971,640                     | 1,962,152         |

(The paper's 1.97M; counted without the frozen BatchNorm scales, which PyTorch keeps as
parameters that do not train: 1,152 more.)

Choices where we differ from airbench94.py, and why:

* The whitening layer is a 2x2 conv with PyTorch's default init, learned like the rest,
  unless the run asks for airbench's: its filters set once from the eigenvectors of the
  first 5,000 training images' 2x2 patches (:func:`whitening_filters`, registered as the
  family's data init: ``--config.data_init_images=5000``) and frozen, the bias trained
  for the first epochs only (``--config.freeze=whiten/kernel,whiten/bias:3``). The
  speedrun config's ``whiten`` flag sets both.
* Lookahead, the per-parameter learning-rate boost of the BatchNorm biases (x64:
  ``--config.lr_mults=*/norm*/bias:64``, the speedrun's ``bias64``) and the "kilostep"
  learning-rate parameterisation are optimizer choices, left to the config (which uses
  SGD with Nesterov momentum or Muon, and EMA where it helps).
* ``widths`` is a field, so the speedrun's CPU config can run a narrow net.
* airbench94_muon's classifier (``head_unit_std`` with ``scaling_factor = 1 / 256``):
  the weights rescaled to standard deviation 1 at init, the logits divided by the width.
* BatchNorm's batch variance is Flax's one-pass E[x^2] - E[x]^2 unless
  ``bn_fast_variance=False`` asks for PyTorch's E[(x - E[x])^2]. They agree on ordinary
  channels (the two forms' first training steps on Fashion-MNIST match to 4 digits), but
  with eps 1e-12 a channel whose variance is tiny beside its squared mean is lost to
  float32 rounding in the one-pass form and leaves BatchNorm as amplified noise. Grey
  images repeated as RGB (``grey_to_rgb``) and normalised by their own statistics make
  such channels: 16 of the 24 data-init whitening filters see only the three equal
  channels' differences. On that input the two-pass form kept the speedrun learning to
  78% at step 24, where the one-pass one had fallen back to 32%, but it then collapsed
  to chance all the same (at seeds 0 and 1), and airbench94_muon.py itself, run in
  float32, failed on it at seed 0 (at seed 1 it learned, more slowly than on one channel).
  The anchor's loader normalises any input with CIFAR-10's per-channel mean and std,
  which keep the channels apart (``normalization='cifar10'``); with that, ours and the
  script learn on three channels as on one (benchmarks/README.md, "The speedrun, run by
  run").
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models import register
from models.layers import Conv, check_positive, check_positive_entries, get_activation, max_pool

Array = jax.Array

# PyTorch's default conv / linear init: kaiming_uniform(a=sqrt(5)) = U(+-1 / sqrt(fan_in)).
torch_default_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def dirac_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
  """PyTorch's default conv init with the first ``in`` filters set to the identity
  (``torch.nn.init.dirac_(w[:w.size(1)])``): filter o < in is 1 at the centre tap of input
  channel o and 0 elsewhere. HWIO layout."""
  kh, kw, cin, cout = shape
  w = torch_default_init(key, shape, dtype)
  n = min(cin, cout)
  eye = jnp.zeros((kh, kw, cin, n), dtype).at[kh // 2, kw // 2].set(jnp.eye(cin, n, dtype=dtype))
  return w.at[..., :n].set(eye)


def unit_std_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
  """PyTorch's default init divided by its own standard deviation (airbench94_muon's
  classifier: ``w *= 1 / w.std()``; torch's ``std`` is the unbiased one)."""
  w = torch_default_init(key, shape, dtype)
  return w / jnp.std(w, ddof=1)


def whitening_filters(images: np.ndarray, kernel_size: int = 2, eps: float = 5e-4) -> np.ndarray:
  """airbench's data-dependent init of the whitening layer (``init_whiten``): the
  eigenvectors of the covariance of every ``kernel_size`` x ``kernel_size`` patch of
  ``images`` (normalised NHWC, as the network sees them), each divided by the square root
  of its eigenvalue plus ``eps``, then the same filters negated: ``2 * C * k * k``
  filters, HWIO, in the order of ascending eigenvalues (torch.linalg.eigh's). With the
  GELU after it, the pair passes both signs of each whitened component. Computed in
  float64 on the host (no compilation); airbench uses the first 5,000 training images."""
  x = np.asarray(images, np.float64)
  n, h, w, c = x.shape
  k = kernel_size
  if h < k or w < k:
    raise ValueError(f"whitening_filters: images of {h}x{w} are smaller than the {k}x{k} kernel")
  # Every k x k patch, flattened in (row, column, channel) order: HWI.
  taps = [x[:, i:h - k + 1 + i, j:w - k + 1 + j, :] for i in range(k) for j in range(k)]
  patches = np.stack(taps, axis=3).reshape(-1, k * k * c)
  covariance = patches.T @ patches / len(patches)
  eigenvalues, eigenvectors = np.linalg.eigh(covariance)
  filters = eigenvectors.T / np.sqrt(eigenvalues + eps)[:, None]  # (k*k*c, k*k*c): O x HWI
  filters = np.concatenate([filters, -filters]).reshape(2 * k * k * c, k, k, c)
  return np.ascontiguousarray(filters.transpose(1, 2, 3, 0)).astype(np.float32)


class ConvGroup(nn.Module):
  """conv, 2x2 max-pool, BN, GELU, conv, BN, GELU (airbench's ``ConvGroup``)."""
  features: int
  bn_momentum: float = 0.6
  dtype: Any = jnp.float32
  bn_fast_variance: bool = True

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    conv = functools.partial(Conv, self.features, (3, 3), padding="SAME", use_bias=False,
                             kernel_init=dirac_init, dtype=self.dtype, param_dtype=jnp.float32)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=self.bn_momentum, epsilon=1e-12, use_scale=False,
                             use_fast_variance=self.bn_fast_variance, dtype=self.dtype,
                             param_dtype=jnp.float32)
    gelu = get_activation("gelu")
    x = max_pool(conv(name="conv1")(x), window=2, stride=2)
    x = gelu(norm(name="norm1")(x))
    return gelu(norm(name="norm2")(conv(name="conv2")(x)))


class Airbench(nn.Module):
  """airbench94's network for small images (32x32 or 28x28, any channel count)."""

  num_classes: int = 10
  widths: tuple[int, int, int] = (64, 256, 256)
  whiten_kernel: int = 2
  bn_momentum: float = 0.6  # the weight of the old running statistics
  scaling_factor: float = 1 / 9  # the logits' scale
  # airbench94_muon: the classifier's PyTorch-default weights rescaled to standard
  # deviation 1 at init (``w *= 1 / w.std()``), with scaling_factor = 1 / width.
  head_unit_std: bool = False
  # BatchNorm's batch variance: Flax's one-pass form (True) or PyTorch's two-pass one
  # (False); the module docstring says where they part.
  bn_fast_variance: bool = True
  dtype: Any = jnp.float32

  def __post_init__(self) -> None:
    super().__post_init__()
    check_positive_entries(self, "widths", self.widths)
    check_positive(self, "whiten_kernel", self.whiten_kernel)
    check_positive(self, "scaling_factor", self.scaling_factor)

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    x = x.astype(self.dtype)
    k = self.whiten_kernel
    x = Conv(2 * x.shape[-1] * k * k, (k, k), padding="VALID", kernel_init=torch_default_init,
             bias_init=nn.initializers.zeros, dtype=self.dtype, param_dtype=jnp.float32,
             name="whiten")(x)
    x = get_activation("gelu")(x)
    for i, features in enumerate(self.widths):
      x = ConvGroup(features, self.bn_momentum, self.dtype, self.bn_fast_variance,
                    name=f"group{i + 1}")(x, train)
    x = jnp.max(x, axis=(1, 2))  # MaxPool2d(3) over the final 3x3 map
    x = nn.Dense(self.num_classes, use_bias=False,
                 kernel_init=unit_std_init if self.head_unit_std else torch_default_init,
                 dtype=self.dtype, param_dtype=jnp.float32, name="head")(x)
    return x * self.scaling_factor


def init_whitening(params: Any, images: np.ndarray) -> Any:
  """The registered data init (``--config.data_init_images=N``): the whitening layer's
  filters from the patches of ``images`` (:func:`whitening_filters`); its bias and the
  other parameters unchanged."""
  kernel = params["whiten"]["kernel"]
  filters = whitening_filters(images, kernel.shape[0])
  if filters.shape != kernel.shape:
    raise ValueError(f"whitening filters of shape {filters.shape} for a whiten kernel of "
                     f"{kernel.shape}: the images have {images.shape[-1]} channels")
  return {**params, "whiten": {**params["whiten"], "kernel": filters}}


register("airbench94", Airbench, data_init=init_whitening)
