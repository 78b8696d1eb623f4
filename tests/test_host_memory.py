"""training/host_memory.py: when a command re-executes itself with huge pages for malloc,
and that it does, once, as the same process."""

import os
import platform
import subprocess
import sys

import pytest

from training import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("text,mode", [
    ("always [madvise] never\n", "madvise"), ("[always] madvise never\n", "always"),
    ("always madvise [never]\n", "never"), ("", None)])
def test_thp_mode_is_the_bracketed_word(tmp_path, text, mode):
  path = tmp_path / "enabled"
  path.write_text(text)
  assert host_memory.thp_mode(str(path)) == mode
  assert host_memory.thp_mode(str(tmp_path / "missing")) is None  # not Linux


GLIBC = ("glibc", "2.36")


@pytest.mark.parametrize("environ,libc,mode,expected", [
    ({}, GLIBC, "madvise", "glibc.malloc.hugetlb=1"),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, GLIBC, "madvise",
     "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),  # the user's tunables kept
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, GLIBC, "madvise", None),  # turned off
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, GLIBC, "madvise", None),  # re-executed
    ({}, ("glibc", "2.35"), "madvise", "glibc.malloc.hugetlb=1"),
    ({}, ("glibc", "2.31"), "madvise", None),  # no such tunable before 2.35
    ({}, ("", ""), "madvise", None),  # not glibc (musl, macOS)
    ({}, GLIBC, "always", None),  # huge pages already, without asking
    ({}, GLIBC, "never", None),
    ({}, GLIBC, None, None),
])
def test_when_to_re_execute(environ, libc, mode, expected):
  assert host_memory.tunables_with_huge_pages(environ, libc, mode) == expected


def test_the_command_re_executes_once_as_the_same_process():
  code = ("import os, sys; sys.path.insert(0, sys.argv[1]); "
          "from training import host_memory; "
          "print(os.getpid(), os.environ.get('GLIBC_TUNABLES', ''), flush=True); "
          "host_memory.use_huge_pages()")
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  out = subprocess.run([sys.executable, "-c", code, ROOT], env=env, capture_output=True,
                       text=True, check=True, timeout=60).stdout.split("\n")
  lines = [line.split(" ") for line in out if line]
  value = host_memory.tunables_with_huge_pages(env, platform.libc_ver(), host_memory.thp_mode())
  if value is None:  # this machine's kernel or libc: runs as is
    assert len(lines) == 1 and lines[0][1] == ""
    return
  # Once more, with the tunable, the same process; not a third time.
  assert lines == [[lines[0][0], ""], [lines[0][0], "glibc.malloc.hugetlb=1"]]
