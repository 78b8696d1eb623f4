r"""LeCun (1989)'s generalisation study: the five networks of "Generalization and network
design strategies" trained on the same 320 digits, tested on the same test set.

Usage, from the repository root:

  python tools/lecun1989_study.py --data usps --seeds 3     # the study (2-3 min, CPU)
  python tools/lecun1989_study.py --data digits             # offline: scikit-learn's digits
  python tools/lecun1989_study.py --data digits --tiny --epochs 1 --out /tmp/study  # seconds

Each run is ``train.train_and_evaluate`` on configs/lecun1989_nets.py (``net=N``) in this
process, in a fresh workdir ``OUT/runs/netN_seedS`` (its log in ``train.log`` there).
The seeds change the initial weights and the order of the examples, never the 320
training digits. Writes into ``--out`` (default runs/lecun1989_study):

  results.md   one row per net: connections, free parameters, test error and accuracy
               (mean +- sample std over seeds), training accuracy of the last pass
  results.csv  one row per run
  results.png  test error per net (mean, std as error bars) beside the paper's
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import statistics
import sys
import time
from typing import Any, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import models  # noqa: E402
import train  # noqa: E402
from configs import lecun1989_nets as nets_config  # noqa: E402
from models import lecun1989_nets  # noqa: E402
from training import cli  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import rundir  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "lecun1989_nets.py")
# The paper's test accuracy (%) on its own 160 test digits (Table 1).
PAPER_ACCURACY = {1: 80.0, 2: 87.0, 3: 88.5, 4: 94.0, 5: 98.4}


def net_config(net: int, data: str, seed: int, epochs: int | None, tiny: bool):
  arg = f"net={net}" + (",digits" if data == "digits" else "") + (",tiny" if tiny else "")
  config = config_lib.load_config(f"{CONFIG}:{arg}")
  config.seed = seed
  if epochs is not None:
    config.num_epochs = epochs
  # One log row per pass (so the last row is the last pass's training accuracy), one
  # checkpoint at the end.
  if config.num_train_examples:
    config.log_every_steps = -(-config.num_train_examples // config.batch_size)
  config.checkpoint_every_epochs = config.num_epochs
  config.eval_every_epochs = min(config.eval_every_epochs, config.num_epochs)
  return config, arg


def counts(net: int) -> tuple[int, int]:
  """(connections, free parameters) of net-``net`` on 16x16x1 digits."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  model = models.create_model(f"lecun1989_net{net}", num_classes=10)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                          jax.ShapeDtypeStruct((1, 16, 16, 1), jnp.float32))
  params = sum(x.size for x in jax.tree.leaves(shapes["params"]))
  return lecun1989_nets.connections(model)["total"], params


def run_one(config, workdir: str, verbose: bool) -> dict[str, Any]:
  shutil.rmtree(workdir, ignore_errors=True)
  os.makedirs(workdir)
  t = time.time()
  if verbose:
    summary = train.train_and_evaluate(config, workdir)
  else:
    with open(os.path.join(workdir, "train.log"), "w") as log, \
        contextlib.redirect_stdout(log):
      summary = train.train_and_evaluate(config, workdir)
  train_rows = [r for r in rundir.read_metrics(workdir) if "train_accuracy" in r]
  return {"test_accuracy": summary["eval_top1"], "test_error": 1 - summary["eval_top1"],
          "train_accuracy_last_pass": train_rows[-1]["train_accuracy"],
          "wall_s": time.time() - t}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def write_outputs(out: str, runs: list[dict[str, Any]], header: list[str]) -> list[dict]:
  with open(os.path.join(out, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(runs[0]))
    writer.writeheader()
    writer.writerows(runs)

  table = []
  for net in sorted({r["net"] for r in runs}):
    mine = [r for r in runs if r["net"] == net]
    err = mean_std([100 * r["test_error"] for r in mine])
    acc = mean_std([100 * r["test_accuracy"] for r in mine])
    tr = mean_std([100 * r["train_accuracy_last_pass"] for r in mine])
    table.append(dict(net=net, description=mine[0]["description"],
                      connections=mine[0]["connections"], params=mine[0]["params"],
                      err=err, acc=acc, train=tr, seeds=len(mine)))
  lines = header + [
      "",
      "| net | description | connections | free params | test error (%) | test accuracy (%) "
      "| train acc., last pass (%) | paper test acc. (%) |",
      "|---|---|---:|---:|---:|---:|---:|---:|"]
  for t in table:
    lines.append(
        f"| net-{t['net']} | {t['description']} | {t['connections']:,} | {t['params']:,} "
        f"| {t['err'][0]:.2f} +- {t['err'][1]:.2f} | {t['acc'][0]:.2f} +- {t['acc'][1]:.2f} "
        f"| {t['train'][0]:.1f} +- {t['train'][1]:.1f} | {PAPER_ACCURACY[t['net']]:.1f} |")
  lines += ["", "Mean +- sample standard deviation over seeds. Training accuracy is the running "
            "accuracy of the last pass (the weights change during it). The paper's accuracies "
            "are on its own 160 test digits (320 mouse-drawn training digits)."]
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  return table


def plot(path: str, table: list[dict], title: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  x = list(range(len(table)))
  fig, ax = plt.subplots(figsize=(8, 4.5))
  ax.bar([i - 0.2 for i in x], [t["err"][0] for t in table], 0.4,
         yerr=[t["err"][1] for t in table], capsize=4, label="ours (mean, std over seeds)")
  ax.bar([i + 0.2 for i in x], [100 - PAPER_ACCURACY[t["net"]] for t in table], 0.4,
         color="0.7", label="paper (its 160 test digits)")
  ax.set_xticks(x, [f"net-{t['net']}\n{t['params']:,} params\n{t['connections']:,} conn."
                    for t in table])
  ax.set(ylabel="test error (%)", title=title)
  ax.legend()
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
  parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data", choices=("usps", "digits"), default="usps")
  parser.add_argument("--seeds", type=int, default=1, help="runs per net, seeds 0..N-1")
  parser.add_argument("--epochs", type=int, default=None, help="override the config's 100")
  parser.add_argument("--nets", default="1,2,3,4,5", help="comma-separated subset of 1..5")
  parser.add_argument("--out", default=os.path.join("runs", "lecun1989_study"))
  parser.add_argument("--tiny", action="store_true", help="the config's tiny variant (tests)")
  parser.add_argument("--verbose", action="store_true", help="show train.py's own output")
  args = parser.parse_args(argv)
  nets = [int(n) for n in args.nets.split(",")]
  if not nets or any(not 1 <= n <= nets_config.NUM_NETS for n in nets) or args.seeds < 1:
    parser.error("--nets must name nets 1..5 and --seeds be >= 1")

  os.makedirs(args.out, exist_ok=True)
  runs, t0 = [], time.time()
  total = len(nets) * args.seeds
  for net in nets:
    connections, params = counts(net)
    for seed in range(args.seeds):
      config, arg = net_config(net, args.data, seed, args.epochs, args.tiny)
      print(f"[{len(runs) + 1}/{total}] net-{net} seed {seed} ({params:,} params, "
            f"{connections:,} connections) ...", end=" ", flush=True)
      try:
        result = run_one(config, os.path.join(args.out, "runs", f"net{net}_seed{seed}"),
                         args.verbose)
      except train.USER_ERRORS as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
      print(f"test error {100 * result['test_error']:.2f}%, train acc (last pass) "
            f"{100 * result['train_accuracy_last_pass']:.1f}%, {result['wall_s']:.1f} s",
            flush=True)
      runs.append({"net": net, "seed": seed,
                   "description": lecun1989_nets.DESCRIPTIONS[f"net{net}"],
                   "connections": connections, "params": params, **result})

  wall = time.time() - t0
  dataset = config.dataset
  header = [
      f"# LeCun (1989) generalisation study on {args.data}",
      "",
      f"Command: `python tools/lecun1989_study.py {' '.join(argv or sys.argv[1:])}`  ",
      f"Data: `{dataset}`, {config.num_train_examples or 'all'} class-balanced training "
      f"examples (the same for every run); recipe: configs/lecun1989_nets.py:net=N"
      f"{arg[len(f'net={net}'):]} "
      f"({config.loss}, {config.optimizer} lr {config.learning_rate}, batch "
      f"{config.batch_size}, {config.num_epochs} passes, {config.model_kwargs.to_dict()})  ",
      f"Seeds: 0..{args.seeds - 1}; wall time {wall:.0f} s for {total} runs.",
  ]
  table = write_outputs(args.out, runs, header)
  plot(os.path.join(args.out, "results.png"), table,
       f"LeCun 1989 nets on {args.data}: {config.num_train_examples or 'all'} training "
       f"examples, {args.seeds} seed(s)")
  print(f"\n{len(runs)} runs in {wall:.0f} s. Wrote {args.out}/results.md, results.csv, "
        "results.png\n")
  with open(os.path.join(args.out, "results.md")) as f:
    print(f.read())
  return 0


if __name__ == "__main__":
  sys.exit(main())
