"""Claim 12, the ConvNeXt roadmap (Liu et al. 2022, Sec. 2, Fig. 2 and Table 10): a
ResNet-50 modernised one change at a time becomes ConvNeXt-T, 76.1% -> 82.0% top-1 on
ImageNet-1k; of the 16 changes, 12 raise accuracy, 3 lower it (depthwise conv, moving the
depthwise conv up, kernel 11) and one leaves it (kernel 9).

Here: the 17 rows of ``configs/convnext_roadmap.py``'s sweep (``models/roadmap.py``: one
module, each row a set of its fields), one run per row, and per step the sign of the
change in test accuracy against the paper's. A step's change is measured from the row it
builds on: the previous row, except that the kernel-size rows 5, 9 and 11 are side
branches (kernel 5 and kernel 7 both build on "move depthwise conv up", kernels 9 and 11
and GELU on kernel 7), as ``models.roadmap.STEP_KWARGS`` builds them.

At the cpu budget (``configs/convnext_roadmap.py:cpu``) the nets are a sketch of the
paper's: widths 8 -> 12 for 64 -> 96, depths (1, 1, 2, 1) -> (1, 1, 3, 1) for
(3, 4, 6, 3) -> (3, 3, 9, 3), the paper's stride-4 stems on 32x32 Fashion-MNIST, 4,000
training images for 2 epochs, three seeds (each row's accuracy is the mean over them), and
the recipe without its data augmentation (the config's docstring says why). Steps whose
paper effect is a few tenths of a point are within the seeds' noise here, so the verdict
is about direction at this scale, by a rule on how many steps agree in sign. The 51 cpu
runs are short (a few seconds of training each, the rest start-up and compiling), so they
run two at a time (``launch/sweep.py --runner processes``), seed after seed: every row's
first seed compiles its programs and the compilation cache serves the other two.
"""

from __future__ import annotations

import os
from typing import Any

from experiments import entry

ZERO_BAND = 0.5  # points: a step the paper measures as 0.00 agrees when |ours| <= this
HOLDS_AGREE = 12  # of the 16 steps
DIRECTION_AGREE = 8
SEEDS = {"tiny": (0,), "cpu": (0, 1, 2), "full": (0,)}
PARALLEL = {"cpu": 2}  # runs at once


def parents() -> dict[str, str]:
  """Each step's name -> the row it builds on (the last row before it not a branch)."""
  from models.roadmap import STEPS  # pylint: disable=g-import-not-at-top
  out, base = {}, None
  for step in STEPS:
    if base is not None:
      out[step.name] = base
    if not step.branch:
      base = step.name
  return out


def agrees(paper_delta: float, our_delta: float) -> bool:
  """Whether our change has the paper's sign (the paper's 0.00: ours within ZERO_BAND)."""
  if round(paper_delta, 2) == 0:
    return abs(our_delta) <= ZERO_BAND
  return paper_delta * our_delta > 0


class ConvNeXtRoadmap(entry.Entry):
  id = "convnext_roadmap"
  title = "The ConvNeXt roadmap, step by step"
  claim = ("modernising ResNet-50 step by step towards a Transformer's design raises "
           "accuracy, each step with the sign Table 10 gives it")
  source = "Liu et al. 2022, Table 10 and Fig. 2"
  paper = ("ResNet-50 76.1% -> ConvNeXt-T 82.0% (ImageNet-1k); 12 of 16 steps up, 3 down, "
           "1 unchanged")
  metric = ("test accuracy of each row; per step, our change from the row it builds on "
            "against the paper's, and whether the signs agree (the paper's 0.00 step: "
            f"ours within +-{ZERO_BAND} points)")
  rule = (f"holds: at least {HOLDS_AGREE} of the 16 steps agree in sign and the last row "
          "(ConvNeXt-T) beats the first (ResNet-50); holds in direction only: the last row "
          f"beats the first and at least {DIRECTION_AGREE} steps agree; does not hold: "
          "otherwise")

  def sweeps(self, budget: str):
    from configs import convnext_roadmap  # pylint: disable=g-import-not-at-top
    from launch import sweep  # pylint: disable=g-import-not-at-top
    arg = {"tiny": "tiny,epochs=1", "cpu": "cpu", "full": "cifar10"}[budget]
    # The config's own table (one run per row), seed after seed (see the docstring).
    runs = tuple({**{k: sweep.format_value(v) for k, v in row.items() if k != "name"},
                  "seed": str(seed), "name": f"{row['name']}_seed{seed}"}
                 for seed in SEEDS[budget] for row in convnext_roadmap.get_sweep(arg))
    return (entry.Sweep("rows", f"configs/convnext_roadmap.py:{arg}", runs,
                        parallel=PARALLEL.get(budget, 1)),)

  def judge(self, m: dict[str, Any]) -> str:
    agree = sum(agrees(s["paper_delta"], s["our_delta"]) for s in m["steps"])
    if m["end_to_end"] > 0 and agree >= HOLDS_AGREE:
      return "holds"
    if m["end_to_end"] > 0 and agree >= DIRECTION_AGREE:
      return "holds in direction only"
    return "does not hold"

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> entry.Result:
    from launch import collect  # pylint: disable=g-import-not-at-top
    from models.roadmap import STEPS  # pylint: disable=g-import-not-at-top
    rows = collect.collect(sweep_dirs["rows"], quiet=True)
    found: dict[str, list[dict[str, Any]]] = {}  # row -> its finished runs (one per seed)
    for r in rows:
      if r["status"] == "finished":
        found.setdefault(r["model"].removeprefix("roadmap_"), []).append(r)
    missing = [s.name for s in STEPS if s.name not in found]
    if missing:
      raise RuntimeError(f"{self.id}: no finished run of row(s) {', '.join(missing)} in "
                         f"{sweep_dirs['rows']}")
    spread = {name: entry.mean_std([100 * r["accuracy"] for r in runs])
              for name, runs in found.items()}
    ours = {name: mean for name, (mean, _) in spread.items()}
    seeds = min(len(runs) for runs in found.values())
    paper = {s.name: s.top1 for s in STEPS}
    steps = [{"step": name, "from": base, "paper_delta": paper[name] - paper[base],
              "our_delta": ours[name] - ours[base]} for name, base in parents().items()]
    first, last = STEPS[0].name, STEPS[-1].name
    dataset = entry.dataset_name(rows[0]["dataset"])
    m = {"accuracy": ours, "steps": steps, "end_to_end": ours[last] - ours[first],
         "agree": sum(agrees(s["paper_delta"], s["our_delta"]) for s in steps),
         "dataset": dataset, "seeds": seeds}
    verdict = self.judge(m)
    by_step = {s["step"]: s for s in steps}
    table = []
    for s in STEPS:
      d = by_step.get(s.name)
      table.append({
          "row": s.name, "change": s.label, "from": d["from"] if d else "",
          "paper top-1 %": s.top1, "paper delta": d["paper_delta"] if d else "",
          "ours top-1 %": ours[s.name], "std": spread[s.name][1],
          "seeds": len(found[s.name]), "our delta": d["our_delta"] if d else "",
          "agree": ("yes" if agrees(d["paper_delta"], d["our_delta"]) else "no") if d else "",
          "params": found[s.name][0]["params"], "MACs": found[s.name][0]["macs"]})
    files = entry.write_table(out_dir, table, list(table[0]), self.title)
    files.append(_plot(table, os.path.join(out_dir, "roadmap.png"), dataset))
    our_line = (f"{m['agree']}/{len(steps)} steps agree in sign; ResNet-50 -> ConvNeXt-T "
                f"{ours[first]:.1f} -> {ours[last]:.1f}% "
                f"({f'mean of {seeds} seeds' if seeds > 1 else '1 seed'}, {dataset}"
                + (", 4k images x 2 epochs, widths 8-12" if budget == "cpu" else "") + ")")
    return entry.Result(m, verdict, our_line, files)


def _plot(table: list[dict[str, Any]], path: str, dataset: str) -> str:
  fig, (ax, ax2) = entry.figure(nrows=2, figsize=(10, 7))
  x = list(range(len(table)))
  names = [r["row"] for r in table]
  ax.errorbar(x, [r["ours top-1 %"] for r in table], yerr=[r["std"] for r in table],
              fmt="o-", capsize=3, label=f"ours ({dataset}, mean and std over seeds)")
  ax.set_ylabel("ours: test accuracy (%)")
  twin = ax.twinx()
  twin.plot(x, [r["paper top-1 %"] for r in table], "s--", color="C1",
            label="paper (ImageNet-1k)")
  twin.set_ylabel("paper: ImageNet-1k top-1 (%)")
  ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
  ax.set_title("Accuracy per row of Table 10")
  lines = ax.get_legend_handles_labels()
  more = twin.get_legend_handles_labels()
  ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="lower right")
  ax.grid(alpha=0.3)
  deltas = table[1:]
  xs = list(range(len(deltas)))
  ax2.bar([i - 0.2 for i in xs], [r["paper delta"] for r in deltas], 0.4, label="paper")
  ax2.bar([i + 0.2 for i in xs], [r["our delta"] for r in deltas], 0.4, label="ours")
  for i, r in enumerate(deltas):
    if r["agree"] == "no":
      ax2.annotate("x", (i, 0), ha="center", va="center", color="red")
  ax2.axhline(0, color="k", lw=0.5)
  ax2.set_xticks(xs, [r["row"] for r in deltas], rotation=45, ha="right", fontsize=8)
  ax2.set(ylabel="change from the row built on (points)",
          title="Each step's change (x: signs disagree)")
  ax2.legend(fontsize=8)
  ax2.grid(alpha=0.3, axis="y")
  return entry.save(fig, path)
