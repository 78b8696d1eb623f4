r"""How far the host may run ahead of two in-process CPU devices before XLA:CPU deadlocks.

A data-parallel step (a matrix product, its gradient all-reduced over a two-device mesh)
is dispatched ``--steps`` times; the host waits for the devices every ``--sync_every``
steps (0: never). XLA:CPU's client queues at most 32 programs per device; past that, the
launch of one device's part of a step blocks on the queue while the other device's part
waits for it in the step's all-reduce. XLA aborts the process when the all-reduce has
waited ``--timeout`` seconds (its flag ``--xla_cpu_collective_call_terminate_timeout_seconds``,
40 s by default; exit status 134). train.py waits every 16 programs on such a mesh
(``training/parallel.DispatchLimit``).

  python benchmarks/cpu_dispatch.py --sync_every 32   # 20,000 steps in about 25 s
  python benchmarks/cpu_dispatch.py --sync_every 48   # aborts after the timeout

Measured with jax 0.10.2 on the 2-core CPU (benchmarks/README.md, "Running on a CPU"):
waiting every 16, 24 or 32 steps ran to the end; every 33 steps once ran and once
aborted; every 48 steps, or never, aborted within the first thousand steps.
"""

from __future__ import annotations

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from training import cli  # noqa: E402  (argparse only: jax must not start here)



def main(argv=None) -> int:
  p = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--sync_every", type=int, default=16, help="steps between waits (0: never)")
  p.add_argument("--steps", type=int, default=20_000)
  p.add_argument("--timeout", type=int, default=10, help="XLA's collective timeout, s")
  args = p.parse_args(argv)
  if args.sync_every < 0 or args.steps < 1 or args.timeout < 1:
    print("error: --sync_every must be >= 0, --steps and --timeout >= 1", file=sys.stderr)
    return 2
  if "jax" in sys.modules:
    print("error: run it as its own process (XLA_FLAGS must be set before jax starts)",
          file=sys.stderr)
    return 2
  os.environ["XLA_FLAGS"] = " ".join([
      os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=2",
      f"--xla_cpu_collective_call_warn_stuck_timeout_seconds={max(1, args.timeout // 2)}",
      f"--xla_cpu_collective_call_terminate_timeout_seconds={args.timeout}"])
  os.environ["JAX_PLATFORMS"] = "cpu"
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top

  mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
  w = jax.device_put(jnp.full((256, 256), 0.01), NamedSharding(mesh, P()))
  x = jax.device_put(jnp.ones((512, 256)), NamedSharding(mesh, P("data")))

  @jax.jit
  def step(w, x):  # the gradient of a mean over the sharded batch: one all-reduce
    return w - 0.1 * jax.grad(lambda w: jnp.mean(jnp.tanh(x @ w) ** 2))(w)

  wait = f"waiting every {args.sync_every} steps" if args.sync_every else "never waiting"
  print(f"{args.steps} steps on {len(mesh.devices)} cpu devices, {wait}; collective "
        f"timeout {args.timeout} s", flush=True)
  t = time.perf_counter()
  for i in range(1, args.steps + 1):
    w = step(w, x)
    if args.sync_every and i % args.sync_every == 0:
      w.block_until_ready()
    if i % 5000 == 0:
      print(f"  dispatched {i} steps, {time.perf_counter() - t:.1f} s", flush=True)
  w.block_until_ready()
  print(f"done: {args.steps} steps in {time.perf_counter() - t:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
