"""A quiet terminal for ``ragtrail ingest``: stage lines and progress on stderr, the rest in a log file.

An in-process DAG run (``dag.test``) prints hundreds of lines of Airflow internals. Unless
``--verbose``, :func:`quiet_terminal` points file descriptors 1 and 2 at
``<data folder>/logs/ingest-<time>.log`` (so Airflow's, MLflow's and libraries' output, progress bars
included, land there whatever logging setup they use) and shows only the ``ragtrail.progress``
logger — one line per stage as it starts and ends, the progress lines — on the real stderr.

Example::

    with quiet_terminal(verbose=False) as log_path:
        summary = run_ingest(conf)
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROGRESS_LOGGER = "ragtrail.progress"


class _Handler(logging.Handler):
    """Writes ``ragtrail.progress`` records to a stream as ``HH:MM:SS message``."""

    def __init__(self, stream):
        super().__init__(logging.INFO)
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
            self.stream.write(f"{stamp} {record.getMessage()}\n")
            self.stream.flush()
        except Exception:  # a closed terminal must not fail the run
            self.handleError(record)


def show_progress(stream) -> _Handler | None:
    """Attach (once) a handler showing ``ragtrail.progress`` lines on ``stream``; return it.

    ``stream=None`` only switches the logger back on: Airflow's logging set-up may disable loggers
    created before it ran.
    """
    logger = logging.getLogger(PROGRESS_LOGGER)
    logger.disabled = False
    logger.setLevel(logging.INFO)
    for h in logger.handlers:
        if isinstance(h, _Handler):
            return h
    if stream is None:
        return None
    handler = _Handler(stream)
    logger.addHandler(handler)
    return handler


def quiet_libraries(verbose: bool) -> None:
    """Unless ``verbose``, no library's log line or warning reaches the terminal: a command prints its own
    words only (MLflow's "Flushing the async trace logging queue…" at exit, its "Creating initial MLflow
    database tables…" on a fresh store, Python warnings). Call before the libraries are imported."""
    root = logging.getLogger()
    if verbose:  # whatever the environment says about MLflow's own handler, its lines show
        if not root.handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return
    os.environ["MLFLOW_CONFIGURE_LOGGING"] = "false"  # else mlflow gives its logger a stderr handler at import
    # Progress bars are written to stderr directly (the model's "Loading weights" on its first export).
    os.environ.update(TQDM_DISABLE="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")
    if not root.handlers:  # no handler: Python's "last resort" would print WARNING and above to stderr
        root.addHandler(logging.NullHandler())
    logging.captureWarnings(True)  # warnings.warn(...) → the "py.warnings" logger → nowhere


@contextmanager
def quiet_terminal(verbose: bool, home: Path, name: str = "ingest") -> Iterator[Path | None]:
    """Send fd 1 and 2 to a log file under ``home/logs`` (yielded) and show only progress lines.

    With ``verbose`` nothing is redirected (``None`` is yielded) and progress lines still show.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if verbose:
        handler = show_progress(sys.stderr)
        try:
            yield None
        finally:
            logging.getLogger(PROGRESS_LOGGER).removeHandler(handler)
        return
    path = home / "logs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    real_err = os.fdopen(os.dup(2), "w", buffering=1)
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    print(f"ragtrail: Airflow's own log lines go to {path} (--verbose shows them here)", file=real_err)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    handler = show_progress(real_err)
    try:
        yield path
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.getLogger(PROGRESS_LOGGER).removeHandler(handler)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)
        real_err.close()
