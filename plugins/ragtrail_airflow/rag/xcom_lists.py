"""Mapped tasks' results as plain lists (the pipeline's wrappers and the roll-up read them)."""

from __future__ import annotations


def as_list(results) -> list:
    """A mapped task's results as a list, read in one request.

    Iterating Airflow's lazy XCom sequence asks for one item after another until the server answers
    404, which Airflow logs at ERROR ("XCom not found … offset=N") on every healthy run; a slice is
    one request and no error.
    """
    if results is None:
        return []
    if isinstance(results, (list, tuple)):
        return list(results)
    return list(results[:])
