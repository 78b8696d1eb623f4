r"""Where the test suite's time goes: a pytest plugin that adds up JAX's own compile
events (tracing, lowering to StableHLO, XLA's backend compile) per test.

  python -m pytest -q -n 2 -p tools.compile_report
  python -m pytest -q -n 2 -p tools.compile_report --compile_report_top=40 \
      --compile_report_dir=/tmp/report

Give the options' values with "=": pytest reads the command line for its root directory
before it knows this plugin's options, and would take a directory given after a space
for a test path (then it finds no pytest.ini; the plugin stops with one line if so).

At the end it prints each phase's seconds and count over the whole run, then the tests
with the most compile and trace time beside their wall time, then the programs (by the
name of the function JAX compiled: ``train_step``, ``<lambda>``, or an eager op's
primitive, ``multiply``) with the most compile time, each over every test that compiled
it: which steps and which eager ops cost the suite most. Each pytest process (each
xdist worker) writes its rows to ``--compile_report_dir`` (a fresh temporary directory
by default), and the process that prints the summary reads them all. It counts what
happens in the test processes only: the train.py processes some tests start compile
outside it and show up in wall time alone.

The events are ``jax.monitoring``'s duration events ``/jax/core/compile/*``, which JAX
records for every jit cache miss, eager ops included.
"""

import collections
import json
import os
import re
import tempfile
import time

import pytest

PHASES = ("backend_compile_duration", "jaxpr_trace_duration",
          "jaxpr_to_mlir_module_duration")
_PREFIX = "/jax/core/compile/"
_totals = collections.Counter()  # phase -> seconds, phase + "_n" -> count
_programs = collections.Counter()  # "phase|function name" -> seconds, + "_n" -> count
_rows = []


def listener(totals: collections.Counter, programs: collections.Counter | None = None):
  """A ``jax.monitoring`` duration listener that adds each compile phase's seconds and
  count into ``totals``, and with ``programs`` the same per compiled function's name
  (``"phase|name"`` keys)."""
  def listen(event: str, seconds: float, fun_name: str = "?", **unused) -> None:
    if event.startswith(_PREFIX):
      phase = event[len(_PREFIX):]
      totals[phase] += seconds
      totals[phase + "_n"] += 1
      if programs is not None:  # tracing names the function, later phases jit(name)
        name = re.sub(r"^jit\((.*)\)$", r"\1", fun_name)
        programs[f"{phase}|{name}"] += seconds
        programs[f"{phase}|{name}_n"] += 1
  return listen


def summarize(rows: list[dict], top: int, programs: dict | None = None) -> list[str]:
  """The report's lines: totals over ``rows`` (one dict per test: ``id``, ``wall`` and
  the phases' seconds and counts), then the ``top`` tests by compile plus trace time,
  then (given ``programs``, ``listener``'s per-name counter) the ``top`` programs by
  compile time."""
  lines = [f"{len(rows)} tests, {sum(r['wall'] for r in rows):.0f} s of wall time in "
           "the test processes"]
  for phase in PHASES:
    lines.append(f"  {phase}: {sum(r.get(phase, 0.0) for r in rows):.1f} s over "
                 f"{sum(r.get(phase + '_n', 0) for r in rows)} programs")
  cost = lambda r: r.get(PHASES[0], 0.0) + r.get(PHASES[1], 0.0)
  lines.append(f"{'compile s':>9} {'trace s':>8} {'programs':>8} {'wall s':>7}  test")
  for r in sorted(rows, key=cost, reverse=True)[:top]:
    lines.append(f"{r.get(PHASES[0], 0.0):9.2f} {r.get(PHASES[1], 0.0):8.2f} "
                 f"{r.get(PHASES[0] + '_n', 0):8d} {r['wall']:7.2f}  {r['id']}")
  if programs:
    names = {k.split("|", 1)[1] for k in programs if not k.endswith("_n")}
    get = lambda phase, name, n="": programs.get(f"{phase}|{name}{n}", 0)
    lines.append(f"{'compile s':>9} {'compiles':>8} {'trace s':>8}  program")
    for name in sorted(names, key=lambda n: get(PHASES[0], n), reverse=True)[:top]:
      lines.append(f"{get(PHASES[0], name):9.2f} {get(PHASES[0], name, '_n'):8d} "
                   f"{get(PHASES[1], name):8.2f}  {name}")
  return lines


def pytest_addoption(parser):
  group = parser.getgroup("compile_report")
  group.addoption("--compile_report_dir", default=None,
                  help="where each pytest process writes its rows (default: a new "
                  "temporary directory)")
  group.addoption("--compile_report_top", type=int, default=25,
                  help="how many tests, and how many programs, the summary lists")


def pytest_configure(config):
  import jax  # pylint: disable=g-import-not-at-top
  jax.monitoring.register_event_duration_secs_listener(listener(_totals, _programs))
  if getattr(config, "workerinput", None) is None:  # the process that reports
    out = config.getoption("compile_report_dir")
    if out and config.inipath is None:
      raise pytest.UsageError(
          f"pytest found no pytest.ini (root directory {config.rootpath}): it took "
          f"{out} for a test path; write --compile_report_dir={out}, with '='")
    out = out or tempfile.mkdtemp(prefix="compile_report_")
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):  # an earlier run's rows (it may have had more workers)
      if re.fullmatch(r"(main|gw\d+)\.json", name):
        os.remove(os.path.join(out, name))
    os.environ["COMPILE_REPORT_DIR"] = out  # xdist workers inherit it


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  del nextitem
  before, start = dict(_totals), time.perf_counter()
  yield
  row = {k: v - before.get(k, 0) for k, v in _totals.items()}
  row.update(id=item.nodeid, wall=time.perf_counter() - start)
  _rows.append(row)


def pytest_sessionfinish(session):
  name = getattr(session.config, "workerinput", {}).get("workerid", "main")
  with open(os.path.join(os.environ["COMPILE_REPORT_DIR"], f"{name}.json"), "w") as f:
    json.dump({"tests": _rows, "programs": _programs}, f)


def pytest_terminal_summary(terminalreporter, config):
  out = os.environ["COMPILE_REPORT_DIR"]
  rows, programs = [], collections.Counter()
  for name in sorted(os.listdir(out)):
    if re.fullmatch(r"(main|gw\d+)\.json", name):  # this run's files only
      with open(os.path.join(out, name)) as f:
        written = json.load(f)
      rows += written["tests"]
      programs.update(written["programs"])
  terminalreporter.section(f"JAX compile time per test and per program (rows in {out})")
  for line in summarize(rows, config.getoption("compile_report_top"), programs):
    terminalreporter.write_line(line)
