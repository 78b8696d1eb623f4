"""Claim 7, the degradation problem (He et al. 2016, "Deep Residual Learning for Image
Recognition", Sec. 4.2, Fig. 6): a deeper plain network has HIGHER training error than a
shallower one, which is an optimisation difficulty, not overfitting, and shortcuts remove
it: on CIFAR-10 plain-56 trains worse than plain-20 throughout (Fig. 6 left), while
ResNet-56 trains better than ResNet-20 (Fig. 6 middle).

The four networks are ``models/resnet.py``'s CifarResNet at n = 3 and 9 (20 and 56
layers), with option-A shortcuts and with none (``shortcut='plain'``: the same layers
and parameters, y = relu(F(x))). What makes the comparison fair: the four share
everything but depth and shortcuts, as in the paper (BatchNorm after every conv, He
init, SGD momentum 0.9, weight decay 1e-4, lr 0.1 per 128 images, the same data order
per seed); the training error is that of the training batches in train mode (the
paper's thin curves), measured at the same steps.

Budgets. ``cpu`` (our choices, to fit a 2-core CPU): Fashion-MNIST resized to 16x16
(8x8 and 4x4 maps in stages 2 and 3), 5,000 class-balanced training images, width 8
(8/16/32 filters instead of 16/32/64), batch 64 at lr 0.05 (the paper's 0.1 per 128),
3 epochs (234 steps) with cosine decay, no augmentation (the training error then
measures how well a fixed set is fitted, the optimisation question), 3 seeds. Depth is
what makes the plain net struggle, and nothing here shortens the deep nets' run relative
to the shallow ones'. ``full``: the paper's CIFAR-10 recipe (``configs/resnet20_cifar.py``,
164 epochs, crops and flips), one seed. ``tiny``: 8 and 14 layers (n = 1, 2) on the
config's synthetic data.
"""

from __future__ import annotations

import os
import re
import statistics
from typing import Any

from experiments import entry

KINDS = {"plain": "plain", "resnet": "A"}  # run-name prefix -> model_kwargs.shortcut
_NAME = re.compile(r"^(plain|resnet)(\d+)_seed(\d+)$")


def _runs(depths: dict[int, dict[str, str]], seeds: int) -> tuple[dict[str, str], ...]:
  """Every (kind, depth, seed): ``plain20_seed0`` ... ``resnet56_seed2``."""
  return tuple({"model": fields["model"], **{k: v for k, v in fields.items() if k != "model"},
                "model_kwargs.shortcut": shortcut, "seed": str(seed),
                "name": f"{kind}{depth}_seed{seed}"}
               for seed in range(seeds) for kind, shortcut in KINDS.items()
               for depth, fields in depths.items())


class Degradation(entry.Entry):
  id = "resnet_degradation"
  title = "The degradation problem: plain against residual depth (He et al. 2016)"
  claim = ("the deeper plain net (56 layers) has higher training error than the 20-layer "
           "one, while ResNet-56 has lower training error than ResNet-20")
  source = "He et al. 2016, 'Deep Residual Learning for Image Recognition', Sec. 4.2, Fig. 6"
  paper = ("CIFAR-10: plain-56 above plain-20 in training error throughout training; "
           "ResNet-56 below ResNet-20")
  metric = ("final training error (train-mode batches, mean over the last epoch's log "
            "points) of plain and ResNet at the two depths, mean and sample std over seeds")
  rule = ("with gap = deep minus shallow training error: holds: the plain gap is positive "
          "and larger than the two plain nets' stds added, and the ResNet gap is <= 0; "
          "holds in direction only: the plain gap is positive and the ResNet gap smaller "
          "than it (shortcuts shrink the penalty of depth); does not hold: otherwise")

  def sweeps(self, budget: str):
    if budget == "tiny":
      depths = {8: {"model": "resnet20", "model_kwargs.blocks_per_stage": "1"},
                14: {"model": "resnet20", "model_kwargs.blocks_per_stage": "2"}}
      return (entry.Sweep("nets", "configs/resnet20_cifar.py:tiny", _runs(depths, 1),
                          fixed=(("log_every_steps", "2"),)),)
    depths = {20: {"model": "resnet20"}, 56: {"model": "resnet56"}}
    if budget == "full":
      return (entry.Sweep("nets", "configs/resnet20_cifar.py", _runs(depths, 1),
                          fixed=(("log_every_steps", "100"),)),)
    from configs import common  # pylint: disable=g-import-not-at-top
    fixed = (("dataset", common.shared_npz("fashion_mnist")), ("image_size", "16"),
             ("pad", "0"), ("num_train_examples", "5000"), ("model_kwargs.width", "8"),
             ("batch_size", "64"), ("learning_rate", "0.05"), ("num_epochs", "3"),
             ("schedule", "cosine"), ("decay_epochs", "()"), ("augment.crop_padding", "0"),
             ("augment.flip", "false"), ("log_every_steps", "13"),
             ("eval_every_epochs", "3"), ("checkpoint_every_epochs", "3"))
    return (entry.Sweep("nets", "configs/resnet20_cifar.py", _runs(depths, 3), fixed),)

  def judge(self, m: dict[str, Any]) -> str:
    err = m["train_error"]  # {"plain" | "resnet": {depth: (mean, std)}}
    shallow, deep = min(err["plain"]), max(err["plain"])
    gap_plain = err["plain"][deep][0] - err["plain"][shallow][0]
    gap_res = err["resnet"][deep][0] - err["resnet"][shallow][0]
    noise = err["plain"][deep][1] + err["plain"][shallow][1]
    if gap_plain > 0 and gap_plain > noise and gap_res <= 0:
      return "holds"
    if gap_plain > 0 and gap_res < gap_plain:
      return "holds in direction only"
    return "does not hold"

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> entry.Result:
    from launch import collect  # pylint: disable=g-import-not-at-top
    from training import rundir  # pylint: disable=g-import-not-at-top
    rows = collect.collect(sweep_dirs["nets"], quiet=True)
    # (kind, depth) -> per seed: final train error, test error, the (step, error) curve.
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
      match = _NAME.match(r["name"])
      if r["status"] != "finished" or not match:
        continue
      train = [x for x in rundir.read_metrics(r["workdir"]) if "train_accuracy" in x]
      if not train:
        raise RuntimeError(f"{self.id}: no training rows in {r['workdir']}/metrics.jsonl")
      last_epoch = max(x["epoch"] for x in train) - 1.0
      tail = [x for x in train if x["epoch"] > last_epoch + 1e-9] or train[-1:]
      runs.setdefault((match[1], int(match[2])), []).append({
          "final": 100 * (1 - statistics.fmean(x["train_accuracy"] for x in tail)),
          "test": 100 * (1 - r["accuracy"]), "params": r["params"],
          "curve": [(x["step"], 100 * (1 - x["train_accuracy"])) for x in train]})
    depths = sorted({d for _, d in runs})
    missing = [f"{k}{d}" for k in KINDS for d in depths if (k, d) not in runs]
    if len(depths) != 2 or missing:
      raise RuntimeError(f"{self.id}: need finished plain and resnet runs at two depths in "
                         f"{sweep_dirs['nets']}; have {sorted(runs)}")
    stat = entry.mean_std
    err = {k: {d: stat([s["final"] for s in runs[k, d]]) for d in depths} for k in KINDS}
    seeds = min(len(v) for v in runs.values())
    dataset = rows[0]["dataset"]
    m = {"train_error": err, "seeds": seeds,
         "test_error": {k: {d: stat([s["test"] for s in runs[k, d]]) for d in depths}
                        for k in KINDS},
         "dataset": entry.dataset_name(dataset)}
    verdict = self.judge(m)
    table = [{"net": f"{k}-{d}", "shortcuts": "none" if k == "plain" else "A",
              "params": runs[k, d][0]["params"], "seeds": len(runs[k, d]),
              "train error % (final)": err[k][d][0], "std": err[k][d][1],
              "test error %": m["test_error"][k][d][0], "test std": m["test_error"][k][d][1]}
             for k in KINDS for d in depths]
    files = entry.write_table(out_dir, table, list(table[0]), self.title)
    files.append(_plot(runs, depths, os.path.join(out_dir, "training_error.png")))
    lo, hi = depths
    ours = (f"train error plain-{lo} {err['plain'][lo][0]:.1f}% vs plain-{hi} "
            f"{err['plain'][hi][0]:.1f}%, ResNet-{lo} {err['resnet'][lo][0]:.1f}% vs "
            f"ResNet-{hi} {err['resnet'][hi][0]:.1f}% ({seeds} seeds, {m['dataset']})")
    return entry.Result(m, verdict, ours, files)


def _plot(runs: dict[tuple[str, int], list[dict[str, Any]]], depths: list[int],
          path: str) -> str:
  """Fig. 6 left and middle: training error against step, plain and ResNet side by side
  (each seed thin, their mean thick)."""
  fig, axes = entry.figure(ncols=2, figsize=(10, 4), sharey=True)
  for ax, kind, name in ((axes[0], "plain", "plain"), (axes[1], "resnet", "ResNet")):
    for depth, color in zip(depths, ("tab:orange", "tab:red")):
      curves = [s["curve"] for s in runs[kind, depth]]
      for c in curves:
        ax.plot(*zip(*c), color=color, lw=0.6, alpha=0.35)
      n = min(len(c) for c in curves)
      mean = [statistics.fmean(c[i][1] for c in curves) for i in range(n)]
      ax.plot([curves[0][i][0] for i in range(n)], mean, color=color, lw=2,
              label=f"{name}-{depth}")
    ax.set(xlabel="step", title=f"{name} nets", ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend()
  axes[0].set_ylabel("training error (%)")
  return entry.save(fig, path)
