"""kernels/: the convolution backend switch, and oneDNN's convolutions as XLA custom calls."""

import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import kernels
from kernels import onednn
from models import layers

needs_onednn = pytest.mark.skipif(
    not onednn.installed(),
    reason="oneDNN's packages (x86-64 Linux only, requirements.txt) or g++ are missing")

NHWC = ("NHWC", "HWIO", "NHWC")
# (input NHWC, kernel HWIO, strides, padding, kernel dilation, groups): the convolutions
# of the zoo's families, and the asymmetric and uneven cases around them.
CASES = [
    ((4, 9, 9, 3), (3, 3, 3, 5), (1, 1), "SAME", (1, 1), 1),            # a stem
    ((4, 10, 10, 4), (3, 3, 4, 6), (2, 2), ((1, 1), (1, 1)), (1, 1), 1),  # ResNet's stride 2
    ((2, 8, 8, 4), (3, 3, 4, 8), (2, 2), "SAME", (1, 1), 1),            # SAME: pads 0 / 1
    ((2, 8, 7, 6), (3, 3, 6, 6), (1, 1), ((2, 0), (1, 2)), (2, 2), 1),  # uneven, dilated
    ((2, 9, 9, 6), (5, 5, 2, 12), (1, 1), "SAME", (1, 1), 3),           # grouped (AlexNet)
    ((2, 9, 9, 8), (7, 7, 1, 8), (1, 1), ((3, 3), (3, 3)), (1, 1), 8),  # depthwise (ConvNeXt)
    ((3, 6, 6, 4), (1, 1, 4, 4), (1, 1), "VALID", (1, 1), 1),           # 1x1
    ((2, 11, 11, 3), (4, 4, 3, 4), (3, 3), "VALID", (1, 1), 1),         # patchify, uncovered
    # Above onednn_conv.cc's kOneThreadBelow (9.4M multiply-adds): on every core; the
    # ones above run on the calling thread alone.
    ((8, 16, 16, 16), (3, 3, 16, 32), (1, 1), "SAME", (1, 1), 1),
]


def _loss_and_grads(conv, x, w, strides, padding, dilation, groups):
  def loss(x, w):
    y = conv(x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=NHWC,
             feature_group_count=groups)
    return jnp.sum(y * jnp.cos(y)), y  # a cotangent that differs at every output
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(x, w)


@needs_onednn
@pytest.mark.parametrize("x_shape,w_shape,strides,padding,dilation,groups", CASES)
def test_onednn_convolution_and_its_gradients_equal_xla(x_shape, w_shape, strides, padding,
                                                          dilation, groups):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
  w = jnp.asarray(rng.standard_normal(w_shape), jnp.float32)
  (_, y), (dx, dw) = _loss_and_grads(lax.conv_general_dilated, x, w, strides, padding,
                                     dilation, groups)
  (_, y1), (dx1, dw1) = _loss_and_grads(onednn.conv_general_dilated, x, w, strides,
                                        padding, dilation, groups)
  for ours, ref in ((y1, y), (dx1, dx), (dw1, dw)):
    assert ours.shape == ref.shape
    # float32 sums of up to a few hundred terms in another order
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * float(jnp.abs(ref).max()))
  assert float(jnp.abs(dw).max()) > 0 and float(jnp.abs(dx).max()) > 0


@needs_onednn
def test_layers_conv_dispatches_on_the_backend_at_trace_time():
  """The same module and parameters; inside ``conv_backend('onednn')`` the traced program
  calls oneDNN's three custom calls (forward, input and kernel gradients) in place of
  XLA's convolution, outside it calls none."""
  conv = layers.Conv(6, (3, 3), strides=2)
  x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 8, 8, 3)), jnp.float32)
  params = conv.init(jax.random.key(0), x)
  ref_params = nn.Conv(6, (3, 3), strides=2).init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref_params)

  def grads_fn():  # a new function each time: JAX caches a function's traces
    return lambda p, x: jax.grad(lambda p, x: jnp.sum(conv.apply(p, x) ** 2),
                                 argnums=(0, 1))(p, x)

  xla_text = str(jax.make_jaxpr(grads_fn())(params, x))
  with kernels.conv_backend("onednn"):
    assert kernels.current() == "onednn"
    text = str(jax.make_jaxpr(grads_fn())(params, x))
    got = jax.jit(grads_fn())(params, x)
  assert kernels.current() == "xla"
  for target in onednn.TARGETS.values():
    assert target in text and target not in xla_text
  assert "conv_general_dilated" in xla_text and "conv_general_dilated" not in text
  want = jax.jit(grads_fn())(params, x)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_backend_context_restores_and_rejects_unknown_names():
  assert kernels.current() == "xla"
  with pytest.raises(RuntimeError):
    with kernels.conv_backend("onednn"):
      raise RuntimeError("inside")
  assert kernels.current() == "xla"
  with pytest.raises(ValueError, match="unknown conv_backend 'mkl'; valid values: xla, onednn"):
    with kernels.conv_backend("mkl"):
      pass


@needs_onednn
@pytest.mark.parametrize("call,message", [
    (lambda x, w: onednn.conv_general_dilated(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16),
                                              (1, 1), "SAME", dimension_numbers=NHWC),
     "its input is bfloat16, and it runs float32"),
    (lambda x, w: onednn.conv_general_dilated(x, w, (1, 1), "SAME", lhs_dilation=(2, 2),
                                              dimension_numbers=NHWC),
     "input dilation (2, 2) (a transposed convolution)"),
    (lambda x, w: onednn.conv_general_dilated(x, w, (1, 1), ((-1, 0), (0, 0)),
                                              dimension_numbers=NHWC),
     "negative padding"),
    (lambda x, w: onednn.conv_general_dilated(
        x.transpose(0, 3, 1, 2), w, (1, 1), "SAME", dimension_numbers=("NCHW", "HWIO", "NCHW")),
     "it runs NHWC inputs and HWIO kernels"),
    (lambda x, w: onednn.conv_general_dilated(x[:, 0], w[0], (1,), "SAME",
                                              dimension_numbers=("NWC", "WIO", "NWC")),
     "it runs 2-D convolutions only"),
])
def test_onednn_refuses_what_it_does_not_run_by_name(call, message):
  x, w = jnp.ones((2, 6, 6, 3)), jnp.ones((3, 3, 3, 4))
  with pytest.raises(kernels.KernelError) as e:
    jax.eval_shape(call, x, w)
  assert message in str(e.value)
  assert str(e.value).startswith("conv_backend='onednn' cannot run the convolution of ")
  assert str(e.value).endswith("or --config.conv_backend=xla")


def test_onednn_runs_on_one_cpu_device_only():
  with pytest.raises(kernels.KernelError, match="runs on the CPU, and this run's devices "
                     "are gpu"):
    onednn.check(1, "gpu")
  with pytest.raises(kernels.KernelError, match="runs on one CPU device .* this run has 2; "
                     "run it as one process without --xla_force_host_platform_device_count"):
    onednn.check(2, "cpu")


def test_missing_packages_and_compiler_are_one_line(monkeypatch, tmp_path):
  monkeypatch.setattr(onednn, "LIBRARY", "no-such-onednn-package")
  with pytest.raises(kernels.KernelError, match="needs the no-such-onednn-package package "
                     r"\(pip install -r requirements.txt"):
    onednn.build()
  monkeypatch.undo()
  if needs_onednn.args[0]:
    pytest.skip(needs_onednn.kwargs["reason"])
  monkeypatch.setenv("CXX", "no-such-compiler++")
  monkeypatch.setenv("CNN_HISTORY_KERNELS", str(tmp_path))
  with pytest.raises(kernels.KernelError, match=re.escape(
      "no C++ compiler 'no-such-compiler++' is on PATH; install g++ (or set CXX)")):
    onednn.build()
  assert os.listdir(tmp_path) == []


@needs_onednn
def test_build_is_cached_by_its_inputs_and_written_whole(monkeypatch, tmp_path):
  """A fresh directory: one compile, then the same file; nothing partial is left."""
  monkeypatch.setenv("CNN_HISTORY_KERNELS", str(tmp_path / "k"))
  path = onednn.build()
  assert os.path.dirname(path) == str(tmp_path / "k")
  assert os.listdir(tmp_path / "k") == [os.path.basename(path)]
  stamp = os.stat(path).st_mtime_ns
  assert onednn.build() == path and os.stat(path).st_mtime_ns == stamp
  edited = tmp_path / "onednn_conv.cc"  # another source: another file beside it
  with open(onednn.SOURCE) as f:
    edited.write_text(f.read() + "\n// edited\n")
  monkeypatch.setattr(onednn, "SOURCE", str(edited))
  other = onednn.build()
  assert other != path and sorted(os.listdir(tmp_path / "k")) == sorted(
      os.path.basename(p) for p in (path, other))
