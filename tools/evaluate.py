r"""Evaluate trained runs again, under other test-time protocols, without retraining.

  python tools/evaluate.py runs/sr_cpu_a/seed0 runs/sr_cpu_a/seed1 \
      --eval_modes center,flip,flip_translate
  python tools/evaluate.py runs/l89m_usps_s0 runs/l89m_usps_s1 --ema   # center,translate
  python tools/evaluate.py runs/convnext --ema --eval_modes center,ten_crop \
      --eval_crop_pct 0.875

Each workdir's latest checkpoint (``--ema``: its EMA weights; ``--step``: another one)
is evaluated on the test split of its own ``config.json`` (data, subset, normalisation,
recipe, the library that ran its convolutions: ``--conv_backend`` to choose another), once per ``--eval_modes`` entry (``augment.eval_mode``), through the same
evaluation step that ``train.py`` compiles (``training/steps.make_eval_step``): a mode
that the run itself used gives the run's own figure. Without ``--eval_modes``: center,
flip and flip_translate, or, for data whose labels a mirror image changes (digits:
``KNOWN_DATASETS``' ``flip``), center and translate; asking for mirrored views of such
data prints a warning. Prints a table (one row per run
and mode, then the mean over the runs per mode) and, with ``--output``, writes it as
JSON.

Datasets that ``train.py`` holds in memory (the device input pipeline) only; a run that
streamed its data through the host pipeline is refused with one line. Bad input is one
line, ``error: ...``, and exit status 2.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from typing import Any, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

import kernels  # noqa: E402
import models  # noqa: E402
from input_pipeline import recipe as recipe_lib  # noqa: E402
from training import cli  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import data as data_lib  # noqa: E402
from training import pretrained  # noqa: E402
from training import steps as steps_lib  # noqa: E402


# The modes evaluated when --eval_modes is not given, by whether a mirror image keeps the
# dataset's labels (``ds.flip``): digits get the shifted views, not the mirrored ones.
DEFAULT_MODES = {True: ("center", "flip", "flip_translate"), False: ("center", "translate")}


class EvaluateError(ValueError):
  """Bad input: one line that names the problem and the fix."""


def load_run(workdir: str, step: int | None = None, ema: bool = False):
  """``(config, dataset, model, variables)`` of a train.py workdir's checkpoint."""
  try:
    variables, config = pretrained.load_trained(workdir, step=step, ema=ema)
  except pretrained.PretrainedError as e:
    raise EvaluateError(str(e)) from None
  if config is None:
    raise EvaluateError(f"{workdir} holds converted weights, not a train.py run: pass a "
                        "workdir with a config.json")
  config = ml_collections.ConfigDict(config)
  if data_lib.wants_host_pipeline(config):
    raise EvaluateError(f"{workdir} streamed {config.dataset} through the host pipeline; "
                        "this tool evaluates in-memory datasets only (use train.py)")
  ds = data_lib.load_in_memory(config)
  model = models.create_model(config.model, num_classes=ds.num_classes,
                              dtype=jnp.dtype(config.dtype),
                              **config.model_kwargs.to_dict())
  return config, ds, model, variables


def evaluate(config: ml_collections.ConfigDict, ds, model, variables: dict,
             eval_mode: str, **augment: Any) -> dict[str, float]:
  """Test loss, top-1 and top-5 of ``variables`` under ``eval_mode`` (and other
  ``augment`` eval fields), through train.py's evaluation step."""
  fields = config.augment.to_dict()
  fields.update(eval_mode=eval_mode, **augment)
  try:
    recipe = recipe_lib.Recipe.from_config(fields)
    mean, std = data_lib.normalization_stats(config, ds)
    plan = recipe_lib.plan(recipe, source="device", image_size=ds.image_shape[0],
                           channels=ds.image_shape[-1], stored_size=ds.image_shape[0],
                           mean=mean, std=std, num_classes=ds.num_classes,
                           label_smoothing=config.label_smoothing,
                           dense_eval=hasattr(model, "dense"))
  except recipe_lib.RecipeError as e:
    raise EvaluateError(str(e)) from None
  step_cfg = steps_lib.StepConfig.from_config(config, plan)
  # As the run computed it; the step below runs on the default device.
  with kernels.conv_backend(config.get("conv_backend", "xla"), jax.devices()[:1]):
    return _evaluate(config, ds, model, variables, step_cfg)


def _evaluate(config, ds, model, variables, step_cfg) -> dict[str, float]:
  eval_step = jax.jit(steps_lib.make_eval_step(model, step_cfg))
  state = steps_lib.TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                               batch_stats=variables.get("batch_stats", {}), opt_state=())
  metrics = steps_lib.zero_metrics(steps_lib.EVAL_METRICS)
  n, batch = len(ds.test_labels), config.eval_batch_size
  for start in range(0, n, batch):  # the last batch padded, its padding masked out
    images, labels = ds.test_images[start:start + batch], ds.test_labels[start:start + batch]
    mask = np.arange(batch) < len(labels)
    pad = batch - len(labels)
    if pad:
      images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
      labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
    metrics = eval_step(state, metrics, jnp.asarray(images), jnp.asarray(labels),
                        jnp.asarray(mask))
  m = jax.device_get(metrics)
  return {"eval_loss": float(m["loss"] / m["count"]), "eval_top1": float(m["top1"] / m["count"]),
          "eval_top5": float(m["top5"] / m["count"]), "eval_count": int(m["count"])}



def main(argv: Sequence[str] | None = None) -> int:
  p = cli.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
  p.add_argument("workdirs", nargs="+", help="train.py workdirs")
  p.add_argument("--eval_modes",
                 help=f"comma-separated, of {', '.join(recipe_lib.EVAL_MODES)} (default: "
                      f"{','.join(DEFAULT_MODES[True])}; {','.join(DEFAULT_MODES[False])} "
                      "for data a mirror image relabels, such as digits)")
  p.add_argument("--eval_crop_pct", type=float, help="augment.eval_crop_pct for every mode")
  p.add_argument("--step", type=int, help="the checkpoint of this step (default: latest)")
  p.add_argument("--ema", action="store_true", help="the EMA weights")
  p.add_argument("--output", help="also write the rows as JSON here")
  p.add_argument("--conv_backend", choices=kernels.BACKENDS,
                 help="the library that runs the convolutions (default: the run's own "
                      "config.conv_backend)")
  args = p.parse_args(sys.argv[1:] if argv is None else argv)
  modes = None if args.eval_modes is None else [m for m in args.eval_modes.split(",") if m]
  unknown = [m for m in modes or () if m not in recipe_lib.EVAL_MODES]
  if unknown or modes == []:
    p.error(f"--eval_modes: {unknown[0] if unknown else 'none'!r} is not an eval mode; "
            f"choose from {', '.join(recipe_lib.EVAL_MODES)}")
  extra = {} if args.eval_crop_pct is None else {"eval_crop_pct": args.eval_crop_pct}
  rows = []
  try:
    for workdir in args.workdirs:
      config, ds, model, variables = load_run(workdir, args.step, args.ema)
      if args.conv_backend:
        config.conv_backend = args.conv_backend
      run_modes = modes or DEFAULT_MODES[ds.flip]
      if not ds.flip and any(m in recipe_lib.MIRRORED_EVAL_MODES for m in run_modes):
        print(f"warning: {workdir}: mirror images do not keep the labels of {ds.name}; "
              f"its flip views are not a test-time protocol for it", file=sys.stderr)
      for mode in run_modes:
        row = {"workdir": workdir, "eval_mode": mode,
               **evaluate(config, ds, model, variables, mode, **extra)}
        rows.append(row)
        print(f"{workdir} | {mode:>14} | top-1 {100 * row['eval_top1']:.2f}% | loss "
              f"{row['eval_loss']:.4f} | {row['eval_count']} images", flush=True)
  except (EvaluateError, config_lib.ConfigError, kernels.KernelError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if len(args.workdirs) > 1:
    for mode in dict.fromkeys(r["eval_mode"] for r in rows):  # in order, each once
      top1 = [100 * r["eval_top1"] for r in rows if r["eval_mode"] == mode]
      spread = statistics.stdev(top1) if len(top1) > 1 else 0.0
      print(f"mean over {len(top1)} runs | {mode:>14} | top-1 {statistics.fmean(top1):.2f}"
            f" +- {spread:.2f}% (min {min(top1):.2f}, max {max(top1):.2f})")
  if args.output:
    with open(args.output, "w") as f:
      json.dump(rows, f, indent=2)
  return 0


if __name__ == "__main__":
  sys.exit(main())
