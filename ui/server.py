"""The server process itself, around every page's run: memory a page frees goes back to the system.

glibc serves blocks up to a threshold from its heaps (one per thread that allocated: Streamlit receives an
upload in one thread and runs the page in another) and hands heap memory back only from a heap's top; the
threshold even rises to 32 MiB after large blocks are freed. An upload's buffers, its decoded audio and the
model's work then stayed with the server: five 35 MB uploads took it from 551 to 924 MiB (issue 17).
Measured with bench/upload_memory.py (five uploads of a 10 MiB wav, resident MiB after the first -> after the
fifth): as it was 768 -> 843; MALLOC_ARENA_MAX=2 712 -> 707; GLIBC_TUNABLES' 1 MiB mmap threshold 626 -> 630;
this module (the same threshold set in-process, and a trim after a run that grew the process) 619 -> 635.
Environment variables would have to be set before Python starts; this needs no launcher.
"""

from __future__ import annotations

import ctypes
import os
import threading

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20  # blocks this large or larger: their own mapping, returned when freed
GROWTH_MIB = 32  # trim the heaps after a run when the resident size grew this much since the last trim
_PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / (1 << 20)
_lock = threading.Lock()
_state = {"threshold_set": False, "after_last_trim": 0.0}  # one server process, many sessions


def _glibc():
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, macOS): its allocator returns memory its own way
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


GLIBC = _glibc()


def resident_mib() -> float:
    """This process's resident memory (RSS) in MiB, from /proc (0 where there is none)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE_MIB
    except (OSError, IndexError, ValueError):
        return 0.0


def map_large_blocks_apart() -> None:
    """From now on, every block of MMAP_THRESHOLD_BYTES or more gets its own mapping (once per process)."""
    with _lock:
        if GLIBC is not None and not _state["threshold_set"]:
            GLIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
            _state["threshold_set"] = True


def return_freed_memory() -> bool:
    """Give the system back the free pages of every heap when the process grew by GROWTH_MIB since the last
    time (a rerun that allocated nothing pays a /proc read, not a heap walk). Returns whether it trimmed."""
    with _lock:
        if GLIBC is None or resident_mib() < _state["after_last_trim"] + GROWTH_MIB:
            return False
        GLIBC.malloc_trim(0)
        _state["after_last_trim"] = resident_mib()
    return True
