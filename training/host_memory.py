"""Transparent huge pages for the host's large buffers (Linux, glibc 2.35 or later).

XLA:CPU allocates a compiled program's temporary buffer, and the patch buffers of its
convolutions, with ``malloc`` at every execution and frees them after. For one training
step of ResNet-20 at batch 128 that is one block of 486 MB, twelve of 76 MB and eight of
38 MB (``strace -e trace=mmap,munmap``). glibc serves blocks that large with ``mmap`` and
returns them with ``munmap``, so every step faults about 1.7 GB back in, 4 KiB at a time:
under ``perf record``, 34% of the step's CPU samples were the kernel's page-fault path
(``exc_page_fault``, ``do_anonymous_page``, ``unmap_page_range``, the memory cgroup's
charges), 9% with this module.

glibc's tunable ``glibc.malloc.hugetlb=1`` has ``malloc`` ask the kernel for transparent
huge pages (``madvise(MADV_HUGEPAGE)``) for what it maps, 2 MiB a fault instead of 4 KiB,
on kernels whose THP mode is ``madvise`` (``/sys/kernel/mm/transparent_hugepage/enabled``;
``always`` needs nothing, ``never`` gives nothing). Measured on the 2-core CPU
(benchmarks/README.md, "Huge pages for XLA:CPU's buffers"): ResNet-20's step 1.4-1.6x
faster with the convolution flag of the README's Speed section, 1.1-1.2x without; the
speedrun's step on two devices 1.27x, its 5-epoch run 1.14x from command to accuracy;
results bit for bit the same (malloc does not round).

Tunables are read when a process starts, so ``use_huge_pages()`` re-executes the command
once (``os.execv``: the same process id, arguments and interpreter options) with the
tunable added to ``GLIBC_TUNABLES``; train.py, benchmarks/throughput.py and
benchmarks/conv_layers.py call it first thing when run as commands, before JAX is
imported (``train.main()`` called from Python does not). The processes they start inherit
the variable. To turn it off, name the tunable yourself:
``GLIBC_TUNABLES=glibc.malloc.hugetlb=0``.

Not done instead: ``mallopt`` from the running process (one arena for every thread, no
``mmap``, no trimming) reached the same step time, but compiled slower, every thread
allocating from the one arena (ConvNeXt-T at 64x64: 9.7-10.2 -> 13.5-14.1 s); jemalloc or tcmalloc
need a system library and ``LD_PRELOAD``, where the tunable needs nothing.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Mapping, Sequence

TUNABLE = "glibc.malloc.hugetlb"
THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode(path: str = THP_MODE_FILE) -> str | None:
  """The kernel's transparent huge page mode (``always``, ``madvise``, ``never``), the
  bracketed word of ``path``; None where there is no such file (not Linux)."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return None
  start, end = text.find("["), text.find("]")
  return text[start + 1:end] if 0 <= start < end else None


def tunables_with_huge_pages(environ: Mapping[str, str], libc: tuple[str, str],
                             mode: str | None) -> str | None:
  """The ``GLIBC_TUNABLES`` value to re-execute with, or None to run as is: glibc 2.35
  or later (``libc`` as ``platform.libc_ver()`` gives it), THP mode ``madvise``, and
  ``GLIBC_TUNABLES`` not naming the tunable already (the user's choice, or the
  re-executed process)."""
  name, version = libc
  try:
    new_enough = name == "glibc" and tuple(int(v) for v in version.split(".")[:2]) >= (2, 35)
  except ValueError:
    new_enough = False
  current = environ.get("GLIBC_TUNABLES", "")
  if not new_enough or mode != "madvise" or TUNABLE in current:
    return None
  return f"{current}:{TUNABLE}=1" if current else f"{TUNABLE}=1"


def use_huge_pages(argv: Sequence[str] | None = None) -> None:
  """Re-executes this command with huge pages for malloc (see the module docstring);
  returns where it does not apply, or where the exec fails."""
  value = tunables_with_huge_pages(os.environ, platform.libc_ver(), thp_mode())
  argv = sys.orig_argv if argv is None else argv
  if value is None or not sys.executable or not argv:
    return
  before = os.environ.get("GLIBC_TUNABLES")
  os.environ["GLIBC_TUNABLES"] = value
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execv(sys.executable, [sys.executable, *argv[1:]])
  except OSError:  # runs on as it would have, without huge pages
    if before is None:
      del os.environ["GLIBC_TUNABLES"]
    else:
      os.environ["GLIBC_TUNABLES"] = before
