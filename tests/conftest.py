"""Test ordering for ``pytest -n 2``: the few long tests (each starts train.py runs in
subprocesses) go first, so that no worker starts one of them near the end while the
other sits idle. Measured on 2 cores, the suite's tail was a 3-minute test."""

import os

import jax

import train

# One persistent compilation cache for the suite, the same that train.py uses by
# default (tests that run train.py share it too): the many tests that compile the same
# tiny steps compile them once, and a second run of the suite compiles almost nothing.
# Programs that compile in under half a second are not worth a file.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.expanduser(train.COMPILATION_CACHE))
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")  # train.py runs
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

# Longest first (seconds on a 2-core machine under the suite's load).
SLOW_FIRST = (
    "test_devices_processes_and_fsdp_match_one_device",  # ~170
    "test_train_starts_from_init_from",  # ~60
    "test_end_to_end_outputs_and_resume",  # ~50
    "test_host_pipeline_resumes_with_exactly_the_next_batches",  # ~50
    "test_three_kills_end_bitwise_equal_to_the_uninterrupted_run",  # ~40-80
    "test_sigterm_to_one_of_two_processes_stops_both_at_one_step",  # ~25-50
    "test_corrupt_latest_checkpoint_is_set_aside_and_the_run_resumes_from_the_previous",
    "test_convnext_recipe_end_to_end_evaluates_raw_and_ema_weights",  # ~40
    "test_host_pipeline_end_to_end",  # ~30
)


def pytest_collection_modifyitems(session, config, items):
  del session, config
  rank = {name: i for i, name in enumerate(SLOW_FIRST)}
  items.sort(key=lambda item: rank.get(item.originalname or item.name, len(rank)))
