"""Claim 9, MobileNets: depthwise separable convolutions (Howard et al. 2017) and linear
bottlenecks (Sandler et al. 2018).

``mobilenet_separable`` (Table 4 of MobileNets): the depthwise separable MobileNet reaches
70.6% ImageNet top-1 with 569M multiply-adds and 4.2M parameters; the same network with
full convolutions ("Conv MobileNet", ``models.mobilenet.MobileNetV1(separable=False)``)
71.7% with 4866M and 29.3M: 1.1 points for 8.6x fewer multiply-adds and 7x fewer
parameters. Measured: both costs of the paper's networks (alpha 1, 224x224; traced with
``analysis``, no training) and of the trained ones, and the accuracy of the two nets
trained with one recipe.

``mobilenetv2_linear`` (Sec. 6.3, Fig. 6a of MobileNetV2): a linear projection at the end
of each inverted residual beats one followed by ReLU6 (``MobileNetV2(linear_bottleneck=
False)``), because a ReLU in the narrow bottleneck destroys information. Measured: the
test accuracy of the two, trained with one recipe, over seeds.

Budgets. ``cpu``: width multiplier 0.25 on Fashion-MNIST padded to 32x32 (the networks end
1x1, as on CIFAR), the configs' ``fashion_mnist`` recipe (SGD Nesterov, cosine) for
``CPU_EPOCHS`` epochs over a fixed class-balanced subset of ``CPU_TRAIN`` images (10,000
for v1, 6,000 for V2), test on all 10,000, ``CPU_SEEDS`` seeds per net. ``full``: the configs' ImageNet recipes at alpha 1
(MobileNet v1: SGD cosine 150 epochs; V2: torchvision's 300 epochs), two seeds per net.
``tiny``: synthetic images, one seed, for the tests.
"""

from __future__ import annotations

import os
from typing import Any

from experiments import entry

CPU_WIDTH = 0.25
CPU_EPOCHS = 3
# Training images per run at the cpu budget (V2's depthwise-heavy steps cost more).
CPU_TRAIN = {"configs/mobilenet_v1.py": 10_000, "configs/mobilenet_v2.py": 6_000}
CPU_SEEDS = 3
FULL_SEEDS = 2

# Table 4 of Howard et al. 2017: ImageNet top-1 (%), mult-adds (millions), params (millions).
PAPER_TABLE4 = {"separable": (70.6, 569, 4.2), "full": (71.7, 4866, 29.3)}


def _runs(field: str, arms: dict[str, str], seeds: int) -> tuple[dict[str, str], ...]:
  """One run per arm (``name -> value of field``) and seed, named ``<arm>_seed<s>``."""
  return tuple({f"model_kwargs.{field}": value, "seed": str(s), "name": f"{arm}_seed{s}"}
               for arm, value in arms.items() for s in range(seeds))


def _sweep(config: str, field: str, arms: dict[str, str], budget: str) -> entry.Sweep:
  """The sweep of an entry at ``budget``; ``config`` is the config file without args."""
  if budget == "tiny":
    return entry.Sweep("nets", f"{config}:tiny", _runs(field, arms, 1),
                       fixed=(("num_epochs", "1"), ("synthetic.num_train", "64"),
                              ("synthetic.num_test", "32")))
  if budget == "cpu":
    return entry.Sweep(
        "nets", f"{config}:fashion_mnist,width={CPU_WIDTH},epochs={CPU_EPOCHS}",
        _runs(field, arms, CPU_SEEDS),
        fixed=(("num_train_examples", str(CPU_TRAIN[config])),
               ("eval_every_epochs", str(CPU_EPOCHS)),
               ("checkpoint_every_epochs", str(CPU_EPOCHS))))
  return entry.Sweep("nets", config, _runs(field, arms, FULL_SEEDS))


def arm_stats(rows: list[dict[str, Any]], arms: Any, where: str) -> dict[str, dict[str, Any]]:
  """Per arm (the run names' ``<arm>_seed<s>``): test accuracy (%) mean, sample std (0 for
  one seed) and seeds of the finished runs, with their parameters and MACs."""
  from launch import collect  # pylint: disable=g-import-not-at-top
  out: dict[str, dict[str, Any]] = {}
  for arm in arms:
    done = [r for r in rows if collect.group_label(r["name"], r["overrides"]) == arm
            and r["status"] == "finished"]
    if not done:
      raise RuntimeError(f"no finished run of {arm!r} in {where}")
    acc = [100 * r["accuracy"] for r in done]
    mean, std = entry.mean_std(acc)
    out[arm] = {"mean": mean, "std": std, "seeds": len(acc), "accuracies": acc, "params": done[0]["params"],
                "macs": done[0]["macs"]}
  return out


def dataset_name(rows: list[dict[str, Any]]) -> str:
  """``npz:<dir>/fashion_mnist.npz`` -> ``Fashion-MNIST``; TFDS names as they are."""
  name = os.path.basename(rows[0]["dataset"]).removesuffix(".npz")
  return {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "usps": "USPS",
          "cifar10": "CIFAR-10", "imagenet2012": "ImageNet"}.get(name, name)


def _width(rows: list[dict[str, Any]]) -> str:
  from training import rundir  # pylint: disable=g-import-not-at-top
  kwargs = (rundir.read(rows[0]["workdir"], rundir.CONFIG) or {}).get("model_kwargs") or {}
  return f"{kwargs.get('width_multiplier', 1.0):g}"


class MobileNetSeparable(entry.Entry):
  id = "mobilenet_separable"
  title = "Depthwise separable against full convolutions (MobileNets, Howard et al. 2017)"
  claim = ("depthwise separable convolutions cost about 1 point of accuracy for 8-9x fewer "
           "multiply-adds and 7x fewer parameters than full convolutions")
  source = "Howard et al. 2017, 'MobileNets', Table 4"
  paper = ("ImageNet 70.6% vs 71.7% top-1 (-1.1 points) for 569M vs 4866M mult-adds "
           "(8.6x) and 4.2M vs 29.3M parameters (7.0x)")
  metric = ("the full-conv net's multiply-adds and parameters over the separable net's, at "
            "the trained width and at the paper's (alpha 1, 224x224); the accuracy loss: "
            "mean test accuracy of the full-conv net minus the separable net's, over seeds, "
            "in points")
  rule = ("holds: at the trained width both cost ratios are at least 5x and the loss is "
          "at most 2 points (paper 1.1); holds in direction only: both ratios at least 5x "
          "and a loss of at most 5 points; does not hold: a ratio under 5x or a loss over "
          "5 points")

  def sweeps(self, budget: str):
    return (_sweep("configs/mobilenet_v1.py", "separable",
                   {"separable": "True", "full": "False"}, budget),)

  def judge(self, m: dict[str, Any]) -> str:
    if min(m["macs_ratio"], m["params_ratio"]) < 5 or m["loss"] > 5:
      return "does not hold"
    return "holds" if m["loss"] <= 2 else "holds in direction only"

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> entry.Result:
    import analysis  # pylint: disable=g-import-not-at-top
    import models  # pylint: disable=g-import-not-at-top
    from launch import collect  # pylint: disable=g-import-not-at-top
    rows = collect.collect(sweep_dirs["nets"], quiet=True)
    arms = arm_stats(rows, ("separable", "full"), sweep_dirs["nets"])
    sep, full = arms["separable"], arms["full"]
    paper_net = {}  # the paper's networks: alpha 1, 224x224, 1000 classes
    for arm, separable in (("separable", True), ("full", False)):
      report = analysis.analyze(models.create_model("mobilenet_v1", num_classes=1000,
                                                    separable=separable), (1, 224, 224, 3))
      paper_net[arm] = (report.macs, report.params)
    m = {"macs_ratio": full["macs"] / sep["macs"], "params_ratio": full["params"] / sep["params"],
         "macs_ratio_224": paper_net["full"][0] / paper_net["separable"][0],
         "params_ratio_224": paper_net["full"][1] / paper_net["separable"][1],
         "loss": full["mean"] - sep["mean"], "arms": arms, "paper_net": paper_net,
         "seeds": min(sep["seeds"], full["seeds"]), "dataset": dataset_name(rows),
         "width": _width(rows)}
    verdict = self.judge(m)
    table = []
    for arm, label in (("separable", "MobileNet (separable)"), ("full", "Conv MobileNet")):
      a = arms[arm]
      table.append({"net": label, "accuracy % (mean)": a["mean"], "std": a["std"],
                    "seeds": a["seeds"], "params": a["params"], "MACs": a["macs"],
                    "params @224, alpha 1": paper_net[arm][1],
                    "MACs @224, alpha 1": paper_net[arm][0],
                    "paper top-1 %": PAPER_TABLE4[arm][0],
                    "paper MACs (M)": PAPER_TABLE4[arm][1],
                    "paper params (M)": PAPER_TABLE4[arm][2]})
    files = entry.write_table(out_dir, table, list(table[0]), self.title)
    files.append(_plot_cost(arms, {"separable": "MobileNet (separable)",
                                   "full": "Conv MobileNet (full 3x3)"},
                            os.path.join(out_dir, "accuracy_vs_macs.png"),
                            f"MobileNet v1, alpha {m['width']}, {m['dataset']}",
                            paper={k: (v[0], v[1] * 1e6) for k, v in PAPER_TABLE4.items()}))
    ours = (f"{m['loss']:+.1f} points lost ({sep['mean']:.1f} vs {full['mean']:.1f}%) for "
            f"{m['macs_ratio']:.1f}x fewer MACs, {m['params_ratio']:.1f}x fewer params "
            f"({m['seeds']} seeds, {m['dataset']}, MobileNet v1 alpha {m['width']}); "
            f"{m['macs_ratio_224']:.2f}x / {m['params_ratio_224']:.2f}x at 224, alpha 1")
    return entry.Result(m, verdict, ours, files)


class MobileNetV2Linear(entry.Entry):
  id = "mobilenetv2_linear"
  title = "Linear bottlenecks (MobileNetV2, Sandler et al. 2018)"
  claim = ("a linear projection at the end of each inverted residual is more accurate than "
           "one followed by ReLU6")
  source = "Sandler et al. 2018, 'MobileNetV2', Sec. 6.3, Fig. 6a"
  paper = ("ImageNet top-1 of the linear bottleneck above the ReLU6 bottleneck's through "
           "training (a curve; no table)")
  metric = ("test accuracy of MobileNetV2 with linear and with ReLU6 bottlenecks, mean and "
            "sample std over seeds; the lead: linear minus ReLU6, in points")
  rule = ("holds: the linear bottleneck's mean accuracy is higher and its lead is larger "
          "than the two nets' stds added; holds in direction only: higher mean, lead "
          "within that spread; does not hold: not higher")

  def sweeps(self, budget: str):
    return (_sweep("configs/mobilenet_v2.py", "linear_bottleneck",
                   {"linear": "True", "relu6": "False"}, budget),)

  def judge(self, m: dict[str, Any]) -> str:
    lin, relu6 = m["arms"]["linear"], m["arms"]["relu6"]
    lead = lin["mean"] - relu6["mean"]
    if lead <= 0:
      return "does not hold"
    return "holds" if lead > lin["std"] + relu6["std"] else "holds in direction only"

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> entry.Result:
    from launch import collect  # pylint: disable=g-import-not-at-top
    rows = collect.collect(sweep_dirs["nets"], quiet=True)
    arms = arm_stats(rows, ("linear", "relu6"), sweep_dirs["nets"])
    lin, relu6 = arms["linear"], arms["relu6"]
    m = {"arms": arms, "lead": lin["mean"] - relu6["mean"],
         "seeds": min(lin["seeds"], relu6["seeds"]), "dataset": dataset_name(rows),
         "width": _width(rows)}
    verdict = self.judge(m)
    table = [{"bottleneck": label, "accuracy % (mean)": a["mean"], "std": a["std"],
              "seeds": a["seeds"], "accuracies": " ".join(f"{x:.2f}" for x in a["accuracies"]),
              "params": a["params"], "MACs": a["macs"]}
             for label, a in (("linear", lin), ("ReLU6", relu6))]
    files = entry.write_table(out_dir, table, list(table[0]), self.title)
    files.append(_plot_seeds(arms, {"linear": "linear", "relu6": "ReLU6"},
                             os.path.join(out_dir, "accuracy_by_bottleneck.png"),
                             f"MobileNetV2, alpha {m['width']}, {m['dataset']}"))
    ours = (f"linear {lin['mean']:.2f} +- {lin['std']:.2f}% vs ReLU6 {relu6['mean']:.2f} +- "
            f"{relu6['std']:.2f}% ({m['lead']:+.2f} points; {m['seeds']} seeds, "
            f"{m['dataset']}, MobileNetV2 alpha {m['width']})")
    return entry.Result(m, verdict, ours, files)


def _plot_cost(arms: dict[str, dict[str, Any]], labels: dict[str, str], path: str,
               title: str, paper: dict[str, tuple[float, float]]) -> str:
  """Accuracy against multiply-adds: ours (mean +- std) and the paper's Table 4."""
  fig, (ax, bx) = entry.figure(nrows=1, ncols=2, figsize=(10, 4))
  for arm, a in arms.items():
    ax.errorbar([a["macs"]], [a["mean"]], yerr=[a["std"]], fmt="o", capsize=4,
                label=f"{labels[arm]}: {a['params']:,} params")
    bx.plot([paper[arm][1]], [paper[arm][0]], "s", label=labels[arm])
  ax.set(xscale="log", xlabel="MACs per image", ylabel="test accuracy (%)",
         title=f"ours: {title}")
  bx.set(xscale="log", xlabel="mult-adds per image", ylabel="ImageNet top-1 (%)",
         title="paper: Table 4 (224x224, alpha 1)")
  for a in (ax, bx):
    a.legend(fontsize=8)
    a.grid(alpha=0.3, which="both")
  return entry.save(fig, path)


def _plot_seeds(arms: dict[str, dict[str, Any]], labels: dict[str, str], path: str,
                title: str) -> str:
  """Each seed's accuracy (dots) and the mean +- std (bars) of each arm."""
  fig, ax = entry.figure(figsize=(5, 4))
  for i, (arm, a) in enumerate(arms.items()):
    ax.bar(i, a["mean"], 0.6, yerr=a["std"], capsize=4, alpha=0.5, label=labels[arm])
    ax.plot([i] * len(a["accuracies"]), a["accuracies"], "ko", ms=4)
  lo = min(min(a["accuracies"]) for a in arms.values())
  hi = max(max(a["accuracies"]) for a in arms.values())
  ax.set_ylim(lo - max(1.0, hi - lo), hi + max(1.0, hi - lo) / 2)
  ax.set_xticks(range(len(arms)), [labels[a] for a in arms])
  ax.set(ylabel="test accuracy (%)", title=title)
  ax.grid(alpha=0.3, axis="y")
  return entry.save(fig, path)
