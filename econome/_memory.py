"""Keep a long-running process's memory from creeping under large payloads.

glibc's malloc raises its mmap threshold each time a large block is freed (up
to 32 MB), after which large payloads are carved from the heap and their pages
are seldom returned; each thread (paho's network loop among them) also gets an
arena of its own. Under a stream of 100 kB to 1 MB MQTT payloads, all refused,
that let ``econome run`` grow by 100 MB of fragmented heap (measured by
``tests/integration/test_hostile_input.py``). Fixing the threshold at 64 KiB
makes large blocks mmapped and given back on free, and two arenas are plenty
for one event loop and a few library threads.

Does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["tune_malloc"]

logger = logging.getLogger(__name__)

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_malloc(mmap_threshold: int = 64 * 1024, arena_max: int = 2) -> bool:
    """Set glibc's mmap threshold and arena count; True if they were set.

    >>> isinstance(tune_malloc(), bool)
    True
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(_M_ARENA_MAX, arena_max))
    logger.debug("malloc tuned: mmap threshold %s bytes, %s arenas (%s)", mmap_threshold, arena_max, done)
    return done
