"""Claim 4, Simonyan & Zisserman (2014): stacks of 3x3 convolutions beat one large kernel.

Sec. 2.3: two stacked 3x3 convs see a 5x5 region (three a 7x7) with fewer parameters
(2 x 9C^2 = 18C^2 against 25C^2; 27C^2 against 49C^2) and more non-linearities. Sec. 4.1
tests it: net B with each pair of 3x3 convs replaced by one 5x5 ("which has the same
receptive field") had a 7% higher top-1 error (centre crop). Here: ``models/vgg.py``'s
``stack='single'`` (each stage's n stacked 3x3 convs as one (2n+1)x(2n+1) conv) against
the paper's stacks. Receptive fields and parameters come from the paper's net B at 224
(``analysis.analyze``, traced); accuracy from short trainings.

Choices for the cpu budget (ours, made before any cpu-budget run): net B with BatchNorm
(``vgg13_bn``; without BN, at 1/4 width and lr 0.01, a partial run's loss was still 2.30
after 60 steps: too slow for minutes of CPU), 1/8 width (fc layers 64 wide), no dropout,
Glorot init, SGD momentum 0.9 at lr 0.01 with a cosine schedule, weight decay 5e-4,
10,000 Fashion-MNIST training images padded to 32x32 (VGG's five pools), 3 epochs, no
augmentation, all 10,000 test images, 3 seeds per net. ``full`` is the paper's setting
(``configs/vgg.py:depth=13``: ImageNet, no BN, 74 epochs), one seed per net.
"""

from __future__ import annotations

import os
from typing import Any

from experiments import entry

STACKS = ("3x3", "single")  # models/vgg.py's VGG.stack
LABELS = {"3x3": "B (3x3 stacks)", "single": "B with one 5x5 per stack"}
SEEDS = {"tiny": 1, "cpu": 3, "full": 1}

_CPU_FIXED = (
    ("image_size", "None"), ("pad", "2"),
    ("num_train_examples", "10000"), ("num_epochs", "3"), ("batch_size", "128"),
    ("learning_rate", "0.01"), ("schedule", "cosine"),
    ("augment.scale_jitter", "0,0"), ("augment.flip", "False"),
    ("augment.lighting", "0.0"), ("augment.eval_crop_pct", "0.0"),
    ("model_kwargs.width", "0.125"), ("model_kwargs.hidden_units", "512"),
    ("model_kwargs.dropout_rate", "0.0"), ("model_kwargs.weight_init", "glorot"),
    ("eval_every_epochs", "3"), ("checkpoint_every_epochs", "3"))


class VGGStacks(entry.Entry):
  id = "vgg_stacks"
  title = "Stacks of 3x3 convolutions against one large kernel (VGG, 2014)"
  claim = ("a stack of 3x3 convs has the receptive field of one 5x5 (or 7x7) with fewer "
           "parameters, and net B beats the same net with each pair of 3x3 replaced by one "
           "5x5")
  source = "Simonyan & Zisserman 2014, Sec. 2.3 and Sec. 4.1 (Table 3, net B)"
  paper = ("18C^2 against 25C^2 parameters; the 5x5 net's top-1 error 7% higher than B's "
           "(B: 28.7%, Table 3)")
  metric = ("receptive field after each of the five pools and conv parameters of net B and "
            "its 5x5 version (ImageNet, 224 px); test error of both, mean and sample std "
            "over seeds")
  rule = ("holds: equal receptive fields after every pool, fewer conv parameters in B, and "
          "the 5x5 net's mean test error above B's by more than the two stds added; holds "
          "in direction only: the same but a lead within that spread; does not hold: "
          "otherwise (receptive fields differ, B has as many conv parameters or more, or "
          "the 5x5 net's mean error is not above B's)")

  def sweeps(self, budget: str):
    runs = tuple({"model_kwargs.stack": stack, "seed": str(seed),
                  "name": f"{stack}_seed{seed}"}
                 for stack in STACKS for seed in range(SEEDS[budget]))
    if budget == "tiny":
      # No augmentation (as at cpu): less to compile.
      return (entry.Sweep("stacks", "configs/vgg.py:depth=13,bn,tiny", runs,
                          (("num_epochs", "1"), ("synthetic.num_train", "64"),
                           ("synthetic.num_test", "64"), ("augment.scale_jitter", "0,0"),
                           ("augment.flip", "False"), ("augment.lighting", "0.0"),
                           ("augment.eval_crop_pct", "0.0"))),)
    if budget == "cpu":
      from configs import common  # pylint: disable=g-import-not-at-top
      fixed = (("dataset", common.shared_npz("fashion_mnist")),) + _CPU_FIXED
      return (entry.Sweep("stacks", "configs/vgg.py:depth=13,bn", runs, fixed),)
    return (entry.Sweep("stacks", "configs/vgg.py:depth=13", runs),)

  def judge(self, m: dict[str, Any]) -> str:
    params = m["conv_params"]
    (b, b_std), (five, five_std) = m["errors"]["3x3"], m["errors"]["single"]
    if not m["rf_equal"] or params["3x3"] >= params["single"] or five <= b:
      return "does not hold"
    return "holds" if five - b > b_std + five_std else "holds in direction only"

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> entry.Result:
    from launch import collect  # pylint: disable=g-import-not-at-top
    rows = collect.collect(sweep_dirs["stacks"], quiet=True)
    groups = entry.finished_by(rows, "model_kwargs.stack", STACKS,
                               f"{self.id}'s {sweep_dirs['stacks']}")
    per_stack = {s: [100 * (1 - r["accuracy"]) for r in g] for s, g in groups.items()}
    errors = {s: entry.mean_std(v) for s, v in per_stack.items()}
    cost = paper_net_costs()
    dataset = rows[0]["dataset"]
    m = {"errors": errors, "seeds": min(len(v) for v in per_stack.values()),
         "dataset": entry.dataset_name(dataset),
         "rf_equal": cost["3x3"]["pool_fields"] == cost["single"]["pool_fields"],
         "pool_fields": {s: cost[s]["pool_fields"] for s in STACKS},
         "conv_params": {s: cost[s]["conv_params"] for s in STACKS},
         "stage_params": {s: cost[s]["stage_params"] for s in STACKS},
         "macs": {s: cost[s]["macs"] for s in STACKS}}
    verdict = self.judge(m)
    table = [{"net": LABELS[s], "test error % (mean)": errors[s][0], "std": errors[s][1],
              "seeds": len(per_stack[s]),
              "trained params": next(r["params"] for r in rows
                                     if r["overrides"]["model_kwargs.stack"] == s),
              "conv params (B, 224)": m["conv_params"][s],
              "GMACs (B, 224)": m["macs"][s] / 1e9,
              "RF after pools (B, 224)": " ".join(map(str, m["pool_fields"][s]))}
             for s in STACKS]
    files = entry.write_table(out_dir, table, list(table[0]), self.title)
    files.append(_plot(m, per_stack, os.path.join(out_dir, "stacks.png")))
    (b, b_std), (five, five_std) = errors["3x3"], errors["single"]
    ratio = m["conv_params"]["3x3"] / m["conv_params"]["single"]
    rf = "equal" if m["rf_equal"] else "UNEQUAL"
    ours = (f"5x5 net {five - b:+.2f} points test error ({five:.2f} +- {five_std:.2f}% "
            f"against B's {b:.2f} +- {b_std:.2f}%; {_seeds(m['seeds'])}, {m['dataset']}, "
            f"VGG-13-BN at 1/8 width); receptive fields {rf}, B's conv parameters "
            f"{ratio:.2f}x the 5x5 net's")
    return entry.Result(m, verdict, ours, files)


def _seeds(n: int) -> str:
  return f"{n} seed" + ("s" if n != 1 else "")


def paper_net_costs() -> dict[str, dict[str, Any]]:
  """Net B (``vgg13``, 1000 classes, 224x224) and its 5x5 version, traced: the receptive
  field after each pool, the conv parameters (in all and per stage) and the MACs."""
  import analysis  # pylint: disable=g-import-not-at-top
  import models  # pylint: disable=g-import-not-at-top
  out = {}
  for stack in STACKS:
    r = analysis.analyze(models.create_model("vgg13", num_classes=1000, stack=stack),
                         (1, 224, 224, 3))
    pools = [l.field.size[0] for l in r.layers if l.op.startswith("max_pool")]
    stage_params: dict[int, int] = {}
    for s in r.stages:
      if s.name.startswith("conv"):
        stage = int(s.name[4:].split("_")[0])
        stage_params[stage] = stage_params.get(stage, 0) + s.params
    out[stack] = {"pool_fields": tuple(pools), "conv_params": sum(stage_params.values()),
                  "stage_params": stage_params, "macs": r.macs}
  return out


def _plot(m: dict[str, Any], per_stack: dict[str, list[float]], path: str) -> str:
  fig, (ax1, ax2) = entry.figure(ncols=2, figsize=(10, 4))
  for i, s in enumerate(STACKS):
    mean, std = m["errors"][s]
    ax1.bar(i, mean, 0.6, yerr=std, capsize=4, color=f"C{i}", alpha=0.7)
    ax1.plot([i] * len(per_stack[s]), per_stack[s], "ko", ms=4)
  ax1.set_xticks(range(len(STACKS)), [LABELS[s] for s in STACKS])
  ax1.set(ylabel="test error (%)",
          title=f"Test error ({m['dataset']}, {_seeds(m['seeds'])})")
  ax1.grid(alpha=0.3, axis="y")
  stages = sorted(m["stage_params"]["3x3"])
  for i, s in enumerate(STACKS):
    ax2.bar([x + (i - 0.5) * 0.4 for x in range(len(stages))],
            [m["stage_params"][s][k] / 1e6 for k in stages], 0.4, label=LABELS[s])
  for x, field in enumerate(m["pool_fields"]["3x3"]):
    ax2.annotate(f"RF {field}", (x, 0), textcoords="offset points", xytext=(0, -22),
                 ha="center", fontsize=8)
  ax2.set_xticks(range(len(stages)), [f"stage {k}" for k in stages])
  ax2.set(ylabel="conv parameters (M)", title="Net B at 224 px: parameters per stage")
  ax2.legend()
  ax2.grid(alpha=0.3, axis="y")
  return entry.save(fig, path)
