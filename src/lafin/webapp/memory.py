"""Handing the server's freed heap memory back to the system (glibc; elsewhere nothing)."""

from __future__ import annotations

import os
from typing import Any

_GLIBC: Any = None
M_ARENA_MAX = -8  # glibc's mallopt parameter number
SERVER_MALLOC_ARENAS = 2


def _glibc() -> Any:
    """The C library when it is glibc (``malloc_trim``, ``mallopt``), else None."""
    global _GLIBC
    if _GLIBC is None:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            _GLIBC = libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else False
        except OSError:
            _GLIBC = False
    return _GLIBC or None


def release_memory() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere
    nothing). A session's photos, previews and the model's buffers are freed when it ends, but
    glibc keeps freed heap memory for reuse: without the trim the server grew with every browser
    session (``benchmarks/web_sessions.py``)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def limit_malloc_arenas() -> None:
    """At most :data:`SERVER_MALLOC_ARENAS` glibc heaps: each of the server's worker threads
    would otherwise get a heap of its own (up to 8 per core), each keeping freed memory. Unless
    ``MALLOC_ARENA_MAX`` is set; call it before the model and the server's threads allocate."""
    libc = _glibc()
    if libc is not None and not os.environ.get("MALLOC_ARENA_MAX"):
        libc.mallopt(M_ARENA_MAX, SERVER_MALLOC_ARENAS)
