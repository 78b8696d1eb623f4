r"""The results of a sweep (or of any directory of train.py workdirs): a table and plots.

  python launch/sweep.py collect --sweep_dir runs/lecun1989   # what launch/sweep.py runs
  python launch/collect.py --sweep_dir runs/lecun1989          # the same

Reads each run's ``summary.json``, ``metrics.jsonl`` and ``config.json`` (the runs listed
in ``sweep.json``, or every subdirectory with a ``config.json`` when there is no manifest)
and writes into the sweep directory:

  results.md             one row per run: its overrides (those that differ between runs),
                         parameters, MACs, final test accuracy and error, steps, wall time;
                         first, when runs differ only in ``seed``, mean +- std over seeds
  results.csv            one row per run, every override as a column of its own
  results_mean.csv       the mean +- std table (when there are seeds to average)
  accuracy_vs_step.png   test accuracy during training, every run (one colour per group)
  accuracy_vs_params.png final test accuracy against parameters
  accuracy_vs_flops.png  final test accuracy against multiply-adds per image

MACs (the papers' "FLOPs": multiply-adds of convolutions and matrix products, one image)
come from ``analysis.count_macs`` on the run's model and input shape, traced,
not compiled. The input shape and class count are those train.py recorded
(``run_info.json`` at the start, ``summary.json`` at the end; ``training/rundir.py``),
else derived from config.json (synthetic, digits, npz files, known TFDS datasets).
"""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
import sys
import zipfile
from typing import Any, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from training import cli  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import rundir  # noqa: E402

MANIFEST = "sweep.json"
SEED = "seed"
# (H, W, C, classes) of TFDS datasets whose images all have one size.
TFDS_SHAPES = {"mnist": (28, 28, 1, 10), "fashion_mnist": (28, 28, 1, 10),
               "kmnist": (28, 28, 1, 10), "cifar10": (32, 32, 3, 10),
               "cifar100": (32, 32, 3, 100), "svhn_cropped": (32, 32, 3, 10),
               "stl10": (96, 96, 3, 10), "imagenette": (None, None, 3, 10),
               "imagenet2012": (None, None, 3, 1000)}


def _npz_shape(path: str) -> tuple[int, int, int, int] | None:
  """(H, W, C, classes) of a shared/data npz: x_train's header only, and the labels."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  try:
    with zipfile.ZipFile(path) as z, z.open("x_train.npy") as f:
      version = np.lib.format.read_magic(f)
      reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
      shape = reader(f)[0]
    with np.load(path) as data:
      classes = int(max(data["y_train"].max(), data["y_test"].max())) + 1
  except (OSError, KeyError, ValueError, zipfile.BadZipFile):
    return None
  h, w = shape[1:3]
  return h, w, (shape[3] if len(shape) == 4 else 1), classes


def input_shape(workdir: str, config: dict[str, Any],
                summary: dict[str, Any] | None) -> tuple[tuple[int, int, int], int] | None:
  """``((H, W, C), num_classes)`` of the run's data, or None when it cannot be known."""
  for known in (rundir.read(workdir, rundir.RUN_INFO), summary):  # as train.py saw it
    if known and known.get("image_shape") and known.get("num_classes"):
      return tuple(known["image_shape"]), int(known["num_classes"])
  dataset = config.get("dataset", "")
  size, pad = config.get("image_size"), config.get("pad", 0) or 0
  if dataset == "synthetic":
    syn = config.get("synthetic", {})
    h, w, c = syn.get("shape", (32, 32, 3))
    k = syn.get("num_classes", 10)
  elif dataset == "digits":
    h, w, c, k = 16, 16, 1, 10
  elif dataset.startswith("npz:"):
    found = _npz_shape(dataset[4:])
    if found is None:
      return None
    h, w, c, k = found
  else:
    base = re.split(r"[/:]", dataset.removeprefix("tfds:"), maxsplit=1)[0]
    if base not in TFDS_SHAPES:
      return None
    h, w, c, k = TFDS_SHAPES[base]
  if size:
    h = w = size
  if h is None:
    return None
  return (h + 2 * pad, w + 2 * pad, c), k


def count_macs(config: dict[str, Any], shape: tuple[int, int, int], num_classes: int,
               cache: dict) -> int | None:
  """Multiply-adds of one image through the run's model (None if it cannot be built)."""
  kwargs = config.get("model_kwargs") or {}
  key = (config.get("model"), json.dumps(kwargs, sort_keys=True), shape, num_classes)
  if key not in cache:
    import models  # pylint: disable=g-import-not-at-top  (jax: only when needed)
    import analysis  # pylint: disable=g-import-not-at-top

    try:
      model = models.create_model(config["model"], num_classes=num_classes, **kwargs)
      cache[key] = analysis.count_macs(model, (1, *shape))
    except Exception as e:  # pylint: disable=broad-except  (a table without MACs is fine)
      print(f"warning: no MACs for {config.get('model')}: {type(e).__name__}: {e}",
            file=sys.stderr)
      cache[key] = None
  return cache[key]


# ---------------------------------------------------------------------------- reading


def list_runs(sweep_dir: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """``[{name, workdir, overrides}]`` from sweep.json, or from the subdirectories."""
  manifest = rundir.read_json(os.path.join(sweep_dir, MANIFEST)) or {}
  if manifest.get("runs"):
    runs = []
    for r in manifest["runs"]:
      workdir = r.get("workdir", "")
      if not os.path.isdir(workdir):  # the sweep directory was moved
        workdir = os.path.join(sweep_dir, r["name"])
      runs.append({"name": r["name"], "workdir": workdir, "overrides": r.get("overrides", {})})
    return runs, manifest
  runs = []
  for dirpath, dirnames, files in os.walk(sweep_dir):
    dirnames.sort()
    if rundir.CONFIG in files:  # a workdir: record it, do not look inside
      runs.append({"name": os.path.relpath(dirpath, sweep_dir), "workdir": dirpath,
                   "overrides": {}})
      dirnames.clear()
  return runs, manifest


def read_run(run: dict[str, Any], macs_cache: dict) -> dict[str, Any]:
  """Everything the table and plots need from one workdir."""
  workdir = run["workdir"]
  config = rundir.read(workdir, rundir.CONFIG) or {}
  summary = rundir.read(workdir, rundir.SUMMARY)
  metrics = rundir.read_metrics(workdir)
  evals = [m for m in metrics if "eval_top1" in m]
  row = {"name": run["name"], "workdir": workdir, "overrides": dict(run["overrides"]),
         "model": (summary or config).get("model", ""),
         "dataset": (summary or config).get("dataset", ""),
         "params": summary.get("num_params") if summary else None,
         "macs": None, "accuracy": None, "top5": None, "loss": None,
         "step": None, "total_steps": None, "wall_time_sec": None, "evals": evals}
  if summary:
    row.update(step=summary.get("step"), total_steps=summary.get("total_steps"),
               wall_time_sec=summary.get("wall_time_sec"), accuracy=summary.get("eval_top1"),
               top5=summary.get("eval_top5"), loss=summary.get("eval_loss"))
    row["status"] = "finished" if rundir.is_finished(summary) else "stopped"
  elif not os.path.isdir(workdir):
    row["status"] = "not started"
  else:
    row["status"] = "failed" if _failed(workdir) else "incomplete"
    if evals:  # the latest evaluation of a run still going (or cut short)
      row.update(accuracy=evals[-1]["eval_top1"], top5=evals[-1].get("eval_top5"),
                 loss=evals[-1].get("eval_loss"), step=evals[-1]["step"])
  if config:
    shape = input_shape(workdir, config, summary)
    if shape is not None:
      row["macs"] = count_macs(config, *shape, macs_cache)
  return row


def _failed(workdir: str) -> bool:
  """The log's last attempt ended with train.py's ``error:`` line or a traceback."""
  try:
    with open(os.path.join(workdir, rundir.LOG), errors="replace") as f:
      last = f.read().rsplit("\n=== ", 1)[-1]
  except OSError:
    return False
  return bool(re.search(r"^(error:|Traceback)", last, re.M))


# ---------------------------------------------------------------------------- tables


def varying_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
  keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
  return [k for k in keys if len({r["overrides"].get(k) for r in rows}) > 1]


_SEED_TOKEN = re.compile(r"(^|[_,/\-])seed[=\-]?\d+(?=$|[_,\-])")


def group_label(name: str, overrides: dict[str, str]) -> str:
  """``net1_seed0`` -> ``net1``; ``model=vgg11,seed=2`` -> ``model=vgg11``; a name
  without a seed in it: the overrides other than the seed."""
  if _SEED_TOKEN.search(name):
    label = _SEED_TOKEN.sub("", name).strip("_,-/")
  else:
    label = ",".join(f"{k}={v}" for k, v in overrides.items() if k != SEED)
  return label or "all"


def seed_groups(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Runs that differ only in ``seed``, as one row each: mean and sample std over seeds.

  Empty when no two runs differ only in their seed (nothing to average).
  """
  groups: dict[tuple, list[dict[str, Any]]] = {}
  for r in rows:
    key = tuple(sorted((k, v) for k, v in r["overrides"].items() if k != SEED))
    groups.setdefault(key, []).append(r)
  if all(len(g) == 1 for g in groups.values()):
    return []
  out = []
  for members in groups.values():
    done = [r for r in members if r["status"] == "finished"]
    acc = [100 * r["accuracy"] for r in done]
    out.append({
        "group": group_label(members[0]["name"], members[0]["overrides"]),
        "runs": len(members), "finished": len(done),
        "seeds": ",".join(str(r["overrides"].get(SEED, "")) for r in done),
        "params": _first(r["params"] for r in members),
        "macs": _first(r["macs"] for r in members),
        "accuracy_mean": statistics.fmean(acc) if acc else None,
        "accuracy_std": statistics.stdev(acc) if len(acc) > 1 else (0.0 if acc else None),
        "error_mean": 100 - statistics.fmean(acc) if acc else None,
        "wall_time_mean": (statistics.fmean([r["wall_time_sec"] for r in done])
                           if done else None),
        "members": members})
  return out


def _first(values) -> Any:
  return next((v for v in values if v is not None), None)


def _num(x: Any, fmt: str = ",") -> str:
  return "" if x is None else format(x, fmt)


def _pm(mean: float | None, std: float | None) -> str:
  return "" if mean is None else f"{mean:.2f} ± {std:.2f}"


def write_tables(out_dir: str, rows: list[dict[str, Any]], groups: list[dict[str, Any]],
                 manifest: dict[str, Any]) -> str:
  """results.md, results.csv (and results_mean.csv); returns the markdown."""
  keys = varying_keys(rows)
  all_keys = list(dict.fromkeys(k for r in rows for k in r["overrides"]))
  constant = {k: rows[0]["overrides"][k] for k in all_keys
              if k not in keys and k in rows[0]["overrides"]}
  finished = sum(r["status"] == "finished" for r in rows)
  lines = [f"# Sweep {os.path.basename(os.path.abspath(out_dir))}", ""]
  if manifest.get("command"):
    lines.append(f"Command: `{manifest['command']}`  ")
  if manifest.get("config"):
    lines.append(f"Config: `{manifest['config']}`  ")
  if constant:
    lines.append("The same for every run: "
                 + ", ".join(f"`{k}={v}`" for k, v in constant.items()) + "  ")
  datasets = sorted({r["dataset"] for r in rows if r["dataset"]})
  lines.append(f"Data: {', '.join(f'`{d}`' for d in datasets) or '?'}; {len(rows)} runs, "
               f"{finished} finished. MACs: multiply-adds of one image (the papers' FLOPs).")
  if groups:
    lines += ["", "## Mean ± std over seeds", "",
              "| run | seeds | params | MACs | test accuracy (%) | test error (%) "
              "| wall time (s) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for g in groups:
      err = _pm(g["error_mean"], g["accuracy_std"])
      lines.append(f"| {g['group']} | {g['finished']}/{g['runs']} | {_num(g['params'])} "
                   f"| {_num(g['macs'])} | {_pm(g['accuracy_mean'], g['accuracy_std'])} "
                   f"| {err} | {_num(g['wall_time_mean'], '.0f')} |")
  lines += ["", "## Runs", "",
            "| run | " + ("overrides | " if keys else "") + "params | MACs "
            "| test accuracy (%) | test error (%) | steps | wall time (s) | status |",
            "|---|" + ("---|" if keys else "") + "---:|---:|---:|---:|---:|---:|---|"]
  for r in rows:
    acc = r["accuracy"]
    over = " ".join(f"{k}={r['overrides'][k]}" for k in keys if k in r["overrides"])
    steps = f"{_num(r['step'])}/{_num(r['total_steps'])}" if r["total_steps"] else _num(r["step"])
    lines.append(
        f"| {r['name']} | " + (f"{over} | " if keys else "")
        + f"{_num(r['params'])} | {_num(r['macs'])} "
        f"| {'' if acc is None else f'{100 * acc:.2f}'} "
        f"| {'' if acc is None else f'{100 * (1 - acc):.2f}'} | {steps} "
        f"| {_num(r['wall_time_sec'], '.0f')} | {r['status']} |")
  if groups:
    lines += ["", "Mean ± sample standard deviation over the finished seeds."]
  lines += ["", "![test accuracy against step](accuracy_vs_step.png)",
            "![final test accuracy against parameters](accuracy_vs_params.png)",
            "![final test accuracy against MACs](accuracy_vs_flops.png)"]
  markdown = "\n".join(lines) + "\n"
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write(markdown)

  fields = ["name", "status", "overrides", *all_keys, "model", "dataset", "params", "macs",
            "test_accuracy", "test_error", "test_top5", "test_loss", "step", "total_steps",
            "wall_time_sec", "workdir"]
  with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(fields)))
    writer.writeheader()
    for r in rows:
      acc = r["accuracy"]
      writer.writerow({
          "name": r["name"], "status": r["status"],
          "overrides": " ".join(f"{k}={v}" for k, v in r["overrides"].items()),
          **r["overrides"], "model": r["model"], "dataset": r["dataset"],
          "params": r["params"], "macs": r["macs"], "test_accuracy": acc,
          "test_error": None if acc is None else 1 - acc, "test_top5": r["top5"],
          "test_loss": r["loss"], "step": r["step"], "total_steps": r["total_steps"],
          "wall_time_sec": r["wall_time_sec"], "workdir": r["workdir"]})
  mean_path = os.path.join(out_dir, "results_mean.csv")
  if groups:
    with open(mean_path, "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["group", "finished", "runs", "seeds", "params", "macs",
                       "test_accuracy_mean", "test_accuracy_std", "test_error_mean",
                       "wall_time_mean"])
      for g in groups:
        writer.writerow([g["group"], g["finished"], g["runs"], g["seeds"], g["params"],
                         g["macs"], g["accuracy_mean"], g["accuracy_std"], g["error_mean"],
                         g["wall_time_mean"]])
  elif os.path.exists(mean_path):
    os.remove(mean_path)  # from an earlier collect of another sweep here
  return markdown


# ---------------------------------------------------------------------------- plots


def _groups_for_plots(rows, groups):
  if groups:
    return [(g["group"], g["members"]) for g in groups]
  return [(r["name"], [r]) for r in rows]


def plot_curves(path: str, rows: list[dict[str, Any]], groups: list[dict[str, Any]],
                title: str) -> None:
  """Test accuracy against step, every run; runs of one group share a colour."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(9, 5.5))
  colors = plt.get_cmap("tab10" if len(_groups_for_plots(rows, groups)) <= 10 else "tab20")
  for i, (label, members) in enumerate(_groups_for_plots(rows, groups)):
    for j, r in enumerate(members):
      if not r["evals"]:
        continue
      ax.plot([e["step"] for e in r["evals"]], [100 * e["eval_top1"] for e in r["evals"]],
              "o-" if len(r["evals"]) < 30 else "-", ms=3, lw=1.2, alpha=0.85,
              color=colors(i % colors.N), label=label if j == 0 else None)
  ax.set(xlabel="step", ylabel="test accuracy (%)", title=title)
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8, ncol=2 if len(ax.get_legend_handles_labels()[0]) > 8 else 1)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_final(path: str, rows: list[dict[str, Any]], groups: list[dict[str, Any]],
               x_key: str, x_label: str, title: str) -> None:
  """Final test accuracy against ``x_key`` (params or MACs): each run a dot, each group's
  mean with its std as an error bar, labelled."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(8, 5.5))
  colors = plt.get_cmap("tab10" if len(_groups_for_plots(rows, groups)) <= 10 else "tab20")
  xs = []
  for i, (label, members) in enumerate(_groups_for_plots(rows, groups)):
    done = [r for r in members if r["status"] == "finished" and r[x_key]]
    if not done:
      continue
    color = colors(i % colors.N)
    acc = [100 * r["accuracy"] for r in done]
    x = done[0][x_key]
    xs.append(x)
    ax.scatter([r[x_key] for r in done], acc, s=14, color=color, alpha=0.5)
    std = statistics.stdev(acc) if len(acc) > 1 else 0.0
    ax.errorbar([x], [statistics.fmean(acc)], yerr=[std], fmt="o", ms=7, capsize=4,
                color=color, label=label)
    ax.annotate(label, (x, statistics.fmean(acc)), textcoords="offset points",
                xytext=(6, 4), fontsize=8)
  if xs and max(xs) > 10 * min(xs):
    ax.set_xscale("log")
  ax.margins(x=0.15, y=0.1)  # room for the labels
  ax.set(xlabel=x_label, ylabel="final test accuracy (%)", title=title)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# ---------------------------------------------------------------------------- entry


def collect(sweep_dir: str, quiet: bool = False) -> list[dict[str, Any]]:
  """Reads every run of ``sweep_dir`` and writes the tables and plots there."""
  runs, manifest = list_runs(sweep_dir)
  if not runs:
    raise FileNotFoundError(f"no runs in {sweep_dir}: neither {MANIFEST} nor workdirs "
                            "with a config.json")
  cache: dict = {}
  rows = [read_run(r, cache) for r in runs]
  if not any(r["overrides"] for r in rows):  # no manifest: the configs tell what varies
    _overrides_from_configs(rows)
  groups = seed_groups(rows)
  markdown = write_tables(sweep_dir, rows, groups, manifest)
  name = os.path.basename(os.path.abspath(sweep_dir))
  plot_curves(os.path.join(sweep_dir, "accuracy_vs_step.png"), rows, groups,
              f"{name}: test accuracy during training")
  plot_final(os.path.join(sweep_dir, "accuracy_vs_params.png"), rows, groups, "params",
             "parameters", f"{name}: final test accuracy against parameters")
  plot_final(os.path.join(sweep_dir, "accuracy_vs_flops.png"), rows, groups, "macs",
             "MACs per image (multiply-adds; the papers' FLOPs)",
             f"{name}: final test accuracy against compute")
  if not quiet:
    print(markdown, end="")
    print(f"Wrote {sweep_dir}/results.md, results.csv"
          + (", results_mean.csv" if groups else "")
          + ", accuracy_vs_step.png, accuracy_vs_params.png, accuracy_vs_flops.png")
  return rows


def _overrides_from_configs(rows: list[dict[str, Any]]) -> None:
  """Without a manifest, the config fields that differ between the runs."""
  flat = [config_lib.flatten(rundir.read(r["workdir"], rundir.CONFIG) or {}) for r in rows]
  keys = sorted({k for f in flat for k in f})
  varying = [k for k in keys if len({json.dumps(f.get(k)) for f in flat}) > 1
             and k.split(".")[0] not in config_lib.NOT_THE_EXPERIMENT]
  for r, f in zip(rows, flat):
    r["overrides"] = {k: str(f.get(k)) for k in varying}


def main(argv: Sequence[str] | None = None) -> int:
  parser = cli.ArgumentParser(prog="launch/sweep.py collect",
                              description=__doc__.split("\n\n")[0])
  parser.add_argument("--sweep_dir", required=True)
  args = parser.parse_args(argv)
  try:
    collect(args.sweep_dir)
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
