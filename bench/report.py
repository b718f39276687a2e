"""What drawing a /report page costs the consumer: in a thread of the daemon's interpreter, or in a child process.

A pipeline holds four chat models (``hot_path.CONFIG``: 10,000-event
windows, warm-up references). The consumer's work, ``Pipeline.apply`` on
batches of 2,000 realistic events, is timed for ``--seconds``:

- alone;
- while another thread draws report pages back to back (what ``/report`` did: the page's pandas and
  Evidently code holds the GIL, so the consumer gets what the interpreter's switch interval leaves it);
- while :class:`monitor.export.report.RenderProcess` draws them back to back in its child process (the daemon's
  thread only copies the columns out under the lock and waits for the page).

Printed: events/s of each, their ratio to the first, and what one page costs (wall and CPU seconds).
Run: ``python bench/report.py [--seconds 20]``. Read the ratios, not the absolute numbers (shared machines).
"""

from __future__ import annotations

import argparse
import threading
import time
import warnings

from hot_path import CONFIG, realistic_events
from threadpoolctl import threadpool_limits

from monitor.config import parse_config
from monitor.export.report import RenderProcess, render_page, report_input
from monitor.ingest import Record
from monitor.pipeline import Pipeline

BATCH = 2_000


def consume_rate(pipeline: Pipeline, batches: list[list[Record]], seconds: float, stop: threading.Event) -> float:
    """Events per second that ``apply`` gets through in ``seconds`` of wall time."""
    n_events, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for batch in batches:
            pipeline.apply(batch)
            n_events += len(batch)
    stop.set()
    return n_events / (time.perf_counter() - started)


def draw_until(stop: threading.Event, draw, pipeline: Pipeline, durations: list[tuple[float, float]]) -> None:
    while not stop.is_set():
        wall, cpu = time.perf_counter(), time.thread_time()
        draw(report_input(pipeline, "model-0"), "report/evidently.js")
        durations.append((time.perf_counter() - wall, time.thread_time() - cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    arguments = parser.parse_args()
    threadpool_limits(limits=1)
    warnings.simplefilter("ignore")
    pipeline = Pipeline(parse_config(CONFIG))
    values = realistic_events(60_000)
    records = [Record(value, "bench", 0, offset) for offset, value in enumerate(values)]
    batches = [records[start : start + BATCH] for start in range(0, len(records), BATCH)]
    for batch in batches:
        pipeline.apply(batch)
    pipeline.evaluate(pipeline.watermark_ms)
    render_page(report_input(pipeline, "model-0"), "report/evidently.js")  # imports paid before timing
    process = RenderProcess()
    process(report_input(pipeline, "model-0"), "report/evidently.js")  # the child started and warm

    rates = {}
    for name, draw in (("alone", None), ("thread", render_page), ("process", process)):
        stop, durations = threading.Event(), []
        drawer = threading.Thread(target=draw_until, args=(stop, draw, pipeline, durations)) if draw else None
        if drawer is not None:
            drawer.start()
        rates[name] = consume_rate(pipeline, batches, arguments.seconds, stop)
        if drawer is not None:
            drawer.join()
        pages = f"{len(durations)} pages" if durations else ""
        if durations:
            wall = sum(duration[0] for duration in durations) / len(durations)
            cpu = sum(duration[1] for duration in durations) / len(durations)
            pages += f", {wall:.2f} s wall and {cpu:.2f} s CPU of the daemon's thread each"
        print(f"{name:>8}: {rates[name]:>9,.0f} events/s ({rates[name] / rates['alone']:.0%}) {pages}")
    process.close()


if __name__ == "__main__":
    main()
