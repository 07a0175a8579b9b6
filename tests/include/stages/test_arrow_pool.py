"""The streaming stages' Arrow pool: the system allocator inside, the caller's pool restored after (even on error)."""

import pyarrow as pa
import pytest

from ragtrail.stages.arrow_pool import system_arrow_pool


def test_the_block_allocates_from_the_system_pool_and_restores_the_previous_one():
    before = pa.default_memory_pool().backend_name
    with pytest.raises(RuntimeError), system_arrow_pool():
        assert pa.default_memory_pool().backend_name == "system"
        assert pa.array(["x"] * 1000).nbytes > 0  # an allocation in the block goes through it
        raise RuntimeError("a failing stage")
    assert pa.default_memory_pool().backend_name == before
