r"""What a model costs and what it sees: parameters, multiply-adds, receptive fields.

  python tools/model_report.py --model vgg16                   # 224x224x3, 1000 classes
  python tools/model_report.py --model resnet50 --image_size 160 --layers
  python tools/model_report.py --model lenet1989               # its own 16x16x1 input
  python tools/model_report.py --model resnet50 --depth 2      # stages = blocks' layers

Prints the parameter count, the multiply-adds of one image (the papers' "FLOPs"
convention: convolutions and matrix products only), and a table with one row per
top-level module (``--depth`` levels down) and per pool between modules: output shape,
parameters, multiply-adds, and the receptive field (RF, input pixels one output value
can see; theoretical, so it may exceed the image) and jump (input pixels between
neighbouring outputs, the cumulative stride) at its output. ``--layers`` adds one row
per convolution, matrix product and pool. ``global``: the value sees the whole image
(after a global pool, a flatten or attention); ``?``: the analysis could not follow an
op (named below the table).

Nothing is compiled: the model is traced with abstract weights (``jax.eval_shape``,
``jax.make_jaxpr``), so even the largest model takes a few seconds on a CPU. See
``analysis/`` for the rules.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import analysis  # noqa: E402
import models  # noqa: E402
from training import cli  # noqa: E402

# Models designed for another input than 224x224x3 with 1000 classes (the README's
# model table): (name patterns, image size, channels, classes).
CANONICAL_INPUTS = (
    (("lenet1989", "lecun1989_net*"), 16, 1, 10),
    (("lenet5",), 32, 1, 10),
    (("lenet5_modern",), 28, 1, 10),
    (("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "allcnn_c*",
      "densenet_bc*", "densenet40_k12"), 32, 3, 10),
)


def canonical_input(name: str) -> tuple[int, int, int]:
  """``(image size, channels, classes)`` the model was designed for."""
  for patterns, size, channels, classes in CANONICAL_INPUTS:
    if any(fnmatch.fnmatchcase(name, p) for p in patterns):
      return size, channels, classes
  return 224, 3, 1000


def _compact(n: int) -> str:
  """15.47G, 86.7M, 9.8K: the papers' precision."""
  for unit, scale, digits in (("G", 1e9, 2), ("M", 1e6, 1), ("K", 1e3, 1)):
    if n >= scale:
      return f"{n / scale:.{digits}f}{unit}"
  return str(n)


def _shape(shape: tuple[int, ...]) -> str:
  return "x".join(map(str, shape[1:])) if len(shape) > 1 else "x".join(map(str, shape))


def _pair(values: tuple[int | None, ...], none: str) -> str:
  if len(set(values)) == 1:
    return none if values[0] is None else str(values[0])
  return "x".join(none if v is None else str(v) for v in values)


def rf_and_jump(field: analysis.Value) -> tuple[str, str]:
  """The RF and jump columns: "196", "7x1", "global", "?" (unknown), "-" (none)."""
  if isinstance(field, analysis.Unknown):
    return "?", "?"
  if field is None:  # does not depend on the image
    return "-", "-"
  return _pair(field.size, "global"), _pair(field.jump, "-")


def _table(header: Sequence[str], rows: list[Sequence[str]], left: int) -> list[str]:
  """Columns padded to fit; the first ``left`` columns left-aligned, the rest right."""
  widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
  return ["  ".join(c.ljust(w) if i < left else c.rjust(w)
                    for i, (c, w) in enumerate(zip(r, widths))).rstrip()
          for r in [header, *rows]]


def format_report(name: str, report: analysis.Report, num_classes: int,
                  layers: bool = False) -> str:
  n, h, w, c = report.input_shape
  lines = [f"{name}: input {h}x{w}x{c}, {num_classes} classes",
           f"parameters     {report.params:,} ({_compact(report.params)})",
           f"multiply-adds  {report.macs:,} ({_compact(report.macs)}) per image", ""]
  rows = []
  for s in report.stages:
    rows.append([s.name, _shape(s.shape), f"{s.params:,}", _compact(s.macs),
                 *rf_and_jump(s.field)])
  lines += _table(["stage", "output", "params", "MACs", "RF", "jump"], rows, 2)
  if layers:
    rows = [[l.path or "-", l.op, _shape(l.shape), _compact(l.macs), *rf_and_jump(l.field)]
            for l in report.layers]
    lines += [""] + _table(["layer", "op", "output", "MACs", "RF", "jump"], rows, 3)
  notes = []
  if report.unused_params:
    notes.append(f"{report.unused_params:,} parameters are not used by this forward pass "
                 "(training-only heads)")
  reasons = [f.reason for f in [*(s.field for s in report.stages),
                                *(l.field for l in report.layers)]
             if isinstance(f, analysis.Unknown)]
  notes += [f"?: {r}" for r in dict.fromkeys(reasons)]
  return "\n".join(lines + ([""] + notes if notes else []))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = cli.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", required=True, help="a registered name (models.list_models())")
  p.add_argument("--image_size", type=int, default=None,
                 help="input height and width (default: the model's own, 224 for most)")
  p.add_argument("--channels", type=int, default=None,
                 help="input channels (default: the model's own, 3 for most)")
  p.add_argument("--num_classes", type=int, default=None,
                 help="default: the model's own (10 for LeNets and CIFAR models, else 1000)")
  p.add_argument("--depth", type=int, default=1,
                 help="stages are the modules this many levels below the model")
  p.add_argument("--layers", action="store_true",
                 help="also list every convolution, matrix product and pool")
  return p.parse_args(argv)


def run(args: argparse.Namespace) -> str:
  size, channels, classes = canonical_input(args.model)
  size = args.image_size or size
  channels = args.channels or channels
  classes = args.num_classes or classes
  model = models.create_model(args.model, num_classes=classes)
  if getattr(model, "image_size", size) != size:  # a ViT sizes its position embedding
    model = model.clone(image_size=size)
  shape = (1, size, size, channels)
  try:
    report = analysis.analyze(model, shape, depth=args.depth)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{args.model} does not run on a {size}x{size}x{channels} input "
                     f"({type(e).__name__}: {str(e).splitlines()[0]}); try another "
                     "--image_size") from None
  return format_report(args.model, report, classes, layers=args.layers)


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  if args.depth < 1 or (args.image_size or 1) < 1 or (args.channels or 1) < 1:
    print("error: --depth, --image_size and --channels must be positive", file=sys.stderr)
    return 2
  try:
    print(run(args))
  except (models.UnknownModelError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
