r"""Convert a torchvision or timm checkpoint to Flax variables, and evaluate it.

  # Convert ImageNet weights and save them (Orbax) for train.py's --config.init_from:
  python tools/convert_weights.py --model resnet50 --checkpoint resnet50-11ad3fa6.pth \
      --output weights/resnet50
  # ... and measure their ImageNet top-1/top-5 (TFDS imagenet2012 must be prepared):
  python tools/convert_weights.py --model convnext_t \
      --checkpoint convnext_tiny-983f1562.pth --dataset imagenet2012 --image_size 224
  # timm files work the same way (the converter tells the two namings apart):
  python tools/convert_weights.py --model se_resnet50 --checkpoint seresnet50.safetensors \
      --dataset imagenette --image_size 224 --num_classes 1000 --max_examples 1000

The checkpoint is a ``.pth``/``.pt``/``.bin`` (needs torch) or ``.safetensors`` state
dict. ``--num_classes`` defaults to the checkpoint's own (read from its classifier).
Evaluation resizes images to ``--image_size`` (bilinear, whole image; ImageNet models
were trained with resize-256-then-centre-crop-224, so expect ~1 point lower top-1 than
the published number unless the TFDS builder does the crop) and normalises with the
ImageNet mean and std, as the torchvision and timm weights expect. The result is printed
and written to ``--output``/eval.json when ``--output`` is given.

``python tools/convert_weights.py --list`` prints the models that have a converter.

Export goes the other way: a trained run of ours (a train.py workdir: its latest
checkpoint, or ``--step``; ``--ema`` for its EMA weights) or a converted directory (give
``--model``) becomes a torchvision/timm state dict in a ``.safetensors`` file, which
``model.load_state_dict(safetensors.torch.load_file(path))`` takes in strict mode:

  python tools/convert_weights.py --export runs/r50 --output r50.safetensors
  python tools/convert_weights.py --export weights/convnext_t --model convnext_t \
      --format timm --output convnext_t_timm.safetensors

``--format`` picks the library's layout (torchvision or timm; the default is the first
that has the model: ``--list`` shows them). The file is read back and converted, and must
give the same variables bit for bit, before the tool says it is done.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import input_pipeline  # noqa: E402
import models  # noqa: E402
import train  # noqa: E402
from input_pipeline import recipe as recipe_lib  # noqa: E402
from models import torch_convert  # noqa: E402
from training import cli  # noqa: E402
from training import data as data_lib  # noqa: E402
from training import pretrained  # noqa: E402
from training import steps as steps_lib  # noqa: E402

USER_ERRORS = (torch_convert.ConversionError, pretrained.PretrainedError,
               input_pipeline.DatasetError, models.UnknownModelError)


def classes_in(state_dict: dict) -> int:
  """The class count of a checkpoint: the rows of its last 2-D weight (the classifier)."""
  for key in reversed(list(state_dict)):
    value = state_dict[key]
    if key.endswith("weight") and np.ndim(value) == 2:
      return int(np.shape(value)[0])
  raise torch_convert.ConversionError("cannot find a classifier (a 2-D '...weight') in the "
                                      "checkpoint; pass --num_classes")


def evaluate(model, variables: dict, ds, batch_size: int, mean, std) -> dict:
  """Top-1/top-5 and loss over the whole test split (last batch padded and masked)."""
  cfg = steps_lib.StepConfig(eval_ops=(recipe_lib.op("normalize", mean=tuple(mean),
                                                    std=tuple(std)),))
  eval_step = jax.jit(steps_lib.make_eval_step(model, cfg))
  state = steps_lib.TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                               batch_stats=variables.get("batch_stats", {}), opt_state=())
  metrics = steps_lib.zero_metrics(steps_lib.EVAL_METRICS)
  images, labels = ds.test_images, ds.test_labels
  for start in range(0, len(labels), batch_size):
    x, y = images[start:start + batch_size], labels[start:start + batch_size]
    mask = np.ones(len(y), bool)
    if len(y) < batch_size:  # pad: one compiled shape
      pad = batch_size - len(y)
      x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
      y = np.concatenate([y, np.zeros(pad, y.dtype)])
      mask = np.concatenate([mask, np.zeros(pad, bool)])
    metrics = eval_step(state, metrics, x, y, mask)
  m = jax.device_get(metrics)
  n = float(m["count"])
  return {"eval_top1": float(m["top1"]) / n, "eval_top5": float(m["top5"]) / n,
          "eval_loss": float(m["loss"]) / n, "eval_count": int(n)}


def run(args: argparse.Namespace) -> dict:
  if args.model not in torch_convert.list_convertible():
    models.create_model(args.model, num_classes=1)  # an unknown name gets the registry's hint
    raise torch_convert.ConversionError(
        f"model {args.model!r} has no PyTorch converter; models with one: "
        f"{', '.join(torch_convert.list_convertible())}")
  if args.output and os.path.exists(args.output):
    raise pretrained.PretrainedError(f"{args.output} already exists; choose a new --output "
                                     "(nothing was overwritten)")
  t0 = time.time()
  state_dict = torch_convert.load_state_dict(args.checkpoint)
  num_classes = args.num_classes or classes_in(state_dict)
  # A ViT is built for the evaluation size; the converter resamples its position embedding.
  kwargs = {"image_size": args.image_size} if args.model.startswith("vit") and \
      args.image_size else {}
  model = models.create_model(args.model, num_classes=num_classes, **kwargs)
  size = args.image_size or 224
  notes: list[str] = []
  variables = torch_convert.convert(args.model, state_dict, model=model,
                                    input_shape=(1, size, size, 3), notes=notes)
  for note in notes:
    print(f"note: {note}", flush=True)
  n_params = sum(np.size(x) for x in jax.tree.leaves(variables["params"]))
  print(f"converted {args.checkpoint}: {args.model}, {n_params:,} parameters, "
        f"{num_classes} classes ({time.time() - t0:.1f} s)", flush=True)
  result = {"model": args.model, "checkpoint": os.path.abspath(args.checkpoint),
            "num_classes": num_classes, "num_params": int(n_params)}
  if args.output:
    pretrained.save_variables(args.output, variables)
    print(f"saved to {os.path.abspath(args.output)} (use --config.init_from={args.output})",
          flush=True)

  if args.dataset:
    ds = input_pipeline.load_dataset(args.dataset, data_dir=args.data_dir,
                                     image_size=args.image_size, download=args.download)
    if ds.image_shape[-1] != 3:  # grey digits: repeat the channel for an RGB model
      ds = dataclasses.replace(ds, train_images=np.repeat(ds.train_images, 3, axis=-1),
                      test_images=np.repeat(ds.test_images, 3, axis=-1))
    if args.max_examples:
      ds = dataclasses.replace(ds, test_images=ds.test_images[:args.max_examples],
                      test_labels=ds.test_labels[:args.max_examples])
    if ds.num_classes > num_classes:
      raise input_pipeline.DatasetError(
          f"{args.dataset} has {ds.num_classes} classes but the checkpoint only {num_classes}")
    mean, std = ((0.0,) * 3, (1.0,) * 3) if args.no_normalize else (
        data_lib.IMAGENET_MEAN, data_lib.IMAGENET_STD)
    t1 = time.time()
    metrics = evaluate(model, variables, ds, args.batch_size, mean, std)
    metrics["eval_seconds"] = time.time() - t1
    result.update(dataset=args.dataset, image_size=ds.image_shape[0], **metrics)
    print(f"{args.dataset}: top-1 {100 * metrics['eval_top1']:.2f}%, top-5 "
          f"{100 * metrics['eval_top5']:.2f}% on {metrics['eval_count']} test images "
          f"({metrics['eval_seconds']:.1f} s)", flush=True)
    if args.output:
      with open(os.path.join(args.output, "eval.json"), "w") as f:
        json.dump(result, f, indent=2)
  return result


def vit_kwargs(variables: dict) -> dict:
  """A ViT's patch and image size, read from its patch embedding and position embedding."""
  params = variables["params"]
  patch = int(np.shape(params["patch_embed"]["kernel"])[0])
  rows = np.shape(params["pos_embed"])[1] - (1 if "cls_token" in params else 0)
  return {"patch_size": patch, "image_size": int(np.sqrt(rows)) * patch}


def run_export(args: argparse.Namespace) -> dict:
  t0 = time.time()
  if os.path.exists(args.output):
    raise pretrained.PretrainedError(f"{args.output} already exists; choose a new --output "
                                     "(nothing was overwritten)")
  variables, config = pretrained.load_trained(args.export, step=args.step, ema=args.ema)
  name = args.model or (config or {}).get("model")
  if not name:
    raise pretrained.PretrainedError(f"{args.export} has no config.json naming its model "
                                     "(converted weights): pass --model")
  if config and args.model and args.model != config.get("model"):
    raise pretrained.PretrainedError(f"{args.export} trained {config.get('model')!r}, not "
                                     f"--model {args.model!r}")
  if name not in torch_convert.list_exportable():
    models.create_model(name, num_classes=1)  # an unknown name gets the registry's hint
    raise torch_convert.ConversionError(
        f"model {name!r} has no PyTorch export; models with one: "
        f"{', '.join(torch_convert.list_exportable())}")
  kwargs = dict((config or {}).get("model_kwargs") or {})
  if name.startswith("vit"):
    kwargs = {**vit_kwargs(variables), **kwargs}
  num_classes = torch_convert.num_classes(name, variables)
  try:
    model = models.create_model(name, num_classes=num_classes, **kwargs)
  except TypeError as e:
    raise pretrained.PretrainedError(f"{args.export}: model_kwargs: {e}") from None
  source = args.format or torch_convert.export_layouts(name)[0]
  state_dict = torch_convert.export(name, variables, model=model, source=source)
  torch_convert.save_safetensors(args.output, state_dict,
                                 metadata={"model": name, "layout": source})
  torch_convert.check_same(  # the file itself, read back, converts into the same variables
      torch_convert.convert(name, torch_convert.load_state_dict(args.output), model=model,
                            notes=[]), variables, f"{args.output}, converted back,")
  count = sum(int(np.size(a)) for k, a in state_dict.items()
              if not k.endswith("num_batches_tracked"))
  print(f"exported {name} ({num_classes} classes) in {source}'s layout: {len(state_dict)} "
        f"tensors, {count:,} numbers -> {os.path.abspath(args.output)}; it converts back "
        f"bit for bit ({time.time() - t0:.1f} s)", flush=True)
  return {"model": name, "layout": source, "num_classes": num_classes,
          "num_tensors": len(state_dict), "output": os.path.abspath(args.output)}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  p = cli.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--list", action="store_true", help="list the models with a converter")
  p.add_argument("--model", help="our registered model name (e.g. resnet50, convnext_t)")
  p.add_argument("--checkpoint", help="a torchvision or timm .pth/.safetensors state dict")
  p.add_argument("--output", "--out", help="directory to save the converted variables "
                 "(Orbax); with --export, the .safetensors file to write")
  p.add_argument("--export", metavar="DIR", help="export a train.py workdir or a converted "
                 "directory as a torchvision/timm state dict (.safetensors, see --output)")
  p.add_argument("--format", choices=("torchvision", "timm"),
                 help="with --export: whose names and layouts (default: torchvision where "
                 "it has the model)")
  p.add_argument("--step", type=int, default=None,
                 help="with --export of a workdir: this step's checkpoint (default: latest)")
  p.add_argument("--ema", action="store_true",
                 help="with --export of a workdir: its EMA weights")
  p.add_argument("--num_classes", type=int, default=0,
                 help="classifier size (default: read from the checkpoint)")
  p.add_argument("--dataset", help="evaluate on this dataset's test split (train.py names: "
                 "a TFDS name, npz:<path>, digits, synthetic)")
  p.add_argument("--data_dir", help="TFDS data directory")
  p.add_argument("--download", action="store_true", help="let TFDS download the dataset")
  p.add_argument("--image_size", type=int, default=None,
                 help="resize images to this size (and the model input; ViT resamples)")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--max_examples", type=int, default=0, help="evaluate on the first N only")
  p.add_argument("--no_normalize", action="store_true",
                 help="feed [0, 1] pixels instead of ImageNet-normalised ones")
  args = p.parse_args(argv)
  if args.export:
    if args.checkpoint or args.dataset:
      p.error("--export takes no --checkpoint or --dataset")
    if not (args.output and args.output.endswith(".safetensors")):
      p.error("--export needs --output FILE.safetensors")
  elif args.format or args.step is not None or args.ema:
    p.error("--format, --step and --ema go with --export")
  elif not args.list and not (args.model and args.checkpoint):
    p.error("--model and --checkpoint are required (or --list, or --export)")
  return args


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  if args.list:
    exportable = set(torch_convert.list_exportable())
    for name in torch_convert.list_convertible():
      layouts = torch_convert.export_layouts(name) if name in exportable else ()
      print(f"{name}" + (f"  (export: {', '.join(layouts)})" if layouts else ""))
    return 0
  try:
    if args.export:
      run_export(args)
    else:
      run(args)
  except USER_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
