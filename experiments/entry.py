"""What an experiment of the history is: a claim, the runs that test it, and a verdict rule
written down before the runs.

An entry (one module of ``experiments/``, registered in ``experiments/__init__.py``) says

* ``claim`` and ``source``: the paper's sentence and where it stands (figure or table),
  in REFERENCE.md's style, and ``paper``: the paper's own figure for the metric;
* ``metric`` and ``rule``: what is measured and how the verdict follows from it, in
  words; ``judge`` is that rule in code, and it sees only the measurements;
* ``sweeps(budget)``: the training it needs at a budget, as sweeps for
  ``launch/sweep.py`` over existing configs and fields (none for an entry that only
  analyses models);
* ``analyze(budget, sweep_dirs, out_dir)``: reads the runs (``launch/collect.py``),
  writes ``results.md``, ``results.csv`` and PNG plots into ``out_dir``, and returns the
  measurements, the verdict and a one-line "ours" figure for the report.

Budgets: ``cpu`` (a 2-core CPU, at most 10 minutes, MNIST / Fashion-MNIST / USPS),
``full`` (the paper's setting, for accelerators) and ``tiny`` (seconds, synthetic, for
the tests).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

BUDGETS = ("tiny", "cpu", "full")
VERDICTS = ("holds", "holds in direction only", "does not hold")


@dataclasses.dataclass(frozen=True)
class Sweep:
  """One ``launch/sweep.py`` invocation: a config, its runs, and fields fixed for all."""
  name: str
  config: str  # configs/x.py[:arg]; its get_sweep() is used when ``runs`` is empty
  runs: tuple[dict[str, str], ...] = ()
  fixed: tuple[tuple[str, str], ...] = ()
  # Runs at once on this machine (sweep.py's processes runner): for many short runs whose
  # time goes mostly to start-up and compiling, which one process leaves a core idle in.
  parallel: int = 1

  def command(self, sweep_dir: str) -> list[str]:
    """The arguments of ``launch/sweep.py`` that run this sweep into ``sweep_dir``."""
    args = ["--config", self.config, "--sweep_dir", sweep_dir]
    if self.parallel > 1:
      args += ["--runner", "processes", "--parallel", str(self.parallel)]
    for run in self.runs:
      args += ["--run", " ".join(f"{k}={v}" for k, v in run.items())]
    args += [f"--config.{k}={v}" for k, v in self.fixed]
    return args


@dataclasses.dataclass
class Result:
  """What an entry measured: the numbers its rule saw, the verdict, and the report row."""
  measurements: dict[str, Any]
  verdict: str
  ours: str  # the measured figure, one line, for the report's table
  files: list[str] = dataclasses.field(default_factory=list)  # written into out_dir

  def __post_init__(self):
    if self.verdict not in VERDICTS:
      raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")


class Entry:
  """Base class of the entries; see the module docstring."""
  id: str = ""
  title: str = ""
  claim: str = ""
  source: str = ""
  paper: str = ""
  metric: str = ""
  rule: str = ""

  def sweeps(self, budget: str) -> Sequence[Sweep]:
    del budget
    return ()

  def judge(self, measurements: dict[str, Any]) -> str:
    raise NotImplementedError

  def analyze(self, budget: str, sweep_dirs: dict[str, str], out_dir: str) -> Result:
    raise NotImplementedError

  def verdict_line(self, result: Result) -> str:
    return f"claim: {self.claim} ({self.source}) | measured: {result.ours} | {result.verdict}"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """The mean and the sample standard deviation (0 for a single value) of ``values``."""
  import statistics  # pylint: disable=g-import-not-at-top
  values = list(values)
  return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def dataset_name(dataset: str) -> str:
  """A run's dataset as a table names it: ``npz:<path>/usps.npz`` -> ``usps``; a TFDS
  name as it is."""
  return os.path.basename(dataset).removesuffix(".npz") or dataset


def finished_by(rows: Sequence[dict[str, Any]], field: str, expected: Sequence[str],
                where: str) -> dict[str, list[dict[str, Any]]]:
  """The finished runs of a collected sweep (``launch/collect.py`` rows), grouped by the
  value of the override ``field``; a RuntimeError naming ``where`` if a value of
  ``expected`` has none."""
  groups: dict[str, list[dict[str, Any]]] = {}
  for r in rows:
    if r["status"] == "finished":
      groups.setdefault(r["overrides"][field], []).append(r)
  missing = [v for v in expected if v not in groups]
  if missing:
    raise RuntimeError(f"no finished run of {field}={missing} in {where}")
  return groups


def write_table(out_dir: str, rows: Sequence[dict[str, Any]], columns: Sequence[str],
                title: str = "") -> list[str]:
  """``results.md`` and ``results.csv`` of ``rows`` in ``out_dir``; their file names."""
  import csv  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  fmt = lambda v: f"{v:,.4g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) \
      else str(v)
  lines = ([f"# {title}", ""] if title else []) + [
      "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
  return ["results.md", "results.csv"]


def figure(**kwargs):
  """A matplotlib figure and axes (headless): ``fig, ax = figure(figsize=(6, 4))``."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt.subplots(**kwargs)


def save(fig, path: str) -> str:
  """Writes ``fig`` to ``path`` as a PNG and closes it; the file's name."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return os.path.basename(path)
