"""Devices, processes and shardings: JAX's own runtime, nothing home-made.

* ``initialize_distributed`` starts ``jax.distributed`` when the job has several
  processes: explicit flags, the ``JAX_*`` environment variables, or JAX's auto-detection
  (SLURM ``srun``, Cloud TPU pods, Open MPI). A single process needs nothing.
* ``create_mesh`` lays every device of every process on a ``(data, fsdp)`` mesh. The
  batch is split over both axes; parameters and optimizer state are split over ``fsdp``
  (FSDP / ZeRO-3 style) and replicated over ``data``. ``fsdp=1`` is plain data
  parallelism.
* ``state_shardings`` is the sharding rule for parameters: a leaf is split along its
  largest dimension that ``fsdp`` divides, when it is big enough to be worth it.
  XLA inserts the all-gathers (forward) and reduce-scatters (gradients).
* ``max_over_processes`` agrees on one small integer across processes (e.g. a stop
  request that reached only some of them).
* ``DispatchLimit`` keeps the host from running too far ahead of a CPU mesh of several
  devices in one process, where XLA:CPU would otherwise deadlock (its docstring says how).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXES = ("data", "fsdp")  # the batch is split over both
# Leaves smaller than this stay replicated: biases and norm scales cost more to gather
# than to keep.
MIN_SHARDED_SIZE = 2 ** 10


class ParallelError(ValueError):
  """A device or process setup that cannot work. One line for the user."""


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  return int(value) if value not in (None, "") else None


def _multi_process_env() -> str | None:
  """The cluster JAX would auto-detect, when it runs several processes."""
  if (_env_int("SLURM_NTASKS") or 1) > 1 and "SLURM_STEP_ID" in os.environ:
    return "SLURM"  # inside srun with several tasks (not a batch script's own shell)
  if os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") >= 1:
    return "Cloud TPU pod"
  if (_env_int("OMPI_COMM_WORLD_SIZE") or 1) > 1:
    return "Open MPI"
  return None


def _slurm_node_gpus() -> list[int] | None:
  """All of the node's GPUs when SLURM runs one task per node with several GPUs."""
  if "JAX_LOCAL_DEVICE_IDS" in os.environ or "SLURM_STEP_ID" not in os.environ:
    return None
  tasks = os.environ.get("SLURM_NTASKS_PER_NODE", os.environ.get("SLURM_TASKS_PER_NODE", ""))
  gpus = os.environ.get("SLURM_GPUS_ON_NODE", "").rpartition(":")[2]
  if tasks.split("(")[0] != "1" or not gpus.isdigit() or int(gpus) < 2:
    return None
  return list(range(int(gpus)))


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None) -> str:
  """Starts JAX's distributed runtime if this job has several processes.

  Explicit arguments win, then ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
  ``JAX_PROCESS_ID``, then JAX's auto-detection. Returns a line describing the setup.
  """
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num_processes = num_processes if num_processes is not None else _env_int("JAX_NUM_PROCESSES")
  process_id = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
  explicit = (coordinator_address, num_processes, process_id)
  if any(v is not None for v in explicit):
    if num_processes == 1 and not coordinator_address:
      return "1 process"
    if None in explicit:
      raise ParallelError(
          "a multi-process run needs all of --coordinator_address (HOST:PORT of process 0), "
          f"--num_processes and --process_id; got coordinator_address={coordinator_address}, "
          f"num_processes={num_processes}, process_id={process_id}")
    if not 0 <= process_id < num_processes:
      raise ParallelError(f"--process_id={process_id} must be in [0, {num_processes})")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    how = f"coordinator {coordinator_address}"
  else:
    cluster = _multi_process_env()
    if cluster is None:
      return "1 process"
    # JAX reads the cluster's own environment, but under SLURM it gives each process
    # only the GPU numbered by its local rank; one task per node must drive them all.
    jax.distributed.initialize(local_device_ids=_slurm_node_gpus())
    how = f"auto-detected {cluster}"
  return (f"process {jax.process_index()} of {jax.process_count()} ({how}); "
          f"{jax.local_device_count()} local of {jax.device_count()} devices")


def create_mesh(fsdp: int = 1, devices: list | None = None) -> Mesh:
  """A ``(data, fsdp)`` mesh over ``devices`` (default: all devices of all processes)."""
  devices = list(jax.devices() if devices is None else devices)
  if fsdp < 1 or len(devices) % fsdp:
    raise ParallelError(f"mesh.fsdp={fsdp} does not divide the {len(devices)} devices; use a "
                        f"divisor of {len(devices)} (1 = no parameter sharding)")
  # Devices of one process are adjacent, so the fsdp groups (rows) stay within a host
  # whenever fsdp divides the local device count: its all-gathers use the fast links.
  grid = np.asarray(devices, dtype=object).reshape(len(devices) // fsdp, fsdp)
  return Mesh(grid, DATA_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over every device."""
  return NamedSharding(mesh, P(DATA_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def leaf_spec(shape: tuple[int, ...], fsdp: int, min_size: int = MIN_SHARDED_SIZE) -> P:
  """Split the largest dimension that ``fsdp`` divides; replicate small leaves."""
  if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % fsdp == 0:
      spec = [None] * len(shape)
      spec[dim] = "fsdp"
      return P(*spec)
  return P()  # no dimension divides: keep it whole


def state_shardings(abstract_state: Any, mesh: Mesh) -> Any:
  """A NamedSharding for every leaf of ``abstract_state`` (params, optimizer state, ...).

  The rule looks at shapes only, so a parameter and its optimizer moments are split the
  same way.
  """
  fsdp = mesh.shape["fsdp"]
  return jax.tree.map(lambda x: NamedSharding(mesh, leaf_spec(tuple(x.shape), fsdp)),
                      abstract_state)


def put_global(host_array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A global array from data every process holds in full (e.g. a small dataset)."""
  host_array = np.asarray(host_array)
  return jax.make_array_from_callback(host_array.shape, sharding, lambda idx: host_array[idx])


def global_batch(local_batch: Any, mesh: Mesh) -> Any:
  """Global batch arrays from this process's share (host pipelines, one share per process).

  Each process passes only the examples its own devices will hold: the global batch is
  the processes' shares concatenated in process order.
  """
  sharding = batch_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def process_slice(global_batch_size: int) -> slice:
  """Which rows of a global batch this process loads (its devices' rows, in order)."""
  n = jax.process_count()
  if global_batch_size % n:
    raise ParallelError(f"batch_size={global_batch_size} does not divide over {n} processes")
  per = global_batch_size // n
  return slice(jax.process_index() * per, (jax.process_index() + 1) * per)


# How many programs the host may dispatch to a CPU mesh of several in-process devices
# before it waits for them (DispatchLimit). Half of XLA:CPU's queue of 32 per device.
CPU_MAX_IN_FLIGHT = 16


class DispatchLimit:
  """Waits for the devices after every ``limit`` programs dispatched, where that is needed.

  JAX dispatches asynchronously: the host queues steps and only waits at log points. On a
  CPU mesh of several devices in one process (``--xla_force_host_platform_device_count``,
  the README's two-device trick), XLA:CPU's client queues at most 32 programs per device;
  when the host runs further ahead, the launch of one device's part of a step blocks on
  that limit while the other device's part waits in the step's all-reduce for it, and
  XLA aborts the process after its collective timeout (40 s). With jax 0.10.2 a
  two-device loop of small steps (``benchmarks/cpu_dispatch.py``) deadlocked within its
  first thousand steps when it waited every 48 steps or never, once in two runs at 33,
  and ran 20,000 steps waiting every 32 or fewer (benchmarks/README.md, "Running on a
  CPU"). Every other setup (one device per process, GPUs, TPUs) needs no wait, and
  ``limit`` is 0 there.

  Call it with a dispatched program's outputs: ``metrics = limit(metrics)``.
  """

  def __init__(self, mesh: Mesh, limit: int = CPU_MAX_IN_FLIGHT):
    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    needed = len(local) > 1 and local[0].platform == "cpu"
    self.limit = limit if needed else 0
    self._count = 0

  def __call__(self, outputs: Any) -> Any:
    if self.limit:
      self._count += 1
      if self._count >= self.limit:
        jax.block_until_ready(outputs)
        self._count = 0
    return outputs


def max_over_processes(value: int) -> int:
  """The largest of every process's ``value``; each process must call it at the same point.

  One tiny all-gather over the devices (compiled once). A single process returns
  ``value`` without touching the device.
  """
  if jax.process_count() == 1:
    return int(value)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return int(np.max(multihost_utils.process_allgather(np.int32(value))))
