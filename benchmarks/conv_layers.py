r"""Where the CPU gap is: each convolution of a network, forward and its two gradients,
timed alone in JAX (XLA, jitted) and in PyTorch (eager), same shapes and dtype.

  python benchmarks/conv_layers.py                         # ResNet-20's convolutions, batch 128
  python benchmarks/conv_layers.py --model resnet20 --batch 128 --out runs/speed/conv.md
  python benchmarks/conv_layers.py --plot runs/speed/conv.json=default \
      runs/speed/conv_flag.json=flag --out runs/speed/conv_both.png

The network's convolutions are read from its jaxpr (every ``conv_general_dilated`` of
one forward pass: input shape, kernel, strides, padding, groups); identical ones are timed
once and counted by how often they occur. For each: the forward, the gradient with
respect to the input (``dgrad``) and with respect to the kernel (``wgrad``), each the
median of ``--repeats`` calls after a warm-up, in milliseconds. PyTorch runs the same
convolution NCHW, channels_last (as ``throughput.py --compare torch``), with
``torch.nn.functional.conv2d`` and ``torch.nn.grad``'s input and weight gradients.
Last: the totals over the network (each shape times its count), ours / torch.

``--out FILE.md`` writes the table there, its numbers to ``FILE.json`` and a plot to
``FILE.png``: per distinct convolution (or BatchNorm), the milliseconds it costs a step
(its time times its count), ours and torch side by side, each bar split by direction.
``--plot A.json[=LABEL] B.json[=LABEL] --out X.png`` times nothing and draws earlier
invocations into one plot (e.g. with and without an XLA flag).

``--formulation`` times the same convolution run or written another way: ``onednn``
(oneDNN's kernels as custom calls, what ``config.conv_backend='onednn'`` runs;
kernels/onednn.py), or written in JAX, to see whether XLA:CPU runs any of them faster
than its own convolution: ``shifted_matmul`` (one matrix
product per kernel tap on a shifted view of the input, summed: what a convolution is
when no convolution kernel is used) or ``im2col`` (the patches gathered with
``lax.conv_general_dilated_patches``, then one matrix product); their gradients are
whatever JAX derives. Each equals the convolution to float32 rounding
(tests/test_benchmarks.py).

  python benchmarks/conv_layers.py --formulation shifted_matmul

``--hlo_ops`` times nothing: it compiles the gradient of the network's loss (training
mode, as the step runs it) and counts the instructions of the optimised HLO's entry
computation by op, fusions by name (``ynn_fusion``: work XLA hands to YNNPACK;
``transpose_copy_fusion``: a layout copy), with their result shapes. It shows what XLA
made of the network under the current ``XLA_FLAGS``.

  python benchmarks/conv_layers.py --hlo_ops

``--norms`` times, instead of the convolutions, each distinct BatchNorm of the network
(found by intercepting the Flax modules in one training-mode pass: input shape and
epsilon, counted) with a ReLU after it, the pair that follows most convolutions of the
ResNets: the training-mode forward (batch statistics, running averages updated) and the
forward with its backward (the gradient with respect to the input, scale and bias), in
JAX and as ``torch.nn.BatchNorm2d`` and ``torch.relu`` (channels_last, training mode,
``torch.autograd.grad``). It tells whether normalisation and activation, which XLA fuses
and PyTorch runs as separate kernels, are where a step loses time.

  python benchmarks/conv_layers.py --norms
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import re
import statistics
import sys
import time
from typing import Any, Callable, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
from training import host_memory  # noqa: E402  (the standard library only)

if __name__ == "__main__":  # before JAX starts, as train.py runs
  host_memory.use_huge_pages()

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import models  # noqa: E402
from benchmarks import report_files  # noqa: E402
from benchmarks.report_files import InputError  # noqa: E402
from kernels import onednn  # noqa: E402
from models import torch_convert  # noqa: E402


def _abstract(model_name: str, batch: int, image_shape: tuple[int, int, int],
              num_classes: int) -> tuple[Any, jax.ShapeDtypeStruct, Any]:
  """The model, its input batch and its variables, as shapes only (nothing computed)."""
  model = models.create_model(model_name, num_classes=num_classes)
  x = jax.ShapeDtypeStruct((batch, *image_shape), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  return model, x, variables


def conv_shapes(model_name: str, batch: int, image_shape: tuple[int, int, int],
                num_classes: int = 10) -> list[dict[str, Any]]:
  """The distinct convolutions of one forward pass, with how often each occurs."""
  model, x, variables = _abstract(model_name, batch, image_shape, num_classes)
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, x)
  found: dict[tuple, dict[str, Any]] = {}

  def walk(jp):
    for eqn in jp.eqns:
      for v in eqn.params.values():
        for sub in (v if isinstance(v, (list, tuple)) else [v]):
          inner = getattr(sub, "jaxpr", None)
          if inner is not None:
            walk(getattr(inner, "jaxpr", inner))
      if eqn.primitive.name != "conv_general_dilated":
        continue
      lhs, rhs = (a.aval.shape for a in eqn.invars[:2])
      dn = eqn.params["dimension_numbers"]
      # Shapes in NHWC / HWIO as flax lays them out.
      n, h, w, c = (lhs[i] for i in dn.lhs_spec[:1] + dn.lhs_spec[2:] + dn.lhs_spec[1:2])
      o, i_, kh, kw = (rhs[i] for i in dn.rhs_spec)
      key = (n, h, w, c, kh, kw, i_, o, tuple(eqn.params["window_strides"]),
             tuple(tuple(p) for p in eqn.params["padding"]),
             eqn.params["feature_group_count"])
      if key not in found:
        found[key] = {"input": (n, h, w, c), "kernel": (kh, kw, i_, o),
                      "strides": key[8], "padding": key[9], "groups": key[10], "count": 0}
      found[key]["count"] += 1

  walk(jaxpr.jaxpr)
  return list(found.values())


def norm_shapes(model_name: str, batch: int, image_shape: tuple[int, int, int],
                num_classes: int = 10) -> list[dict[str, Any]]:
  """The distinct BatchNorms over NHWC inputs of one training-mode forward pass (input
  shape and epsilon), with how often each occurs."""
  model, x, variables = _abstract(model_name, batch, image_shape, num_classes)
  found: dict[tuple, dict[str, Any]] = {}

  def record(call, args, kwargs, context):
    module = context.module
    if (isinstance(module, nn.BatchNorm) and context.method_name == "__call__"
        and args and len(args[0].shape) == 4 and module.axis in (-1, 3)):
      key = (tuple(args[0].shape), float(module.epsilon))
      found.setdefault(key, {"input": key[0], "epsilon": key[1], "count": 0})["count"] += 1
    return call(*args, **kwargs)

  def forward(variables, x):
    return model.apply(variables, x, train=True, mutable=["batch_stats"],
                       rngs={"dropout": jax.random.key(0)})

  with nn.intercept_methods(record):
    jax.eval_shape(forward, variables, x)
  return list(found.values())


def entry_ops(hlo_text: str) -> dict[str, collections.Counter]:
  """The instructions of an optimised HLO module's ENTRY computation: op -> Counter of
  result shapes (layouts dropped). A fusion counts under its name less the numeric suffix
  (``ynn_fusion.12`` -> ``ynn_fusion``), any other instruction under its opcode."""
  ops: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  lines = iter(hlo_text.splitlines())
  for line in lines:
    if line.startswith("ENTRY"):
      break
  for line in lines:
    if line.startswith("}"):
      break
    found = re.match(r"\s*(?:ROOT\s+)?%?([\w.\-]+) = (\(.*?\)|\S+) ([\w\-]+)\(", line)
    if not found:
      continue
    name, shape, opcode = found.groups()
    op = re.sub(r"\.\d+$", "", name) if opcode == "fusion" else opcode
    ops[op][re.sub(r"\{[^}]*\}", "", shape)] += 1
  return dict(ops)


def gradient_hlo(model_name: str, batch: int, image_shape: tuple[int, int, int],
                 num_classes: int = 10) -> str:
  """Optimised HLO of the gradient of a loss (the mean square of the logits) with respect
  to the parameters, the network in training mode; compiled from shapes alone."""
  model, x, variables = _abstract(model_name, batch, image_shape, num_classes)
  params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}

  def loss(params, rest, x):
    logits, _ = model.apply({"params": params, **rest}, x, train=True, mutable=list(rest),
                            rngs={"dropout": jax.random.key(0)})
    return jnp.mean(jnp.square(logits))

  return jax.jit(jax.grad(loss)).lower(params, rest, x).compile().as_text()


def _median_ms(fn: Callable[[], Any], sync: Callable[[Any], Any], repeats: int) -> float:
  sync(fn())  # compile / warm up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    sync(fn())
    times.append(time.perf_counter() - t)
  return 1e3 * statistics.median(times)


FORMULATIONS = ("conv", "onednn", "shifted_matmul", "im2col")


def formulated(conv: dict[str, Any], formulation: str = "conv") -> Callable[..., jax.Array]:
  """``f(x, k)``: ``conv`` (NHWC input, HWIO kernel) as XLA's convolution, oneDNN's
  (kernels/onednn.py) or, for ``groups == 1``, as matrix products (``FORMULATIONS``)."""
  strides, padding = conv["strides"], conv["padding"]
  if formulation == "conv":
    return lambda x, k: jax.lax.conv_general_dilated(
        x, k, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=conv["groups"])
  if formulation == "onednn":  # oneDNN's kernels as custom calls (config.conv_backend)
    return lambda x, k: onednn.conv_general_dilated(
        x, k, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=conv["groups"])
  if formulation not in FORMULATIONS:
    raise ValueError(f"--formulation {formulation!r} is not one of {', '.join(FORMULATIONS)}")
  if conv["groups"] != 1:
    raise ValueError(f"--formulation {formulation} writes groups=1 convolutions only, and "
                     f"this network has one with groups={conv['groups']}; use conv")
  if formulation == "im2col":
    def f(x, k):
      kh, kw, c, o = k.shape
      patches = jax.lax.conv_general_dilated_patches(  # features ordered (c, kh, kw)
          x, (kh, kw), strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
      return patches @ jnp.transpose(k, (2, 0, 1, 3)).reshape(c * kh * kw, o)
    return f

  def f(x, k):  # shifted_matmul
    kh, kw = k.shape[:2]
    (sh, sw), (pt, pb), (pl, pr) = strides, *padding
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = (xp.shape[1] - kh) // sh + 1
    ow = (xp.shape[2] - kw) // sw + 1
    return sum(xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] @ k[i, j]
               for i in range(kh) for j in range(kw))
  return f


def time_jax(conv: dict[str, Any], repeats: int, formulation: str = "conv"
             ) -> dict[str, float]:
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(conv["input"]), jnp.float32)
  k = jnp.asarray(rng.standard_normal(conv["kernel"]) * 0.1, jnp.float32)
  f = formulated(conv, formulation)
  g = jnp.asarray(rng.standard_normal(jax.eval_shape(f, x, k).shape), jnp.float32)
  fwd = jax.jit(f)
  dgrad = jax.jit(lambda x, k, g: jax.vjp(lambda x: f(x, k), x)[1](g)[0])
  wgrad = jax.jit(lambda x, k, g: jax.vjp(lambda k: f(x, k), k)[1](g)[0])
  sync = jax.block_until_ready
  return {"fwd": _median_ms(lambda: fwd(x, k), sync, repeats),
          "dgrad": _median_ms(lambda: dgrad(x, k, g), sync, repeats),
          "wgrad": _median_ms(lambda: wgrad(x, k, g), sync, repeats)}


def time_torch(torch, conv: dict[str, Any], repeats: int) -> dict[str, float]:
  n, h, w, c = conv["input"]
  kh, kw, i_, o = conv["kernel"]
  (pt, pb), (pl, pr) = conv["padding"]
  if pt != pb or pl != pr:
    return {}  # asymmetric padding: not one conv2d call
  cl = torch.channels_last
  x = torch.randn(n, c, h, w).contiguous(memory_format=cl)
  k = (torch.randn(o, i_, kh, kw) * 0.1).contiguous(memory_format=cl)
  kwargs = dict(stride=conv["strides"], padding=(pt, pl), groups=conv["groups"])
  y = torch.nn.functional.conv2d(x, k, **kwargs)
  g = torch.randn_like(y).contiguous(memory_format=cl)
  sync = lambda _: None  # eager CPU ops have finished when they return
  with torch.no_grad():
    return {
        "fwd": _median_ms(lambda: torch.nn.functional.conv2d(x, k, **kwargs), sync, repeats),
        "dgrad": _median_ms(lambda: torch.nn.grad.conv2d_input(x.shape, k, g, **kwargs),
                            sync, repeats),
        "wgrad": _median_ms(lambda: torch.nn.grad.conv2d_weight(x, k.shape, g, **kwargs),
                            sync, repeats)}


def time_norm_jax(norm: dict[str, Any], repeats: int) -> dict[str, float]:
  """BatchNorm (training mode, momentum 0.9) then ReLU: ``fwd`` and ``fwd+bwd`` in ms."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(norm["input"]), jnp.float32)
  g = jnp.asarray(rng.standard_normal(norm["input"]), jnp.float32)
  bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=norm["epsilon"])
  variables = bn.init(jax.random.key(0), x)

  def f(params, stats, x):
    y, updates = bn.apply({"params": params, "batch_stats": stats}, x,
                          mutable=["batch_stats"])
    return jax.nn.relu(y), updates

  def f_and_grad(params, stats, x, g):
    (_, updates), vjp = jax.vjp(lambda p, x: f(p, stats, x), params, x)
    return vjp((g, jax.tree.map(jnp.zeros_like, updates))), updates

  fwd, both = jax.jit(f), jax.jit(f_and_grad)
  args = (variables["params"], variables["batch_stats"], x)
  sync = jax.block_until_ready
  return {"fwd": _median_ms(lambda: fwd(*args), sync, repeats),
          "fwd+bwd": _median_ms(lambda: both(*args, g), sync, repeats)}


def time_norm_torch(torch, norm: dict[str, Any], repeats: int) -> dict[str, float]:
  n, h, w, c = norm["input"]
  cl = torch.channels_last
  bn = torch.nn.BatchNorm2d(c, eps=norm["epsilon"], momentum=0.1).train()
  x = torch.randn(n, c, h, w).contiguous(memory_format=cl).requires_grad_()
  g = torch.randn(n, c, h, w).contiguous(memory_format=cl)
  sync = lambda _: None  # eager CPU ops have finished when they return

  def fwd():
    with torch.no_grad():
      return torch.relu(bn(x))

  def both():
    return torch.autograd.grad(torch.relu(bn(x)), (x, bn.weight, bn.bias), g)

  return {"fwd": _median_ms(fwd, sync, repeats), "fwd+bwd": _median_ms(both, sync, repeats)}


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
  return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
          + ["| " + " | ".join(r) + " |" for r in rows])


PARTS = {"convolutions": ("fwd", "dgrad", "wgrad"), "norms": ("fwd", "bwd")}


def _report(lines: Sequence[str], total: str, out: str | None,
            record: dict[str, Any]) -> None:
  """The markdown table and its total line, printed; with ``--out FILE.md`` also written
  there, with ``record`` (the numbers) in FILE.json and its plot in FILE.png."""
  text = "\n".join(lines) + "\n\n" + total
  print("\n" + text)
  if out:
    stem = report_files.write(out, text + "\n", record,
                              lambda png: plot([("", record)], png))
    print(f"written: {out}, {stem}.json, {stem}.png")


def _record(kind: str, args: argparse.Namespace, rows: list[dict[str, Any]],
            torch) -> dict[str, Any]:
  """What an invocation measured, as ``--out``'s JSON holds it: per row the shapes, the
  count and each side's milliseconds per direction (``parts``)."""
  return {"kind": kind, "model": args.model, "batch": args.batch,
          "platform": jax.devices()[0].platform,
          "formulation": args.formulation if kind == "convolutions" else None,
          "xla_flags": os.environ.get("XLA_FLAGS", ""), "jax": jax.__version__,
          "torch": getattr(torch, "__version__", None),
          "load_average": round(os.getloadavg()[0], 2),
          "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
          "rows": rows}


def _parts(record: dict[str, Any], row: dict[str, Any], side: str) -> list[float] | None:
  """A row's milliseconds per step on one side, per direction (count times each time;
  for BatchNorms the backward is fwd+bwd less fwd); None where that side was not timed."""
  times = row.get(side) or {}
  if not times:
    return None
  if record["kind"] == "norms":
    times = {"fwd": times["fwd"], "bwd": times["fwd+bwd"] - times["fwd"]}
  return [row["count"] * times[p] for p in PARTS[record["kind"]]]


def _tick(record: dict[str, Any], row: dict[str, Any]) -> str:
  n, h, w, c = row["input"]
  if record["kind"] == "norms":
    return f"{h}x{w}x{c}\nx{row['count']}"
  kh, kw, _, o = row["kernel"]
  stride = "" if tuple(row["strides"]) == (1, 1) else f" /{row['strides'][0]}"
  return f"{h}x{w}x{c}\n{kh}x{kw}->{o}{stride}\nx{row['count']}"


def plot(runs: Sequence[tuple[str, dict[str, Any]]], path: str
         ) -> dict[str, list[list[float] | None]]:
  """One PNG of ``runs`` (``(label, record)`` pairs, one invocation each, all of one
  kind): per distinct convolution or BatchNorm, one bar per invocation for ours and one
  for torch where it was timed, the milliseconds a step spends there (each time times its
  count), split by direction. Returns what was drawn: ``{series: [parts or None per
  shape]}``."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  kinds = {record["kind"] for _, record in runs}
  if len(kinds) != 1:
    raise InputError(f"--plot: the files hold {' and '.join(sorted(kinds))}; "
                     "plot one kind")
  kind, first = kinds.pop(), runs[0][1]
  ticks = list(dict.fromkeys(_tick(r, row) for _, r in runs for row in r["rows"]))
  series = {}
  for label, record in runs:
    by_tick = {_tick(record, row): row for row in record["rows"]}
    for side in ("ours", "torch"):
      parts = [_parts(record, by_tick[t], side) if t in by_tick else None for t in ticks]
      if any(p is not None for p in parts):
        name = "ours" if side == "ours" else f"torch {record['torch'] or ''}".strip()
        series[f"{label} {name}".strip()] = parts
  width = 0.8 / len(series)
  fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(ticks) + 2), 4.8))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  hatches = (None, "//", "..", "xx", "\\\\", "--")
  for k, (name, parts) in enumerate(series.items()):
    xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(ticks))]
    drawn = [(x, p) for x, p in zip(xs, parts) if p is not None]
    bottom = [0.0] * len(drawn)
    for j, direction in enumerate(PARTS[kind]):
      heights = [p[j] for _, p in drawn]
      ax.bar([x for x, _ in drawn], heights, width, bottom=bottom, color=colors[j],
             hatch=hatches[k % len(hatches)], edgecolor="white",
             label=direction if k == 0 else None)
      bottom = [b + h for b, h in zip(bottom, heights)]
    for (x, _), top in zip(drawn, bottom):
      ax.annotate(f"{top:.0f}", (x, top), ha="center", va="bottom", fontsize=7)
  # The series: one legend entry each, by hatch (the colours are the directions).
  for k, name in enumerate(series):
    ax.bar([0], [0], 0, color="white", hatch=hatches[k % len(hatches)],
           edgecolor="dimgray", label=name)
  ax.set_xticks(range(len(ticks)), ticks, fontsize=7)
  ax.set_ylabel("ms per step (time x count)")
  what = "convolutions" if kind == "convolutions" else "BatchNorms (+ ReLU)"
  ax.set_title(f"{first['model']}'s {what}, batch {first['batch']}, on the "
               f"{first.get('platform', 'cpu').upper()}: where a step's time goes",
               fontsize=10)
  ax.legend(fontsize=7, ncol=2)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return series


def plot_files(entries: Sequence[str], out: str | None) -> str:
  """``--plot JSON[=LABEL] ...``: earlier invocations' ``--out`` JSON files in one PNG
  (the label defaults to the file's name), written to ``out`` or beside the first."""
  runs = report_files.read(entries)
  for entry, (_, record) in zip(entries, runs):
    if record.get("kind") not in PARTS:
      raise InputError(f"--plot {entry.partition('=')[0]}: not a JSON file "
                       "that conv_layers.py --out wrote (no kind)")
  out = report_files.plot_path(entries, out)
  plot(runs, out)
  return out


def time_norms(args: argparse.Namespace, norms: list[dict[str, Any]], torch) -> int:
  """``--norms``: the table of BatchNorm + ReLU timings, printed (and ``--out``)."""
  rows, measured, totals = [], [], {"ours": 0.0, "torch": 0.0}
  head = ["input NHWC", "count", "ours fwd", "fwd+bwd", "torch fwd", "fwd+bwd",
          "ours / torch (fwd+bwd)"]
  fmt = lambda d, k: f"{d[k]:.2f}" if k in d else "-"
  for norm in norms:
    ours = time_norm_jax(norm, args.repeats)
    theirs = time_norm_torch(torch, norm, args.repeats) if torch is not None else {}
    totals["ours"] += norm["count"] * ours["fwd+bwd"]
    totals["torch"] += norm["count"] * theirs.get("fwd+bwd", 0.0)
    measured.append({"input": list(norm["input"]), "epsilon": norm["epsilon"],
                     "count": norm["count"], "ours": ours, "torch": theirs})
    rows.append(["x".join(map(str, norm["input"])), str(norm["count"]),
                 fmt(ours, "fwd"), fmt(ours, "fwd+bwd"), fmt(theirs, "fwd"),
                 fmt(theirs, "fwd+bwd"),
                 f"{ours['fwd+bwd'] / theirs['fwd+bwd']:.2f}" if theirs else "-"])
    print(" | ".join(rows[-1]), flush=True)
  total = (f"Total over {args.model}'s BatchNorms, each with a ReLU after it (ms, forward "
           f"and backward, each shape times its count): ours {totals['ours']:.1f}"
           + (f", torch {totals['torch']:.1f}, ours / torch "
              f"{totals['ours'] / totals['torch']:.2f}" if totals["torch"] else "")
           + f"; load average {os.getloadavg()[0]:.2f}")
  _report(_table(head, rows), total, args.out, _record("norms", args, measured, torch))
  return 0


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line (argparse would print the usage too)
    raise InputError(message)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  """The command line, checked (``InputError`` if not), with the defaults filled in and
  ``shape`` the parsed ``--image_shape``."""
  p = _Parser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", help="a model of the zoo (default resnet20)")
  p.add_argument("--batch", type=int, help="default 128")
  p.add_argument("--image_shape", help="H,W,C (default 32,32,3)")
  p.add_argument("--repeats", type=int, help="timed calls per direction (default 10)")
  p.add_argument("--out", help="also write the table to this .md file (its numbers to .json "
                 "and a plot to .png beside it), or the --hlo_ops listing; with --plot, "
                 "the .png")
  p.add_argument("--plot", nargs="+", metavar="JSON[=LABEL]",
                 help="time nothing: plot earlier --out JSON files into one PNG (--out)")
  p.add_argument("--formulation",
                 help=f"how JAX writes each convolution: {', '.join(FORMULATIONS)} "
                 "(default conv)")
  p.add_argument("--hlo_ops", action="store_true",
                 help="count the ops of the compiled gradient instead of timing")
  p.add_argument("--norms", action="store_true",
                 help="time each BatchNorm (with a ReLU after it) instead of the convolutions")
  args = p.parse_args(argv)
  if args.plot:
    given = [f"--{k}" for k in ("model", "batch", "image_shape", "repeats", "formulation")
             if getattr(args, k) is not None]
    given += [f"--{k}" for k in ("hlo_ops", "norms") if getattr(args, k)]
    if given:
      raise InputError(f"--plot times nothing and draws what the files hold; drop "
                       f"{', '.join(given)}")
    report_files.plot_path(args.plot, args.out)  # --out must be a .png
    return args
  args.model = "resnet20" if args.model is None else args.model
  args.batch = 128 if args.batch is None else args.batch
  args.image_shape = "32,32,3" if args.image_shape is None else args.image_shape
  if args.hlo_ops and (args.formulation is not None or args.repeats is not None
                       or args.norms):
    raise InputError("--hlo_ops times nothing and counts the network's own convolutions; "
                     "drop --formulation, --repeats and --norms")
  if args.norms and args.formulation is not None:
    raise InputError("--formulation rewrites convolutions, and --norms times the "
                     "BatchNorms; drop one")
  if args.repeats is not None and args.repeats < 1:
    raise InputError(f"--repeats must be at least 1, got {args.repeats}")
  args.formulation = "conv" if args.formulation is None else args.formulation
  args.repeats = 10 if args.repeats is None else args.repeats
  try:
    args.shape = tuple(int(s) for s in args.image_shape.split(","))
    if len(args.shape) != 3 or min(args.shape) < 1:
      raise ValueError
  except ValueError:
    raise InputError(f"--image_shape takes H,W,C (e.g. 32,32,3), got "
                     f"{args.image_shape!r}") from None
  return args


def main(argv: Sequence[str] | None = None) -> int:
  try:
    args = parse_args(argv)
    if args.plot:
      print(f"plot written to {plot_files(args.plot, args.out)}")
      return 0
  except InputError as e:  # the command line, or a --plot file
    print(f"error: {e}", file=sys.stderr)
    return 2
  shape = args.shape
  try:
    # One trace of the network: its BatchNorms with --norms, else its convolutions.
    norms = norm_shapes(args.model, args.batch, shape) if args.norms else []
    convs = [] if args.norms else conv_shapes(args.model, args.batch, shape)
    for conv in convs:
      formulated(conv, args.formulation)
  except (models.UnknownModelError, ValueError) as e:
    print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
    return 2
  if args.norms and not norms:
    print(f"error: --norms: {args.model} has no BatchNorm over NHWC inputs; pick a model "
          "that has (e.g. resnet20)", file=sys.stderr)
    return 2
  if args.hlo_ops:
    ops = entry_ops(gradient_hlo(args.model, args.batch, shape))
    lines = [f"{args.model}, batch {args.batch}: the entry computation of its loss "
             f"gradient's optimised HLO, {sum(sum(c.values()) for c in ops.values())} "
             f"instructions; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"]
    for op, shapes in sorted(ops.items(), key=lambda kv: -sum(kv[1].values())):
      lines.append(f"{sum(shapes.values()):5d}  {op}: "
                   + ", ".join(f"{n} x {s}" for s, n in shapes.most_common()))
    print("\n".join(lines))
    if args.out:
      report_files.write_text(args.out, "\n".join(lines) + "\n")
    return 0
  imported = torch_convert.import_torch()
  torch = imported[0] if imported else None
  if torch is None:
    print("torch: not installed; JAX only")
  if args.norms:
    return time_norms(args, norms, torch)
  rows, measured, totals = [], [], {"ours": 0.0, "torch": 0.0}
  head = ["input NHWC", "kernel", "stride", "count", "ours fwd", "dgrad", "wgrad",
          "torch fwd", "dgrad", "wgrad", "ours / torch"]
  for conv in convs:
    ours = time_jax(conv, args.repeats, args.formulation)
    theirs = time_torch(torch, conv, args.repeats) if torch is not None else {}
    o_sum, t_sum = sum(ours.values()), sum(theirs.values()) if theirs else None
    totals["ours"] += conv["count"] * o_sum
    if t_sum:
      totals["torch"] += conv["count"] * t_sum
    measured.append({**{k: conv[k] for k in ("input", "kernel", "strides", "padding",
                                             "groups", "count")},
                     "ours": ours, "torch": theirs})
    fmt = lambda d, k: f"{d[k]:.2f}" if k in d else "-"
    rows.append([
        "x".join(map(str, conv["input"])), "x".join(map(str, conv["kernel"])),
        "x".join(map(str, conv["strides"])), str(conv["count"]),
        fmt(ours, "fwd"), fmt(ours, "dgrad"), fmt(ours, "wgrad"),
        fmt(theirs, "fwd"), fmt(theirs, "dgrad"), fmt(theirs, "wgrad"),
        f"{o_sum / t_sum:.2f}" if t_sum else "-"])
    print(" | ".join(rows[-1]), flush=True)
  lines = _table(head, rows)
  total = (f"Total over {args.model}'s convolutions (ms, forward + both gradients, each shape "
           f"times its count): ours ({args.formulation}) {totals['ours']:.1f}"
           + (f", torch {totals['torch']:.1f}, ours / torch {totals['ours'] / totals['torch']:.2f}"
              if totals["torch"] else "")
           + f"; load average {os.getloadavg()[0]:.2f}")
  _report(lines, total, args.out, _record("convolutions", args, measured, torch))
  return 0


if __name__ == "__main__":
  sys.exit(main())
