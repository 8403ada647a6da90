"""Worker processes that end with their parent.

A ``ProcessPoolExecutor``'s workers outlive a parent killed outright (``kill -9``, an OOM kill)
and keep the CPU busy. Workers made here ask Linux to send them SIGTERM when the parent dies
(``prctl(PR_SET_PDEATHSIG)``) and, everywhere, watch their parent's process id and exit when it
changes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1
_WATCH_SECONDS = 0.5


def _end_with_parent(parent: int) -> None:
    """Pool initializer: run in each worker before any job."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass  # the watcher below still ends the worker

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)  # the parent is gone: nobody will read our results
            threading.Event().wait(_WATCH_SECONDS)

    threading.Thread(target=watch, name="lafin-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the watcher started
        os._exit(1)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers exit when this process dies."""
    return ProcessPoolExecutor(workers, initializer=_end_with_parent, initargs=(os.getpid(),))
