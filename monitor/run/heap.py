"""The cyclic garbage collector, set for a process that runs the daemon for days.

With CPython's defaults a consuming process spent a quarter of its time in the
collector (bench/ingest.py, confluent-kafka): a batch of 2,000 messages holds a
few thousand tracked objects (records, client messages, lists) at once, so the
youngest generation (700 objects) was collected several times a batch, its
survivors were promoted, and every few hundred milliseconds the promotions
set off a full collection. A full one walks every object the imports made
(about 165,000: functions, types, modules' dicts) and took 75 to 90 ms here.

:func:`settle_heap`, called once the process has imported what it runs, moves
what exists to the permanent generation (``gc.freeze``: never walked again)
and lets the youngest generation grow to :data:`YOUNG_OBJECTS` before it is
collected, more than a batch holds, so that a batch's objects die by reference
count before any collection sees them. Cycles are still collected: the
collector runs as before, less often, over what was made since. Applying
batches and evaluating make none (tests/unit/monitor/test_heap.py), so
nothing large waits for it.

It is for processes, not libraries: ``driftwarden run`` and the Kafka consumer
process call it; tests that start daemons in their own process do not.

>>> import gc
>>> before = gc.get_threshold()
>>> settle_heap()
>>> gc.get_threshold()[0] == YOUNG_OBJECTS, gc.get_freeze_count() > 0
(True, True)
>>> gc.set_threshold(*before); gc.unfreeze()
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_OBJECTS", "settle_heap"]

#: Tracked objects allocated (net of those freed) before the youngest generation is collected; CPython's default
#: is 700. A batch of ``kafka.max_poll_records`` messages holds about two tracked objects a message.
YOUNG_OBJECTS = 50_000


def settle_heap() -> None:
    """Collect once, freeze what survives, and collect the youngest generation every :data:`YOUNG_OBJECTS`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS)
