"""Claim 5, Szegedy et al. (2014): 1x1 convolutions "compute reductions" in the Inception
module, keeping the cost of wide modules in check.

Sec. 4 and Figure 2: the module "in naive form" (Figure 2(a): 1x1, 3x3 and 5x5 convs and
a 3x3 max-pool on the same input, concatenated) is expensive, since "even a modest number
of 5x5 convolutions can be prohibitively expensive on top of a convolutional layer with a
large number of filters", and the pooled input passed on makes the width grow "from stage
to stage"; 1x1 convs before the 3x3 and 5x5 convs and after the pool (Figure 2(b))
reduce the dimensions. Here: ``models/inception.py``'s ``towers='naive'`` against the
paper's reduced modules, Table 1's filter counts in both. Parameters and multiply-adds
of the paper's GoogLeNet at 224 (``googlenet_paper``, auxiliary heads left out) come
from ``analysis.analyze`` (traced); accuracy from short trainings of both.

Choices for the cpu budget (ours, made before any cpu-budget run): torchvision's
GoogLeNet (BatchNorm after every conv, so that minutes of SGD train it) with true 5x5
convs (``kernel_5x5=5``, the paper's), no auxiliary heads, 1/4 of every width, on 4,000
Fashion-MNIST training images padded to 32x32 (3a and 3b then see 4x4 maps, 4a-4e 2x2,
5a-5b 1x1), 2 epochs, batch 128, SGD momentum 0.9 at lr 0.02 with a cosine schedule,
weight decay 2e-4, dropout 0.2, no augmentation, all 10,000 test images, 3 seeds per
module. ``full``: the paper's network and recipe (``configs/googlenet.py``, ImageNet),
one seed per module.
"""

from __future__ import annotations

import os
from typing import Any

from experiments import entry

TOWERS = ("reduced", "naive")  # models/inception.py's GoogLeNet.towers
LABELS = {"reduced": "with 1x1 reductions (Fig. 2b)", "naive": "naive (Fig. 2a)"}
SEEDS = {"tiny": 1, "cpu": 3, "full": 1}
MIN_MAC_RATIO = 2.0  # "holds" needs the naive net to cost at least this many times more
TOLERANCE = 1.0  # points of test accuracy the reduced net may lose for "holds"
DIRECTION_TOLERANCE = 3.0  # ... and for "holds in direction only"

_SMALL = (("model_kwargs.kernel_5x5", "5"), ("model_kwargs.aux_logits", "False"),
          ("augment.inception_crop", "False"), ("augment.flip", "False"),
          ("augment.color_jitter", "0.0"), ("augment.eval_crop_pct", "0.0"),
          ("schedule", "cosine"), ("decay_epochs", "()"), ("warmup_epochs", "0.0"))
_CPU = (("image_size", "None"), ("pad", "2"), ("num_train_examples", "4000"),
        ("num_epochs", "2"), ("batch_size", "128"), ("learning_rate", "0.02"),
        ("model_kwargs.width", "0.25"), ("eval_every_epochs", "2"),
        ("checkpoint_every_epochs", "2"))
_TINY = (("synthetic.shape", "32,32,3"), ("synthetic.num_train", "64"),
         ("synthetic.num_test", "64"), ("model_kwargs.width", "0.125"))


class GoogLeNetReductions(entry.Entry):
  id = "googlenet_reductions"
  title = "1x1 reductions in the Inception module (GoogLeNet, 2014)"
  claim = ("1x1 convolutions before the 3x3 and 5x5 convolutions and after the pooling "
           "keep the Inception network's cost in check; the naive module blows it up")
  source = "Szegedy et al. 2014, Sec. 4 and Fig. 2"
  paper = ("no figure for a naive network; with the reductions GoogLeNet needs 1.5G "
           "multiply-adds at inference (Sec. 5) and about 6.8M parameters (Table 1)")
  metric = ("multiply-adds and parameters of the paper's GoogLeNet (224 px) with naive and "
            "with reduced modules; test accuracy of both at 1/4 width, mean and sample std "
            "over seeds")
  rule = (f"holds: the naive network costs at least {MIN_MAC_RATIO:g}x the multiply-adds of "
          f"the reduced one and the reduced net's mean test accuracy is at most "
          f"{TOLERANCE:g} point below the naive net's (or above); holds in direction only: "
          f"the naive network costs more and the reduced net is at most "
          f"{DIRECTION_TOLERANCE:g} points below; does not hold: otherwise")

  def sweeps(self, budget: str):
    runs = tuple({"model_kwargs.towers": towers, "seed": str(seed),
                  "name": f"{towers}_seed{seed}"}
                 for towers in TOWERS for seed in range(SEEDS[budget]))
    if budget == "tiny":
      return (entry.Sweep("towers", "configs/googlenet.py:torchvision,tiny", runs,
                          _SMALL + _TINY),)
    if budget == "cpu":
      from configs import common  # pylint: disable=g-import-not-at-top
      fixed = (("dataset", common.shared_npz("fashion_mnist")),) + _SMALL + _CPU
      return (entry.Sweep("towers", "configs/googlenet.py:torchvision", runs, fixed),)
    return (entry.Sweep("towers", "configs/googlenet.py", runs),)

  def judge(self, m: dict[str, Any]) -> str:
    ratio = m["mac_ratio"]
    gap = m["accuracy"]["naive"][0] - m["accuracy"]["reduced"][0]  # points lost
    if ratio >= MIN_MAC_RATIO and gap <= TOLERANCE:
      return "holds"
    if ratio > 1 and gap <= DIRECTION_TOLERANCE:
      return "holds in direction only"
    return "does not hold"

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> entry.Result:
    from launch import collect  # pylint: disable=g-import-not-at-top
    rows = collect.collect(sweep_dirs["towers"], quiet=True)
    groups = entry.finished_by(rows, "model_kwargs.towers", TOWERS,
                               f"{self.id}'s {sweep_dirs['towers']}")
    per_towers = {t: [100 * r["accuracy"] for r in g] for t, g in groups.items()}
    trained = {t: {"params": g[-1]["params"], "macs": g[-1]["macs"]}
               for t, g in groups.items()}
    accuracy = {t: entry.mean_std(v) for t, v in per_towers.items()}
    cost = paper_net_costs()
    dataset = rows[0]["dataset"]
    m = {"accuracy": accuracy, "seeds": min(len(v) for v in per_towers.values()),
         "dataset": entry.dataset_name(dataset),
         "mac_ratio": cost["naive"]["macs"] / cost["reduced"]["macs"],
         "param_ratio": cost["naive"]["params"] / cost["reduced"]["params"],
         "paper_net": cost, "trained": trained}
    verdict = self.judge(m)
    table = [{"modules": LABELS[t], "test accuracy % (mean)": accuracy[t][0],
              "std": accuracy[t][1], "seeds": len(per_towers[t]),
              "trained params": trained[t]["params"],
              "trained MMACs": (trained[t]["macs"] or 0) / 1e6,
              "GoogLeNet params (224)": cost[t]["params"],
              "GoogLeNet GMACs (224)": cost[t]["macs"] / 1e9,
              "inception3a MMACs (224)": cost[t]["modules"]["3a"] / 1e6,
              "output channels of 5b": cost[t]["channels"]["5b"]}
             for t in TOWERS]
    files = entry.write_table(out_dir, table, list(table[0]), self.title)
    files.append(_plot(m, per_towers, os.path.join(out_dir, "reductions.png")))
    (red, red_std), (naive, naive_std) = accuracy["reduced"], accuracy["naive"]
    ours = (f"naive GoogLeNet {m['mac_ratio']:.1f}x the multiply-adds and "
            f"{m['param_ratio']:.1f}x the parameters (224 px); test accuracy "
            f"{red:.2f} +- {red_std:.2f}% with reductions, {naive:.2f} +- {naive_std:.2f}% "
            f"naive ({m['seeds']} seed{'s' if m['seeds'] != 1 else ''}, {m['dataset']}, "
            "GoogLeNet-BN at 1/4 width)")
    return entry.Result(m, verdict, ours, files)


def paper_net_costs(width: float = 1.0, side: int = 224) -> dict[str, dict[str, Any]]:
  """The paper's GoogLeNet (``googlenet_paper``, 1000 classes, no auxiliary heads) with
  reduced and with naive modules, traced: parameters and MACs in all, MACs and output
  channels of each Inception module."""
  import analysis  # pylint: disable=g-import-not-at-top
  import models  # pylint: disable=g-import-not-at-top
  out = {}
  for towers in TOWERS:
    model = models.create_model("googlenet_paper", num_classes=1000, aux_logits=False,
                                towers=towers, width=width)
    r = analysis.analyze(model, (1, side, side, 3))
    modules = {s.name.removeprefix("inception"): s for s in r.stages
               if s.name.startswith("inception")}
    out[towers] = {"params": r.params, "macs": r.macs,
                   "modules": {k: s.macs for k, s in modules.items()},
                   "channels": {k: s.shape[-1] for k, s in modules.items()}}
  return out


def _plot(m: dict[str, Any], per_towers: dict[str, list[float]], path: str) -> str:
  fig, (ax1, ax2) = entry.figure(ncols=2, figsize=(11, 4))
  names = list(m["paper_net"]["reduced"]["modules"])
  for i, t in enumerate(TOWERS):
    ax1.bar([x + (i - 0.5) * 0.4 for x in range(len(names))],
            [m["paper_net"][t]["modules"][k] / 1e6 for k in names], 0.4, label=LABELS[t])
  ax1.set_yscale("log")
  ax1.set_xticks(range(len(names)), names)
  ax1.set(xlabel="Inception module", ylabel="MMACs per image (log)",
          title=f"GoogLeNet at 224 px: naive {m['mac_ratio']:.1f}x the MACs")
  ax1.legend()
  ax1.grid(alpha=0.3, axis="y", which="both")
  for i, t in enumerate(TOWERS):
    mean, std = m["accuracy"][t]
    ax2.bar(i, mean, 0.6, yerr=std, capsize=4, color=f"C{i}", alpha=0.7)
    ax2.plot([i] * len(per_towers[t]), per_towers[t], "ko", ms=4)
  ax2.set_xticks(range(len(TOWERS)), [LABELS[t] for t in TOWERS])
  low = min(min(v) for v in per_towers.values())
  ax2.set_ylim(max(0.0, low - 5), None)
  ax2.set(ylabel="test accuracy (%)",
          title=f"Test accuracy ({m['dataset']}, {m['seeds']} seeds)")
  ax2.grid(alpha=0.3, axis="y")
  return entry.save(fig, path)
