"""Model names from events with newlines or control characters: escaped wherever they are printed."""

from __future__ import annotations

import json
import logging
import sys

import yaml

from alerts.alert import Alert
from alerts.printable import printable
from alerts.retraining import RetrainingQueue
from alerts.sinks.log import LogSink
from monitor.cli import main
from monitor.logs import FORMAT, OneLineFormatter

EVIL = "bot\n2026-01-01 00:00:00,000 ERROR forged: all clear\x1b[2J\u2028\u202e"
ESCAPED = "bot\\n2026-01-01 00:00:00,000 ERROR forged: all clear\\x1b[2J\\u2028\\u202e"


def test_printable_escapes_what_would_break_a_line_and_keeps_the_rest():
    assert printable(EVIL) == ESCAPED
    assert printable("support-bot é 模型 🙂") == "support-bot é 模型 🙂"
    assert printable("nul\x00 tab\t") == "nul\\x00 tab\\t"


def test_the_log_sink_writes_one_line_per_alert_whatever_the_model_is_called(caplog):
    alert = Alert("fp", {"alertname": "DataDrift", "model": EVIL}, {"summary": f"drift on {EVIL}"}, "firing", 0.4, 0.0,
                  None, ("log",))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="driftwarden.test.printable"):
        LogSink(logging.getLogger("driftwarden.test.printable")).add([alert])

    [record] = caplog.records
    line = record.getMessage()
    assert line.isprintable() and line.startswith('alert firing DataDrift {model="bot\\n2026-01-01')
    assert line.endswith(f"drift on {ESCAPED}")


def test_the_daemons_log_format_keeps_each_message_on_one_line():
    formatter = OneLineFormatter(FORMAT)
    record = logging.makeLogRecord({"name": "monitor.run.daemon", "levelname": "WARNING", "msg": "model %s: %s",
                                    "args": (EVIL, "idle")})  # fmt: skip
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.makeLogRecord({"msg": "tick of %s failed", "args": (EVIL,), "exc_info": sys.exc_info()})

    assert len(formatter.format(record).splitlines()) == 1
    assert "model bot\\n2026-01-01 00:00:00,000 ERROR forged" in formatter.format(record)
    message, *traceback = formatter.format(failed).splitlines()
    assert message.endswith(f"tick of {ESCAPED} failed")
    assert traceback[0] == "Traceback (most recent call last):" and traceback[-1] == "ValueError: boom"


def test_jobs_list_and_show_print_one_line_per_job(tmp_path, capsys):
    state_dir = tmp_path / "state"
    alert = Alert("fp", {"alertname": "DataDrift", "model": EVIL}, {"summary": f"drift on {EVIL}"}, "firing", 0.4,
                  1_000, None, ("retrain",))  # fmt: skip
    with RetrainingQueue(state_dir / "jobs.sqlite", cooldown_ms=0) as queue:
        job = queue.request(EVIL, [alert], {}, {}, now_ms=60_000)
    config = tmp_path / "driftwarden.yaml"
    config.write_text(yaml.safe_dump({"state": {"dir": str(state_dir)}}))

    assert main(["jobs", "list", "--config", str(config)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert main(["jobs", "show", "--config", str(config), job.id]) == 0
    [shown] = capsys.readouterr().out.splitlines()

    assert row.split()[:2] == [job.id, "bot\\n2026-01-01"] and row.isprintable()
    assert row.endswith(f"DataDrift: drift on {ESCAPED}")
    assert shown.isascii() and json.loads(shown)["model"] == EVIL
