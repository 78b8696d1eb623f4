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


def test_the_listener_counts_a_jit_cache_miss_and_not_a_hit():
  totals = collections.Counter()
  listen = compile_report.listener(totals)
  x = jnp.asarray(np.arange(7, dtype=np.float32))
  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    f = jax.jit(lambda x: x * 3 + 1)
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
