"""Test ordering for ``pytest -n 2``: the few long tests (each starts train.py runs in
subprocesses) go first, half of them on each worker, so that no worker starts one of
them near the end while the other sits idle."""

import gc
import os
import sys

import jax

import train

# The test processes load TensorFlow (TFDS), and where torch's CUDA build is installed its
# triton would crash them when torchvision or timm import it afterwards (two LLVMs;
# models/torch_convert.keep_triton_out_beside_tensorflow). The tests use no triton.
sys.modules.setdefault("triton", None)

# One persistent compilation cache for the suite, the same that train.py uses by
# default (tests that run train.py share it too): the many tests that compile the same
# tiny steps compile them once, and a second run of the suite compiles almost nothing.
# Every program is kept, however quick to compile, as train.py keeps them: most of the
# suite's compilations are eager ops (each primitive compiled alone for each new shape,
# ~14 ms each, thousands of them), which a file read replaces. Keeping only programs over
# 0.5 s, as before, twelve model test files took 57 s a second time against 25 s keeping
# all, and the whole suite 3 min 34-37 s against 3 min 11 s; the first run, with an
# empty cache, was no slower (57.6 s against 59.7; 2026-12-07, 36 MB and 3,843 files
# after one run of the suite). JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS still decides.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.expanduser(train.COMPILATION_CACHE))
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # train.py runs
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))

# The tests' programs are small and run a few steps, so compiling them costs more than
# running them: XLA's backend optimisation level 1 (of 0-3; the default is 2) compiles
# them faster and still runs them about as fast. Measured on five test files with an
# empty cache: 59 s at level 2, 47 s at 1, 60 s at 0, whose code runs several times
# slower (tests that train for an epoch took 2-5x longer). JAX's
# jax_disable_most_optimizations (level 0 and more) also moved test_parallel's
# multi-device losses 3e-4 from the one-device run's, past its 1e-5. And XLA:CPU's
# older (LLVM IR) fusion emitters, in place of its MLIR ones, compile the many small
# programs faster: an eager op in two thirds of the time, a LeNet-5 train step in 0.44 s
# against 0.77 s (ResNet-20's in 1.8 s either way; both run as fast); eight test files
# took 65-70 s against 86-90 s (2026-12-06, alternating). Set here, before JAX starts its
# CPU backend, for the tests and (through XLA_FLAGS, which the tests' process helpers
# extend rather than replace) for the train.py processes they start.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=1 --xla_cpu_use_fusion_emitters=false"
if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

# The long tests and their seconds (an idle 2-core machine, empty cache, -n 2; measured
# with --durations on 2026-12-05). Most start train.py in subprocesses (several
# processes or devices, signals).
SLOW_FIRST = {
    "test_devices_processes_and_fsdp_match_one_device": 46,
    "test_sigterm_to_one_of_two_processes_stops_both_at_one_step": 42,
    "test_tiny_end_to_end": 28,  # tests/test_experiments_vgg.py: two VGG-13s
    "test_three_kills_end_bitwise_equal_to_the_uninterrupted_run": 23,
    "test_host_pipeline_resumes_with_exactly_the_next_batches": 21,
    "test_host_pipeline_end_to_end": 18,
    "test_end_to_end_outputs_and_resume": 16,
    "test_convnext_recipe_end_to_end_evaluates_raw_and_ema_weights": 16,
    # A module fixture: the tests that use it go together, so that it is built on one
    # worker only.
    "googlenet_step": 15,
    "test_two_cpu_devices_survive_a_host_far_ahead": 12,
    "test_speedrun_tool_reports_what_train_py_measured": 12,
    "test_two_processes_each_read_their_share": 12,
    "test_corrupt_latest_checkpoint_is_set_aside_and_the_run_resumes_from_the_previous": 12,
    "test_benchmark_cli": 11,
    "test_on_four_devices": 10,  # its fixture
    "test_two_real_runs_through_train_py": 10,
    "test_two_processes_agree_when_only_one_cannot_read_its_part": 8,
    "test_sigterm_saves_a_checkpoint_and_resumes": 4,
}


def pytest_collection_modifyitems(session, config, items):
  """The slow tests first, split into two halves of about equal seconds (longest first,
  each to the half with less so far): xdist's worksteal (pytest.ini) gives each of two
  workers one half, in order, and lets the one that runs out take the tail of the
  other's. (The default, load, would send the first ~150 tests, every slow one among
  them, to one worker.)"""
  del session, config
  rank = {name: i for i, name in enumerate(SLOW_FIRST)}
  half, load = [], [0, 0]  # per rank: the half it goes to; each half's seconds so far
  for seconds in SLOW_FIRST.values():  # longest first
    half.append(0 if load[0] <= load[1] else 1)
    load[half[-1]] += seconds

  def key(item):  # the rank of the test's name, or of a fixture it uses
    found = (item.originalname or item.name, *getattr(item, "fixturenames", ()))
    return next((rank[n] for n in found if n in rank), None)

  rest = [item for item in items if key(item) is None]
  # A test's parametrized cases stay together (test_on_four_devices shares a fixture).
  slow = sorted((item for item in items if key(item) is not None), key=key)
  first = [item for item in slow if half[key(item)] == 0]
  second = [item for item in slow if half[key(item)] == 1]
  cut = max(0, len(items) // 2 - len(first))
  items[:] = first + rest[:cut] + second + rest[cut:]


def pytest_sessionfinish(session, exitstatus):
  """Garbage collected once, then frozen, before an xdist worker reports that it is done.

  After that report pytest collects garbage five times (to report unraisable exceptions)
  and execnet gives the worker 5 s to exit before it sends it a SIGINT. Over a full run's
  heap each collection took 1.4 s, so the SIGINT came: a KeyboardInterrupt in JAX's gc
  callback, printed at the end of every full run, and the main process waiting 10.6 s
  for its workers (2026-12-06). One collection here, then ``gc.freeze()``: the later
  passes find nothing old to scan. What this collection finds unraisable is still
  reported (pytest's hook is installed until its cleanup)."""
  del session, exitstatus
  gc.collect()
  gc.freeze()


def pytest_collection_finish(session):
  """Python's full garbage collections, fewer and shorter during the tests.

  Each test process holds a large heap (JAX's, Flax's and TensorFlow's modules, then the
  caches of every program traced), and each full collection scans all of it: over a
  whole run, 60 and 35 of them took 39 and 20 s of the two workers' time (2026-12-06,
  counted with ``gc.callbacks``). What collection built (modules, functions, the
  parametrized items) lives to the end, so it is frozen: the collector's later passes
  skip it. And a full pass waits for 100 partial ones instead of 10 (Python's other
  condition, that the objects that survived partial passes since the last full one be a
  quarter of those it scanned then, still holds). Cycles that tests leave behind are
  still collected, later; ``training/checkpoint.py``'s own ``gc.collect()`` after a
  failed restore still collects everything not frozen. Full passes over both workers, one
  run each: 60 s before, 49 s with the freeze alone, 40 s with fewer passes alone, 28 s
  with both; the largest process's peak memory stayed at 4.4 GB. The whole suite, empty
  compilation cache, alternating: 284 and 307 s against 329 and 349 s before (CPU time
  539 and 587 s against 626 and 657 s)."""
  del session
  gc.collect()
  gc.freeze()
  gc.set_threshold(*gc.get_threshold()[:2], 100)
