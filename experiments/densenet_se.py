"""Claim 8, parameter efficiency after ResNet: dense connectivity (Huang et al. 2017) and
Squeeze-and-Excitation (Hu et al. 2018).

DenseNet's claim (Table 2, Fig. 4): a DenseNet reaches a ResNet's accuracy with far fewer
parameters (CIFAR-10+: DenseNet-BC L=100 k=12, 0.8M parameters, 4.51% error against
ResNet-110's 1.7M and 6.41%). SE's claim (Table 2): SE blocks lower the error of the
network they are added to for about 10% more parameters (ImageNet: SE-ResNet-50 23.29%
against ResNet-50's 24.80% top-1 error, 28.1M against 25.6M parameters).

Four nets, one recipe per budget, accuracy against parameters: a small DenseNet, the
CIFAR ResNet (``resnet20``, or ResNet-110 at ``full``), and an ImageNet-style ResNet with
and without SE blocks. SE is measured on the ImageNet-style ResNet because that is where
``models/resnet.py`` exposes it (``se_resnet*``, ``ResNet.se_reduction``): the CIFAR ResNet
(``CifarResNet``) has no SE field, and this entry does not change that module.

Budgets. ``cpu``: Fashion-MNIST at its own 28x28 (every net here takes any size),
``configs/resnet20_cifar.py:fashion_mnist,short``'s recipe (SGD Nesterov, cosine, weight
decay 5e-4, translations, flips, random erasing 0.25) for ``CPU_EPOCHS`` epochs over a
fixed class-balanced subset of ``CPU_TRAIN`` images, test on all 10,000, ``CPU_SEEDS``
seeds per net; the nets: DenseNet L=16 k=12 (``densenet40_k12`` with blocks of 4 layers,
no bottleneck or compression), ResNet-20, and ResNet-18's basic blocks at width 16 in three
stages of two blocks (``resnet18`` / ``se_resnet18``, r = 16). ``full``: CIFAR-10 with
DenseNet's recipe (``configs/densenet121.py:cifar``, 300 epochs) for DenseNet-BC-100
(k=12) and ResNet-110, and ImageNet with the SE recipe at batch 256
(``configs/se_resnet50.py:batch=256``) for ResNet-50 and SE-ResNet-50; two seeds each.
``tiny``: synthetic images, narrow nets, one seed, for the tests.
"""

from __future__ import annotations

import os
from typing import Any

from experiments import entry
from experiments.mobilenet import arm_stats, dataset_name

CPU_EPOCHS = 2
CPU_TRAIN = 6_000
CPU_SEEDS = 3
FULL_SEEDS = 2
ROLES = ("densenet", "resnet", "plain", "se")
LABELS = {"densenet": "DenseNet", "resnet": "ResNet (CIFAR)", "plain": "ResNet",
          "se": "SE-ResNet"}
MAX_SE_PARAMS = 0.15  # SE's parameter increase the rule allows (paper: about 10%)

_SMALL_RESNET = {"width": "16", "stage_sizes": "(2,2,2)"}
# role -> (model, model_kwargs) at each budget that trains in one sweep.
NETS = {
    "cpu": {"densenet": ("densenet40_k12", {"block_config": "(4,4,4)"}),
            "resnet": ("resnet20", {}),
            "plain": ("resnet18", _SMALL_RESNET),
            "se": ("se_resnet18", _SMALL_RESNET)},
    "tiny": {"densenet": ("densenet40_k12", {"block_config": "(1,1,1)", "growth_rate": "4",
                                             "num_init_features": "8"}),
             "resnet": ("resnet20", {"width": "4"}),
             "plain": ("resnet18", {"width": "4", "stage_sizes": "(1,1)"}),
             "se": ("se_resnet18", {"width": "4", "stage_sizes": "(1,1)"})},
}
# Huang et al. 2017, Table 2 (CIFAR-10+ error %, params M); Hu et al. 2018, Table 2
# (ImageNet top-1 error %, params M; ResNet-50: their re-implementation).
PAPER = {"cifar10": {"DenseNet-BC (L=100, k=12)": (4.51, 0.8), "ResNet-110": (6.41, 1.7)},
         "imagenet": {"SE-ResNet-50": (23.29, 28.1), "ResNet-50": (24.80, 25.6)}}


def _runs(nets: dict[str, tuple[str, dict[str, str]]], roles, seeds: int):
  return tuple({"model": nets[role][0],
                **{f"model_kwargs.{k}": v for k, v in nets[role][1].items()},
                "seed": str(s), "name": f"{role}_seed{s}"}
               for role in roles for s in range(seeds))


class DenseNetSE(entry.Entry):
  id = "densenet_se"
  title = "Parameter efficiency: DenseNet and Squeeze-and-Excitation"
  claim = ("DenseNets reach ResNet accuracy with far fewer parameters, and SE blocks lower "
           "a ResNet's error for about 10% more parameters")
  source = ("Huang et al. 2017, 'Densely Connected Convolutional Networks', Table 2 and "
            "Fig. 4; Hu et al. 2018, 'Squeeze-and-Excitation Networks', Table 2")
  paper = ("CIFAR-10+: DenseNet-BC 4.51% error with 0.8M params vs ResNet-110 6.41% with "
           "1.7M; ImageNet: SE-ResNet-50 23.29% vs ResNet-50 24.80% top-1 error, +10% params")
  metric = ("test accuracy of each net, mean and sample std over seeds, and its parameters; "
            "DenseNet: the ResNet's parameters over the DenseNet's and the ResNet's mean "
            "accuracy minus the DenseNet's (the gap); SE: the SE-ResNet's mean accuracy "
            "minus the plain ResNet's (the gain) and its parameter increase")
  rule = ("each part is judged, and the entry takes the weaker verdict. DenseNet part "
          "holds: the ResNet has at least 1.5x the DenseNet's parameters and the gap is at "
          "most the two nets' stds added (or negative); in direction only: the DenseNet has "
          "fewer parameters and the gap is at most that spread plus 1 point; otherwise it "
          "does not hold. SE part holds: the gain is larger than the two nets' stds added "
          "and SE adds at most 15% parameters; in direction only: a positive gain otherwise; "
          "does not hold: no gain")

  def sweeps(self, budget: str):
    if budget == "full":
      return (
          entry.Sweep("cifar10", "configs/densenet121.py:cifar", _runs(
              {"densenet": ("densenet_bc100_k12", {}), "resnet": ("resnet110", {})},
              ("densenet", "resnet"), FULL_SEEDS)),
          entry.Sweep("imagenet", "configs/se_resnet50.py:batch=256", _runs(
              {"plain": ("resnet50", {}), "se": ("se_resnet50", {})}, ("plain", "se"),
              FULL_SEEDS)))
    fixed = (("pad", "0"), ("num_epochs", str(CPU_EPOCHS)),
             ("num_train_examples", str(CPU_TRAIN)), ("eval_every_epochs", str(CPU_EPOCHS)),
             ("checkpoint_every_epochs", str(CPU_EPOCHS)))
    config, seeds = "configs/resnet20_cifar.py:fashion_mnist,short", CPU_SEEDS
    if budget == "tiny":  # the same recipe on synthetic images
      config, seeds = "configs/resnet20_cifar.py:short", 1
      fixed = (("dataset", "synthetic"), ("synthetic.shape", "(16,16,3)"),
               ("synthetic.num_train", "64"), ("synthetic.num_test", "32"),
               ("batch_size", "32"), ("num_epochs", "1"))
    return (entry.Sweep("nets", config, _runs(NETS[budget], ROLES, seeds), fixed=fixed),)

  def judge(self, m: dict[str, Any]) -> str:
    return _weaker(self.judge_densenet(m), self.judge_se(m))

  @staticmethod
  def judge_densenet(m: dict[str, Any]) -> str:
    dense, res = m["arms"]["densenet"], m["arms"]["resnet"]
    ratio = res["params"] / dense["params"]
    gap = res["mean"] - dense["mean"]
    spread = dense["std"] + res["std"]
    if ratio >= 1.5 and gap <= spread:
      return "holds"
    if ratio > 1 and gap <= spread + 1:
      return "holds in direction only"
    return "does not hold"

  @staticmethod
  def judge_se(m: dict[str, Any]) -> str:
    se, plain = m["arms"]["se"], m["arms"]["plain"]
    gain = se["mean"] - plain["mean"]
    if gain <= 0:
      return "does not hold"
    if gain > se["std"] + plain["std"] and se["params"] / plain["params"] - 1 <= MAX_SE_PARAMS:
      return "holds"
    return "holds in direction only"

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> entry.Result:
    from launch import collect  # pylint: disable=g-import-not-at-top
    rows = [r for d in sweep_dirs.values() for r in collect.collect(d, quiet=True)]
    arms = arm_stats(rows, ROLES, ", ".join(sweep_dirs.values()))
    models = {}
    for r in rows:
      models.setdefault(collect.group_label(r["name"], r["overrides"]), r["model"])
    dense, res, plain, se = (arms[k] for k in ROLES)
    m = {"arms": arms, "models": models,
         "densenet_params_ratio": res["params"] / dense["params"],
         "densenet_gap": res["mean"] - dense["mean"],
         "se_gain": se["mean"] - plain["mean"],
         "se_params_increase": se["params"] / plain["params"] - 1,
         "seeds": min(a["seeds"] for a in arms.values()),
         "datasets": sorted({dataset_name([r]) for r in rows})}
    m["verdict_densenet"], m["verdict_se"] = self.judge_densenet(m), self.judge_se(m)
    verdict = self.judge(m)
    table = [{"net": LABELS[k], "model": models[k], "params": arms[k]["params"],
              "MACs": arms[k]["macs"], "accuracy % (mean)": arms[k]["mean"],
              "std": arms[k]["std"], "seeds": arms[k]["seeds"],
              "accuracies": " ".join(f"{x:.2f}" for x in arms[k]["accuracies"])}
             for k in ROLES]
    files = entry.write_table(out_dir, table, list(table[0]), self.title)
    files.append(_plot(arms, models, os.path.join(out_dir, "accuracy_vs_params.png"),
                       " / ".join(m["datasets"])))
    ours = (f"DenseNet {dense['mean']:.1f}% with {m['densenet_params_ratio']:.1f}x fewer "
            f"params than ResNet {res['mean']:.1f}% ({m['verdict_densenet']}); SE "
            f"{m['se_gain']:+.2f} points for {100 * m['se_params_increase']:+.1f}% params "
            f"({m['verdict_se']}) ({m['seeds']} seeds, {' / '.join(m['datasets'])}, "
            f"{models['densenet']} vs {models['resnet']}, {models['se']} vs {models['plain']})")
    return entry.Result(m, verdict, ours, files)


def _weaker(a: str, b: str) -> str:
  """The weaker of two verdicts (``entry.VERDICTS`` runs from strongest to weakest)."""
  return max(a, b, key=entry.VERDICTS.index)


def _plot(arms: dict[str, dict[str, Any]], models: dict[str, str], path: str,
          dataset: str) -> str:
  """Accuracy against parameters: ours (mean +- std per net) and the papers' points."""
  fig, axes = entry.figure(nrows=1, ncols=3, figsize=(14, 4))
  ax = axes[0]
  for role in ROLES:
    a = arms[role]
    ax.errorbar([a["params"]], [a["mean"]], yerr=[a["std"]], fmt="o", capsize=4,
                label=f"{LABELS[role]} ({models[role]})")
  ax.set(xscale="log", xlabel="parameters", ylabel="test accuracy (%)",
         title=f"ours: {dataset}")
  for bx, (data, points) in zip(axes[1:], PAPER.items()):
    for name, (err, params) in points.items():
      bx.plot([params * 1e6], [100 - err], "s", label=name)
    bx.set(xscale="log", xlabel="parameters", ylabel="test accuracy (%)",
           title=f"paper: {'Huang et al., CIFAR-10+' if data == 'cifar10' else 'Hu et al., ImageNet top-1'}")
  for a in axes:
    a.legend(fontsize=8)
    a.grid(alpha=0.3, which="both")
  return entry.save(fig, path)
