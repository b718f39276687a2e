"""Labels that come after their call has left the window, across a restart of ``driftwarden run`` on a real broker.

A classifier's calls, one a second, and each call's label twice the window's span later
(``tests/unit/monitor/test_labels.py``'s stream): no label finds its call in the window, all of them join it in
the label store. The daemon consumes half the stream and is stopped (SIGTERM: it checkpoints everything it
applied), a second daemon on the same state directory and consumer group consumes the rest: the labels of the
second half join calls the first daemon stored. Its ``/metrics`` must equal a replay of the whole stream byte for
byte, the labelled cohort's figures included.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

from monitor.config import parse_config
from monitor.export.collectors import exposition
from monitor.run.replay import replay
from tests.components import daemon_config, wait_for
from tests.e2e.test_restart import n_counted, produce, settled_metrics
from tests.unit.monitor.test_labels import WINDOW, _config, _stream


def test_a_restart_keeps_the_label_store_so_late_labels_still_join(kafka_broker, new_topic, tmp_path, start_daemon):
    topic = new_topic(partitions=1)
    events, _ = _stream(n_calls=1_200)
    lines = [json.dumps(event).encode() for event in events]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    model = _config()
    config = daemon_config(
        kafka_broker.bootstrap_servers, tmp_path / "state", topic, windows=model["windows"], models=model["models"]
    )
    result = replay(parse_config(config), Path(path))
    assert result.n_records == len(lines) and result.n_rejected == 0
    expected = exposition(result.registry()).decode()
    assert "driftwarden_cohort_calls{" in expected

    half = len(lines) // 2
    produce(kafka_broker.bootstrap_servers, topic, lines[:half])
    first = start_daemon(config)
    wait_for(lambda: n_counted(first.metrics().decode()) == half, 60, "the first half counted")
    assert first.stop(signal.SIGTERM) == 0, first.log()

    produce(kafka_broker.bootstrap_servers, topic, lines[half:])
    second = start_daemon(config)
    actual = settled_metrics(second, len(lines))

    assert "restored the checkpoint" in second.log()
    assert n_counted(actual) == len(lines)
    cohort = [line for line in expected.splitlines() if line.startswith("driftwarden_cohort_")]
    assert len(cohort) >= 8 and WINDOW < int(float(_sample(cohort, "driftwarden_cohort_calls{")))
    assert [line for line in actual.splitlines() if line.startswith("driftwarden_cohort_")] == cohort
    assert actual.splitlines() == expected.splitlines()
    assert second.stop() == 0


def _sample(lines: list[str], prefix: str) -> str:
    (line,) = [line for line in lines if line.startswith(prefix)]
    return line.rsplit(" ", 1)[1]
