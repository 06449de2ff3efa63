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

The objects built at start and kept to the end (the inventory, the stream
processor's per-point descriptions and counters) are moved out of the garbage
collector's reach (:func:`long_lived_frozen`): at 3,000 buildings they are 1.6
million tracked objects (each pydantic model of the inventory carries a dict and
a set), which every full collection walked, up to 8 s a collection on a loaded
2-core machine, some in the middle of a burst (issue 15).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Iterator

__all__ = ["GC_THRESHOLDS", "long_lived_frozen", "tune_malloc"]

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


GC_THRESHOLDS = (10_000, 10, 10)
"""The collector's thresholds while the long-lived objects are frozen (CPython's are 700, 10, 10).

Once they are frozen, CPython's rule that a full collection waits until the
objects promoted since the last one reach a quarter of the long-lived ones no
longer holds it back (the long-lived ones are out of its count): a full
collection came every 10 collections of the middle generation, and walked the
readings and aggregates in flight, 65 in a 3-minute run at 3,000 buildings (23 s
in all, up to 1.2 s each). A young collection every 10,000 allocations instead
of 700 gives the readings of a poll time to be freed (by reference counting, none
is in a cycle) before one promotes them."""


@contextlib.contextmanager
def long_lived_frozen(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> Iterator[int]:
    """Collect, then freeze every object alive (:func:`gc.freeze`) for the block; yields how many were frozen.

    Frozen objects are still freed by reference counting; only a cycle among
    them waits for the block's end, when they are given back to the collector
    (:func:`gc.unfreeze`). The collector's thresholds are ``thresholds`` for the
    block (see :data:`GC_THRESHOLDS`), as they were after it. Enter it once what
    lives as long as the process is built.

    >>> with long_lived_frozen() as frozen:
    ...     frozen > 0, gc.get_threshold() == GC_THRESHOLDS
    (True, True)
    >>> gc.get_freeze_count(), gc.get_threshold() == GC_THRESHOLDS
    (0, False)
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    before = gc.get_threshold()
    gc.set_threshold(*thresholds)
    try:
        yield frozen
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
