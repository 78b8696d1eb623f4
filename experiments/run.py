r"""Runs the history's experiments at a budget and writes one report.

  python experiments/run.py --budget cpu                  # all; report in docs/history/
  python experiments/run.py --budget cpu --only lecun1989,cost_vs_resolution
  python experiments/run.py --budget full --runs_dir /data/history --report runs/history_full
  python experiments/run.py --list                        # the entries, claims and rules

For each entry: its sweeps run through ``launch/sweep.py`` (one ``train.py`` command per
run, into ``RUNS_DIR/BUDGET/ENTRY/SWEEP``; a second invocation skips a sweep whose runs
all finished and resumes the others), then its analysis writes ``results.md``, ``results.csv`` and plots
into ``RUNS_DIR/BUDGET/ENTRY`` and prints the verdict line. The report
(``REPORT/README.md``, plots copied beside it) is a table of claim, paper, ours and
verdict with each entry's wall time (its sweeps' when their runs ran, plus the analysis),
then one section per entry with its rule and table.

Exit status: 0 when every entry ran (whatever its verdict), 1 when one failed (the report
says which), 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import experiments  # noqa: E402
from experiments import entry as entry_lib  # noqa: E402
from launch import collect  # noqa: E402
from training import cli  # noqa: E402
from training import rundir  # noqa: E402



def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  p = cli.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
  p.add_argument("--budget", choices=entry_lib.BUDGETS, default="cpu")
  p.add_argument("--only", help="comma-separated entry ids (default: all)")
  p.add_argument("--runs_dir", default="runs/history", help="where the sweeps run")
  p.add_argument("--report", help="report folder (default: docs/history for cpu, else "
                 "RUNS_DIR/BUDGET/report)")
  p.add_argument("--list", action="store_true", help="print the entries and exit")
  args = p.parse_args(argv)
  known = [e.id for e in experiments.ENTRIES]
  if args.only:
    unknown = [i for i in args.only.split(",") if i not in known]
    if unknown:
      p.error(f"--only: no experiment {unknown[0]!r}; known: {', '.join(known)}")
  return args


WALL = "wall.json"  # per entry: the seconds each sweep took when its runs ran


def _all_finished(sweep_dir: str) -> bool:
  """Whether a sweep has run before and every one of its runs finished."""
  runs, manifest = collect.list_runs(sweep_dir)
  return bool(manifest.get("runs")) and all(
      rundir.is_finished(rundir.read(r["workdir"], rundir.SUMMARY)) for r in runs)


def run_entry(e: entry_lib.Entry, budget: str, runs_dir: str) -> tuple[entry_lib.Result, float]:
  """Runs ``e``'s sweeps (a sweep whose runs all finished before is not started again),
  then its analysis; the result and the wall time: the sweeps' seconds when their runs
  ran (kept in ``ENTRY_DIR/wall.json``) plus this analysis."""
  entry_dir = os.path.join(runs_dir, budget, e.id)
  os.makedirs(entry_dir, exist_ok=True)
  wall = rundir.read_json(os.path.join(entry_dir, WALL)) or {}
  sweep_dirs = {}
  for sweep in e.sweeps(budget):
    sweep_dir = os.path.join(entry_dir, sweep.name)
    sweep_dirs[sweep.name] = sweep_dir
    if sweep.name in wall and _all_finished(sweep_dir):
      print(f"[{e.id}] sweep {sweep.name}: every run finished before "
            f"({wall[sweep.name] / 60:.1f} min)", flush=True)
      continue
    cmd = [sys.executable, os.path.join(ROOT, "launch", "sweep.py"), *sweep.command(sweep_dir)]
    print(f"[{e.id}] {' '.join(cmd[1:])}", flush=True)
    t = time.time()
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    if rc:
      raise RuntimeError(f"launch/sweep.py exited with {rc} for sweep {sweep.name!r} "
                         f"(its logs: {sweep_dir})")
    wall[sweep.name] = time.time() - t
    rundir.write_atomic(os.path.join(entry_dir, WALL), json.dumps(wall, indent=2))
  t = time.time()
  result = e.analyze(budget, sweep_dirs, entry_dir)
  return result, sum(wall.get(s.name, 0.0) for s in e.sweeps(budget)) + time.time() - t


def write_report(report_dir: str, budget: str, done: list, failed: list,
                 runs_dir: str) -> str:
  """``report_dir/README.md``, the entries' plots copied beside it; its path."""
  os.makedirs(report_dir, exist_ok=True)
  lines = [f"# The history as experiments ({budget} budget)", "",
           f"Made by `python experiments/run.py --budget {budget}` on "
           f"{time.strftime('%Y-%m-%d', time.gmtime())}; each entry's rule was written in "
           "`experiments/` before its runs. Wall times are for this machine "
           f"({os.cpu_count()} CPUs).", "",
           "| # | claim | source | paper | ours | verdict | wall time |",
           "|---|---|---|---|---|---|---|"]
  for i, (e, result, wall) in enumerate(done, start=1):
    lines.append(f"| {i} | {e.claim} | {e.source} | {e.paper} | {result.ours} | "
                 f"**{result.verdict}** | {wall / 60:.1f} min |")
  for e, why in failed:
    lines.append(f"| - | {e.claim} | {e.source} | {e.paper} | failed: {why} | - | - |")
  for e, result, _ in done:
    lines += ["", f"## {e.title}", "", f"`{e.verdict_line(result)}`", "",
              f"- Metric: {e.metric}.", f"- Rule: {e.rule}.",
              f"- Runs and tables: `{os.path.join(runs_dir, budget, e.id)}/` "
              "(`results.md`, `results.csv`, each sweep's own tables and plots)."]
    table = os.path.join(runs_dir, budget, e.id, "results.md")
    if os.path.exists(table):
      with open(table) as fh:
        lines += [""] + [l for l in fh.read().splitlines() if l.startswith("|")]
    for f in result.files:
      if f.endswith(".png"):
        name = f"{e.id}_{f}"
        shutil.copy(os.path.join(runs_dir, budget, e.id, f), os.path.join(report_dir, name))
        lines += ["", f"![{e.title}]({name})"]
  path = os.path.join(report_dir, "README.md")
  with open(path, "w") as fh:
    fh.write("\n".join(lines) + "\n")
  return path


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  chosen = [e for e in experiments.ENTRIES
            if not args.only or e.id in args.only.split(",")]
  if args.list:
    for e in chosen:
      print(f"{e.id}: {e.claim} ({e.source})\n  metric: {e.metric}\n  rule: {e.rule}")
    return 0
  done, failed = [], []
  for e in chosen:
    try:
      result, wall = run_entry(e, args.budget, args.runs_dir)
    except (RuntimeError, FileNotFoundError) as err:
      print(f"[{e.id}] failed: {err}", file=sys.stderr, flush=True)
      failed.append((e, str(err)))
      continue
    done.append((e, result, wall))
    print(f"[{e.id}] {e.verdict_line(result)} ({wall / 60:.1f} min)", flush=True)
  report = args.report or ("docs/history" if args.budget == "cpu"
                           else os.path.join(args.runs_dir, args.budget, "report"))
  print(f"report: {write_report(report, args.budget, done, failed, args.runs_dir)}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
