"""oneDNN's convolutions as XLA:CPU custom calls: ``config.conv_backend='onednn'``.

Why. On a CPU, XLA runs a convolution as Eigen's im2col packing and a matrix product (or
as a YNNPACK fusion), and its kernel gradient behind layout copies; PyTorch's CPU build
calls oneDNN's direct convolution kernels (brgemm, on AVX-512), which pack nothing. On
the 2-core AVX-512 machine of benchmarks/README.md ResNet-20's convolutions, forward and
both gradients, took 153 ms a step in XLA (its best flags) and 77 ms through this module
(oneDNN 3.2; PyTorch's 80 ms; ``benchmarks/conv_layers.py --formulation onednn``). No
XLA flag moves them to oneDNN (benchmarks/README.md, "The CPU gap in detail"), so this
module calls oneDNN itself, through JAX's FFI: ``onednn_conv.cc`` holds one handler per
direction (forward, input gradient, kernel gradient) and this file ties them together
with ``jax.custom_vjp``. oneDNN is the library PyTorch's CPU convolutions come from, so
nothing numerical is written here: the C++ only describes shapes and calls it.

What it runs. 2-D convolutions in float32, NHWC activations and HWIO kernels (flax's),
any strides, padding (not negative), kernel dilation and groups; not input dilation
(transposed convolutions) or batch groups. Anything else raises
:class:`KernelError` when traced, naming the convolution: a config never gets a silent
mix of libraries. It is for a run on one CPU device: oneDNN spreads each convolution
over the cores itself (OpenMP, ``OMP_NUM_THREADS`` threads), and the custom call is
not partitioned over a mesh.

Where it comes from. ``onednn-cpu-gomp`` (the library, GNU OpenMP threading, no other
runtime) and ``onednn-devel-cpu-gomp`` (its headers) from PyPI, both in requirements.txt
on x86-64 Linux; the handlers are compiled once with the system's C++ compiler
(``$CXX``, else ``g++``, about 2 s) into ``~/.cache/cnn-history/kernels`` (or
``$CNN_HISTORY_KERNELS``), keyed by a hash of the source, the library, JAX's FFI headers
and the compiler, and written atomically so parallel test workers can share it.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import tempfile
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from kernels import KernelError

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onednn_conv.cc")
LIBRARY = "onednn-cpu-gomp"
HEADERS = "onednn-devel-cpu-gomp"
CACHE = os.path.join("~", ".cache", "cnn-history", "kernels")
TARGETS = {"fwd": "cnn_onednn_conv_fwd", "bwd_data": "cnn_onednn_conv_bwd_data",
           "bwd_weights": "cnn_onednn_conv_bwd_weights"}
_NHWC = ("NHWC", "HWIO", "NHWC")
FIX = "or --config.conv_backend=xla"


def _installed_file(dist: str, suffix: str) -> str | None:
  try:
    files = importlib.metadata.files(dist) or ()
  except importlib.metadata.PackageNotFoundError:
    return None
  for f in files:
    if str(f).replace(os.sep, "/").endswith(suffix):
      return os.path.normpath(str(f.locate()))
  return None


def installed() -> bool:
  """Whether oneDNN's packages (the library and its headers) and a C++ compiler to build
  the bindings with are here."""
  return None not in (_installed_file(LIBRARY, "/libdnnl.so.3"),
                      _installed_file(HEADERS, "/oneapi/dnnl/dnnl.hpp"),
                      shutil.which(os.environ.get("CXX") or "g++"))


def _paths() -> tuple[str, str]:
  """(libdnnl.so.3, the include directory) of the installed packages."""
  library = _installed_file(LIBRARY, "/libdnnl.so.3")
  header = _installed_file(HEADERS, "/oneapi/dnnl/dnnl.hpp")
  if library is None or header is None:
    missing = " and ".join(d for d, f in ((LIBRARY, library), (HEADERS, header)) if f is None)
    raise KernelError(f"conv_backend='onednn' needs the {missing} package (pip install -r "
                      f"requirements.txt, on x86-64 Linux), {FIX}")
  return library, os.path.dirname(os.path.dirname(os.path.dirname(header)))


def _compiler() -> str:
  cxx = os.environ.get("CXX") or "g++"
  if shutil.which(cxx) is None:
    raise KernelError(f"conv_backend='onednn' compiles its JAX bindings once, and no C++ "
                      f"compiler {cxx!r} is on PATH; install g++ (or set CXX), {FIX}")
  return cxx


def build() -> str:
  """Compiles ``onednn_conv.cc`` (once per source, library, JAX, compiler and flags) and returns
  the shared library's path."""
  library, include = _paths()
  cxx = _compiler()
  ffi_include = jax.ffi.include_dir()
  flags = ["-O2", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-w"]
  digest = hashlib.sha256()
  with open(SOURCE, "rb") as f:
    digest.update(f.read())
  for part in (library, str(os.path.getsize(library)), ffi_include, jax.__version__, cxx,
               shutil.which(cxx), *flags):
    digest.update(part.encode() + b"\0")
  directory = os.path.expanduser(os.environ.get("CNN_HISTORY_KERNELS") or CACHE)
  target = os.path.join(directory, f"onednn_conv-{digest.hexdigest()[:16]}.so")
  if os.path.exists(target):
    return target
  try:
    os.makedirs(directory, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=directory, suffix=".so.partial")
    os.close(fd)
  except OSError as e:
    raise KernelError(f"conv_backend='onednn': cannot write its bindings to {directory} "
                      f"({e.strerror}); set CNN_HISTORY_KERNELS to a writable directory, "
                      f"{FIX}") from None
  libdir = os.path.dirname(library)
  command = [cxx, *flags, SOURCE, "-I", ffi_include,
             "-I", include, "-L", libdir, "-l:libdnnl.so.3", f"-Wl,-rpath,{libdir}",
             "-o", partial]
  done = subprocess.run(command, capture_output=True, text=True)
  if done.returncode:
    os.unlink(partial)
    first = next((line for line in done.stderr.splitlines() if "error" in line),
                 done.stderr.strip()[:300])
    raise KernelError(f"conv_backend='onednn': compiling {SOURCE} failed: {first}; {FIX}")
  os.replace(partial, target)  # atomic: a parallel build of the same key writes the same
  return target


@functools.cache
def load() -> str:
  """Builds (or finds) the bindings and registers them with XLA:CPU; returns the path."""
  path = build()
  lib = ctypes.CDLL(path)
  for name in TARGETS.values():
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
  return path


def check(num_devices: int, platform: str) -> None:
  """What a run with conv_backend='onednn' needs beyond its config: raises KernelError."""
  if platform != "cpu":
    raise KernelError(f"conv_backend='onednn' runs on the CPU, and this run's devices are "
                      f"{platform}; use --config.conv_backend=xla there")
  if num_devices != 1:
    raise KernelError(f"conv_backend='onednn' runs on one CPU device (oneDNN spreads each "
                      f"convolution over the cores itself), and this run has {num_devices}; "
                      f"run it as one process without --xla_force_host_platform_device_count, "
                      f"{FIX}")
  load()


# (strides, padding_lo, padding_hi, dilation, groups): what a call needs besides shapes.
Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int], int]


def _call(direction: str, a: jax.Array, b: jax.Array, shape: Sequence[int],
          geometry: Geometry) -> jax.Array:
  strides, lo, hi, dilation, groups = geometry
  # Under jax.vmap (per-example gradients, say) one call per example: correct, not fast.
  return jax.ffi.ffi_call(TARGETS[direction], jax.ShapeDtypeStruct(tuple(shape), jnp.float32),
                          vmap_method="sequential")(
      a, b, strides=np.asarray(strides, np.int64), padding_lo=np.asarray(lo, np.int64),
      padding_hi=np.asarray(hi, np.int64), dilation=np.asarray(dilation, np.int64),
      groups=np.int64(groups))


def _out_shape(x_shape, w_shape, geometry: Geometry) -> tuple[int, ...]:
  strides, lo, hi, dilation, _ = geometry
  spatial = [(x_shape[1 + i] + lo[i] + hi[i] - (w_shape[i] - 1) * dilation[i] - 1) // strides[i]
             + 1 for i in range(2)]
  return (x_shape[0], *spatial, w_shape[3])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x: jax.Array, w: jax.Array, geometry: Geometry) -> jax.Array:
  return _call("fwd", x, w, _out_shape(x.shape, w.shape, geometry), geometry)


def _conv_fwd(x, w, geometry):
  return _conv(x, w, geometry), (x, w)


def _conv_bwd(geometry, residuals, dy):
  x, w = residuals
  return (_call("bwd_data", dy, w, x.shape, geometry),
          _call("bwd_weights", x, dy, w.shape, geometry))


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]],
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None) -> jax.Array:
  """``lax.conv_general_dilated``'s signature and values, computed by oneDNN.

  ``precision`` has no effect (float32 on a CPU is exact either way); everything else
  that oneDNN's path does not run raises :class:`KernelError`.
  """
  del precision
  load()  # registered before any program that calls it is compiled (or read from a cache)
  what = f"convolution of {tuple(lhs.shape)} by kernel {tuple(rhs.shape)}"

  def refuse(why: str) -> KernelError:
    return KernelError(f"conv_backend='onednn' cannot run the {what}: {why}; {FIX}")

  if lhs.ndim != 4:
    raise refuse("it runs 2-D convolutions only")
  wanted = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  given = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  if given != wanted:
    raise refuse(f"it runs NHWC inputs and HWIO kernels, not {dimension_numbers}")
  for x, name in ((lhs, "input"), (rhs, "kernel")):
    if x.dtype != jnp.float32:
      raise refuse(f"its {name} is {x.dtype}, and it runs float32 (--config.dtype=float32)")
  if preferred_element_type not in (None, jnp.float32):
    raise refuse(f"preferred_element_type={preferred_element_type}")
  if lhs_dilation is not None and tuple(lhs_dilation) != (1, 1):
    raise refuse(f"input dilation {tuple(lhs_dilation)} (a transposed convolution)")
  if batch_group_count != 1:
    raise refuse(f"batch_group_count={batch_group_count}")
  dilation = tuple(int(d) for d in (rhs_dilation or (1, 1)))
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    window = [(k - 1) * d + 1 for k, d in zip(rhs.shape[:2], dilation)]
    padding = lax.padtype_to_pads(lhs.shape[1:3], window, strides, padding)
  pads = [(int(a), int(b)) for a, b in padding]
  if min(min(p) for p in pads) < 0:
    raise refuse(f"negative padding {pads}")
  geometry = (strides, (pads[0][0], pads[1][0]), (pads[0][1], pads[1][1]), dilation,
              int(feature_group_count))
  return _conv(lhs, rhs, geometry)
