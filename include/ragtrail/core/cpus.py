"""How many CPUs this process may really use: its affinity mask, capped by the cgroup's CPU quota.

``os.cpu_count()`` counts the host's CPUs; in a container limited to 2 CPUs on a 64-core host it still
says 64, and a thread pool that large spends its time throttled. :func:`usable_cpus` takes the smaller
of the CPUs the scheduler lets the process run on (``os.sched_getaffinity``) and the cgroup quota
(v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded down, at least 1.

Example::

    threads = usable_cpus()          # 2 in a container with --cpus=2.5 on any host
"""

from __future__ import annotations

import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``os.cpu_count()`` where the platform has no such mask)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # macOS, Windows
        return os.cpu_count() or 1


def cgroup_quota(root: Path | None = None) -> float | None:
    """The cgroup's CPU quota in CPUs (``1.5`` for ``150000 100000``), or ``None`` when unlimited or unknown.

    ``root``: the cgroup folder (:data:`CGROUP_ROOT`, the process's own cgroup inside a container).
    """
    root = root or CGROUP_ROOT
    def read(path: Path) -> str | None:
        try:
            return path.read_text().strip()
        except OSError:
            return None

    v2 = read(root / "cpu.max")
    if v2 is not None:
        parts = v2.split()
        quota, period = parts[0], parts[1] if len(parts) > 1 else "100000"
    else:
        v1 = root / "cpu"
        quota, period = read(v1 / "cpu.cfs_quota_us"), read(v1 / "cpu.cfs_period_us")
        if quota is None or period is None:
            quota, period = read(root / "cpu.cfs_quota_us"), read(root / "cpu.cfs_period_us")
    try:
        q, p = float(quota), float(period)  # "max" (v2) raises; -1 (v1) is unlimited
    except (TypeError, ValueError):
        return None
    return q / p if q > 0 and p > 0 else None


def usable_cpus(root: Path | None = None) -> int:
    """The CPUs a thread pool of this process should size itself to (see the module doc)."""
    n = affinity_cpus()
    quota = cgroup_quota(root)
    if quota is not None:
        n = min(n, int(quota))  # rounded down: a pool wider than the quota waits on throttling
    return max(1, n)
