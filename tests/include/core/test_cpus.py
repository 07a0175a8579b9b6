"""usable_cpus: the affinity mask, capped by the cgroup CPU quota (fake cgroup files in a tmp folder)."""

from __future__ import annotations

import os

import pytest

from ragtrail.core import cpus


def _affinity() -> int:
    return len(os.sched_getaffinity(0))


@pytest.mark.parametrize(("files", "quota"), [
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "50000 100000\n"}, 0.5),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1 unlimited
    ({"cpu.max": "garbage"}, None),
    ({}, None),  # no cgroup files at all (not Linux, or not mounted)
])
def test_cgroup_quota_reads_v2_and_v1_files(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpus.cgroup_quota(tmp_path) == quota


def test_usable_cpus_is_the_real_affinity_without_a_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpus.affinity_cpus() == _affinity()
    assert cpus.usable_cpus(tmp_path) == _affinity()


def test_a_quota_caps_the_affinity_rounded_down_and_never_below_one(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpus.usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("10000 100000\n")
    assert cpus.usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{(_affinity() + 8) * 100000} 100000\n")  # a quota above the mask
    assert cpus.usable_cpus(tmp_path) == _affinity()


def test_a_narrower_affinity_mask_is_seen(tmp_path):
    """Pinned to one CPU (taskset), the process has one usable CPU, however many the host has."""
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert cpus.usable_cpus(tmp_path) == 1
    finally:
        os.sched_setaffinity(0, before)
