"""tools/compile_report.py: the suite's compile time per test."""

import collections

import jax
import jax.numpy as jnp
import numpy as np

from tools import compile_report


def test_summary_adds_the_phases_and_ranks_tests_by_compile_and_trace_time():
  rows = [
      {"id": "a", "wall": 1.0, "backend_compile_duration": 0.5,
       "backend_compile_duration_n": 2, "jaxpr_trace_duration": 0.1},
      {"id": "b", "wall": 3.0, "backend_compile_duration": 0.2,
       "backend_compile_duration_n": 1, "jaxpr_trace_duration": 1.0,
       "jaxpr_trace_duration_n": 1},
      {"id": "c", "wall": 0.5},  # compiled nothing
  ]
  lines = compile_report.summarize(rows, top=2)
  assert lines[0] == "3 tests, 4 s of wall time in the test processes"
  assert lines[1] == "  backend_compile_duration: 0.7 s over 3 programs"
  assert lines[2] == "  jaxpr_trace_duration: 1.1 s over 1 programs"
  assert lines[3] == "  jaxpr_to_mlir_module_duration: 0.0 s over 0 programs"
  ranked = [line.split()[-1] for line in lines[5:]]
  assert ranked == ["b", "a"]  # 1.2 s before 0.6 s; c left out by top=2


def test_summary_ranks_programs_by_compile_time_over_all_tests():
  programs = collections.Counter({
      "backend_compile_duration|train_step": 2.0, "backend_compile_duration|train_step_n": 3,
      "jaxpr_trace_duration|train_step": 0.5, "jaxpr_trace_duration|train_step_n": 3,
      "backend_compile_duration|multiply": 2.5, "backend_compile_duration|multiply_n": 100,
      "jaxpr_trace_duration|<lambda>": 9.0, "jaxpr_trace_duration|<lambda>_n": 1,
  })
  lines = compile_report.summarize([{"id": "a", "wall": 1.0}], top=2, programs=programs)
  table = lines[lines.index(next(l for l in lines if l.endswith("  program"))) + 1:]
  assert [line.split() for line in table] == [["2.50", "100", "0.00", "multiply"],
                                              ["2.00", "3", "0.50", "train_step"]]


def test_the_listener_counts_a_jit_cache_miss_and_not_a_hit():
  totals, programs = collections.Counter(), collections.Counter()
  listen = compile_report.listener(totals, programs)
  x = jnp.asarray(np.arange(7, dtype=np.float32))

  def triple_plus_one(x):
    return x * 3 + 1

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    f = jax.jit(triple_plus_one)
    f(x).block_until_ready()
    after_miss = dict(totals)
    f(x).block_until_ready()  # cached: no event
    after_hit = dict(totals)
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)
  assert after_miss["backend_compile_duration_n"] == 1
  assert after_miss["jaxpr_trace_duration_n"] == 1
  assert after_miss["backend_compile_duration"] > 0
  assert after_hit == after_miss
  # The same event, by the name of the function compiled (the operations inside the
  # jitted function are traced into it, not compiled on their own).
  assert programs["backend_compile_duration|triple_plus_one_n"] == 1
  assert programs["backend_compile_duration|triple_plus_one"] == (
      after_miss["backend_compile_duration"])
  assert programs["jaxpr_trace_duration|triple_plus_one_n"] == 1  # traced as its name
