"""The memory pool the stages that stream parquet files read under (plan, dedupe)."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def system_arrow_pool():
    """Arrow allocates from the C library's allocator while the block runs (the previous pool after it).

    Arrow's default pool (mimalloc in pyarrow ≥ 13) kept the pages of the parquet files a stage streams through,
    more so per decoding thread: a forked plan task peaked at 299-330 MB and dedupe at 316-360 MB, their 20k → 80k
    slopes anywhere from −140 to +234 B/doc run to run, with ≤ 6 MB ever allocated by Arrow (``bench/scale.py``).
    plan and dedupe read under this pool with ``use_threads=False``: 274-290 MB at both sizes. (The plan's
    ``gather``, which writes as much as it reads, stays on the default pool, single-threaded: under this one its
    peak grew over its first three shard files.)"""
    import pyarrow as pa

    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(before)
