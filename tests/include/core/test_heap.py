"""``give_back`` returns memory the process freed but glibc kept in its heap (a subprocess, so the measure
is this code's alone)."""

from __future__ import annotations

import subprocess
import sys

PROBE = r"""
from ragtrail.core.heap import give_back

def rss_mb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) // 1024

blocks = [bytes(2048) for _ in range(100_000)]   # ~200 MB in malloc'd blocks (not pymalloc's: > 512 B)
keep = bytes(2048)                                # a block above them keeps the heap's top from shrinking
del blocks[:]                                     # freed: glibc keeps the pages for the next malloc
before = rss_mb()
print(give_back(), before, rss_mb())
"""


def test_give_back_returns_the_freed_heap_to_the_os():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    done, before, after = out[0] == "True", int(out[1]), int(out[2])
    assert done
    assert before - after > 100, (before, after)  # most of the ~200 MB freed comes back
