r"""Where a profiled run's time went, op by op, as a table in the terminal.

  python tools/profile_summary.py runs/resnet20/profile          # the newest trace under it
  python tools/profile_summary.py runs/resnet20/profile --top 40

Reads the trace that ``--config.profile_steps=a,b`` writes into ``WORKDIR/profile`` (or
any ``jax.profiler`` trace: a ``.xplane.pb`` file or a folder holding one) with JAX's own
reader (``jax.profiler.ProfileData``; nothing to install) and adds up the time of each
XLA op over the trace: on a GPU the kernels of each device's "XLA Ops" line, on a CPU
the thunks XLA:CPU runs on its threads. An op is its HLO instruction's name less the
numeric suffix (``ynn_fusion.12`` -> ``ynn_fusion``: work handed to YNNPACK;
``transpose_copy_fusion``: a layout copy; ``convolution``), so the table reads as kinds
of work. Python frames, dispatch and the runtime's own bookkeeping (``ThunkExecutor``,
pool waits) are left out. When the trace sits in a run's workdir, the
run's ``config.json`` gives the number of traced steps (``b - a``) and the times are
per step; ``--steps N`` says it for any other trace.

On a CPU, what XLA:CPU runs on Eigen's thread pool (its own convolutions, multi-threaded
by default) is timed only for the part its thunk waits, so those ops read short: for an
exact split, trace on one core with Eigen's pool off (``taskset -c 0`` and
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``). TensorBoard's Profile tab or XProf
show the same trace as a timeline.
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys
from typing import Any, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from training import cli  # noqa: E402


class ProfileSummaryError(Exception):
  """A path that holds no trace, or a trace with no XLA op in it."""


def find_trace(path: str) -> str:
  """``path`` itself if it is a file, else the newest ``*.xplane.pb`` below it."""
  if os.path.isfile(path):
    return path
  if not os.path.isdir(path):
    raise ProfileSummaryError(f"{path} does not exist; give a run's profile folder "
                              "(WORKDIR/profile, written by --config.profile_steps=a,b) "
                              "or an .xplane.pb file")
  found = [os.path.join(d, f) for d, _, files in os.walk(path) for f in files
           if f.endswith(".xplane.pb")]
  if not found:
    raise ProfileSummaryError(f"no .xplane.pb trace under {path}; a run writes one with "
                              "--config.profile_steps=a,b")
  return max(found, key=os.path.getmtime)


def traced_steps(trace: str) -> int | None:
  """``b - a`` from the ``config.json`` of the run whose ``profile`` folder holds
  ``trace``, or None when there is no such run."""
  here = os.path.dirname(os.path.abspath(trace))
  while os.path.dirname(here) != here:  # up to the root: WORKDIR/profile/plugins/profile/..
    config = os.path.join(os.path.dirname(here), "config.json")
    if os.path.basename(here) == "profile" and os.path.isfile(config):
      try:
        with open(config) as f:
          a, b = json.load(f)["profile_steps"]
        return int(b) - int(a)
      except (OSError, ValueError, KeyError, TypeError):
        return None
    here = os.path.dirname(here)
  return None


def op_times(trace: str) -> dict[str, dict[str, list[float]]]:
  """``{device: {op: [total ns, calls]}}`` over the trace: the events of a GPU's "XLA
  Ops" lines; on the host CPU, the events that XLA:CPU's thunks record (those with an
  ``hlo_op`` stat), on whichever thread ran them."""
  from jax.profiler import ProfileData  # pylint: disable=g-import-not-at-top
  try:
    with open(trace, "rb") as f:
      data = ProfileData.from_serialized_xspace(f.read())
  except (OSError, RuntimeError) as e:
    raise ProfileSummaryError(f"cannot read {trace} as a jax.profiler trace (.xplane.pb): "
                              f"{type(e).__name__}: {e}") from None
  out: dict[str, dict[str, list[float]]] = {}
  for plane in data.planes:
    if plane.name.startswith("/device:"):
      events = (e for line in plane.lines if line.name == "XLA Ops" for e in line.events)
    elif plane.name.startswith("/host:CPU"):
      events = (e for line in plane.lines for e in line.events
                if any(k == "hlo_op" for k, _ in e.stats))
    else:
      continue
    ops: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for event in events:
      op = ops[re.sub(r"\.\d+$", "", event.name)]
      op[0] += event.duration_ns
      op[1] += 1
    if ops:
      out[plane.name] = dict(ops)
  if not out:
    raise ProfileSummaryError(f"{trace} holds no XLA op: was anything run while it "
                              "traced?")
  return out


def table(times: dict[str, dict[str, list[float]]], steps: int | None,
          top: int) -> list[str]:
  """One block per device: its ops by time, longest first, in ms (per step when
  ``steps`` is known), with their share and calls."""
  per = steps or 1
  unit = "ms/step" if steps else "ms"
  lines = []
  for device, ops in times.items():
    total = sum(ns for ns, _ in ops.values())
    lines.append(f"{device}: {total / 1e6 / per:.1f} {unit} of XLA ops in all"
                 + (f" ({steps} traced steps)" if steps else ""))
    lines.append(f"  {unit:>9}  {'share':>6}  {'calls':>6}  op")
    ranked = sorted(ops.items(), key=lambda kv: -kv[1][0])
    for op, (ns, calls) in ranked[:top]:
      lines.append(f"  {ns / 1e6 / per:9.2f}  {100 * ns / total:5.1f}%  "
                   f"{calls / per:6.0f}  {op}")
    if len(ranked) > top:
      rest = sum(ns for _, (ns, _) in ranked[top:])
      lines.append(f"  {rest / 1e6 / per:9.2f}  {100 * rest / total:5.1f}%  "
                   f"{'':>6}  ({len(ranked) - top} more ops; --top to list them)")
  return lines


def main(argv: Sequence[str] | None = None) -> int:
  p = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("path", help="a run's profile folder (WORKDIR/profile) or an .xplane.pb")
  p.add_argument("--top", type=int, default=20, help="ops listed per device (default 20)")
  p.add_argument("--steps", type=int,
                 help="steps the trace holds, for times per step (default: from the run's "
                 "config.json, else totals)")
  args = p.parse_args(argv)
  for flag in ("top", "steps"):
    value = getattr(args, flag)
    if value is not None and value < 1:
      print(f"error: --{flag} must be at least 1, got {value}", file=sys.stderr)
      return 2
  try:
    trace = find_trace(args.path)
    times = op_times(trace)
  except ProfileSummaryError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  steps = args.steps or traced_steps(trace)
  print(f"trace: {trace}")
  print("\n".join(table(times, steps, args.top)))
  if any(d.startswith("/host:CPU") for d in times):
    print("CPU: ops on Eigen's thread pool (XLA's own convolutions) read short unless "
          "traced with taskset -c 0 and XLA_FLAGS=--xla_cpu_multi_thread_eigen=false")
  return 0


if __name__ == "__main__":
  sys.exit(main())
