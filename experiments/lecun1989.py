"""Claim 1, LeCun (1989): constrained, shared-weight networks generalise best.

"Generalization and network design strategies" trained five networks on 320 digits and
tested on 160 (its Table 1): net-1 (no hidden layer) 80.0% correct, net-2 (12 hidden
units) 87.0%, net-3 (locally connected) 88.5%, net-4 (one shared level) 94.0%, net-5
(shared weights at both levels) 98.4%. The sweep is ``configs/lecun1989_nets.py``'s own
(five nets x seeds, 320 USPS training digits, the 2,007 USPS test digits; its docstring
gives the recipe and how it was chosen on validation).
"""

from __future__ import annotations

import os
from typing import Any

from experiments import entry

PAPER_ERROR = {1: 20.0, 2: 13.0, 3: 11.5, 4: 6.0, 5: 1.6}  # % test error, Table 1


class LeCun1989(entry.Entry):
  id = "lecun1989"
  title = "Shared weights generalise (LeCun 1989)"
  claim = "the fully constrained, shared-weight net-5 generalises best of the five nets"
  source = "LeCun 1989, 'Generalization and network design strategies', Table 1"
  paper = "net-5 1.6% test error; the next best (net-4) 6.0%"
  metric = ("test error of each net, mean and sample std over seeds; net-5 against the "
            "best of nets 1-4")
  rule = ("holds: net-5 has the lowest mean error and its lead over the next best net is "
          "larger than the two nets' stds added; holds in direction only: lowest mean, "
          "lead within that spread; does not hold: another net's mean is lower")

  def sweeps(self, budget: str):
    arg = "tiny,seeds=2" if budget == "tiny" else "seeds=3"
    return (entry.Sweep("nets", f"configs/lecun1989_nets.py:{arg}"),)

  def judge(self, m: dict[str, Any]) -> str:
    errors = m["errors"]  # {net: (mean, std)}
    others = {n: v for n, v in errors.items() if n != 5}
    best = min(others, key=lambda n: others[n][0])
    mean5, std5 = errors[5]
    if mean5 >= others[best][0]:
      return "does not hold"
    lead = others[best][0] - mean5
    return "holds" if lead > std5 + others[best][1] else "holds in direction only"

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> entry.Result:
    from launch import collect  # pylint: disable=g-import-not-at-top
    rows = collect.collect(sweep_dirs["nets"], quiet=True)
    per_net: dict[int, list[float]] = {}
    for r in rows:
      if r["status"] == "finished":
        net = int(r["model"].removeprefix("lecun1989_net"))
        per_net.setdefault(net, []).append(100 * (1 - r["accuracy"]))
    missing = sorted(set(PAPER_ERROR) - set(per_net))
    if missing:
      raise RuntimeError(f"{self.id}: no finished run of net(s) {missing} in "
                         f"{sweep_dirs['nets']}")
    errors = {n: entry.mean_std(v) for n, v in sorted(per_net.items())}
    dataset = rows[0]["dataset"]  # "npz:<path>/usps.npz" -> "usps"
    m = {"errors": errors, "seeds": min(len(v) for v in per_net.values()),
         "dataset": entry.dataset_name(dataset)}
    verdict = self.judge(m)
    table = [{"net": f"net-{n}", "test error % (mean)": mean, "std": std,
              "seeds": len(per_net[n]), "paper %": PAPER_ERROR[n]}
             for n, (mean, std) in errors.items()]
    files = entry.write_table(out_dir, table, list(table[0]), self.title)
    files.append(_plot(errors, os.path.join(out_dir, "errors.png")))
    others = {n: v for n, v in errors.items() if n != 5}
    best = min(others, key=lambda n: others[n][0])
    ours = (f"net-5 {errors[5][0]:.1f} +- {errors[5][1]:.1f}%, next best net-{best} "
            f"{others[best][0]:.1f} +- {others[best][1]:.1f}% ({m['seeds']} seeds, "
            f"{m['dataset']})")
    return entry.Result(m, verdict, ours, files)


def _plot(errors: dict[int, tuple[float, float]], path: str) -> str:
  nets = sorted(errors)
  fig, ax = entry.figure(figsize=(6, 3.5))
  x = range(len(nets))
  ax.bar([i - 0.2 for i in x], [errors[n][0] for n in nets], 0.4,
         yerr=[errors[n][1] for n in nets], capsize=3, label="ours (mean +- std)")
  ax.bar([i + 0.2 for i in x], [PAPER_ERROR[n] for n in nets], 0.4, label="paper")
  ax.set_xticks(list(x), [f"net-{n}" for n in nets])
  ax.set(ylabel="test error (%)", title="LeCun 1989: five network designs")
  ax.legend()
  ax.grid(alpha=0.3, axis="y")
  return entry.save(fig, path)
