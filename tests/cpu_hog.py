"""A bounded CPU hog for ``make test-under-load``: one busy process per core, for at most ``--seconds``.

It stops by itself when its time is up or when the process that started it goes away, and on
SIGTERM/SIGINT; its busy workers are its own children and end with it. Usage::

    python tests/cpu_hog.py --seconds 3600 [--workers N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import time


def _spin(deadline: float, parent: int) -> None:
    while time.monotonic() < deadline and os.getppid() == parent:
        for _ in range(200_000):
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.seconds
    starter = os.getppid()
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_spin, args=(deadline, os.getpid()), daemon=True) for _ in range(args.workers)]
    for worker in workers:
        worker.start()
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    print(f"cpu_hog: {args.workers} busy workers for at most {args.seconds:.0f} s", file=sys.stderr)
    while not stop and time.monotonic() < deadline and os.getppid() == starter:
        time.sleep(0.5)
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
