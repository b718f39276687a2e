"""The JSON log format: one object per line whatever a model is called, context in fields, tracebacks in one."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys

import pytest

from alerts.alert import Alert
from alerts.printable import printable
from alerts.retraining import RetrainingQueue
from alerts.sinks.log import LogSink
from monitor.cli import _seconds, main
from monitor.logs import FORMAT, JsonFormatter, OneLineFormatter

EVIL = 'bot\n{"level": "INFO", "message": "forged"}\r\x1b[2J\u2028\u202e\x00 模型'


def _record(**fields: object) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "monitor.pipeline", "levelname": "WARNING", "msg": "evaluating %r failed",
                                  "args": (EVIL,), "created": 1_767_225_600.25, "msecs": 250.0, **fields})  # fmt: skip


def test_a_hostile_name_stays_in_its_field_on_one_printable_line():
    line = JsonFormatter().format(_record(model=EVIL, partition=3))

    assert len(line.splitlines()) == 1 and line.isascii() and line.isprintable()
    assert json.loads(line) == {
        "time": "2026-01-01T00:00:00.250Z",
        "level": "WARNING",
        "logger": "monitor.pipeline",
        "process": "MainProcess",
        "message": f"evaluating {EVIL!r} failed",
        "model": EVIL,
        "partition": 3,
    }


def test_a_traceback_goes_in_its_own_field():
    try:
        raise ValueError(EVIL)
    except ValueError:
        line = JsonFormatter().format(_record(exc_info=sys.exc_info()))

    assert len(line.splitlines()) == 1
    fields = json.loads(line)
    assert fields["message"] == f"evaluating {EVIL!r} failed"
    assert fields["exception"].startswith("Traceback (most recent call last):\n")
    assert fields["exception"].endswith(f"ValueError: {EVIL}")


def test_context_leaves_the_text_line_as_it_was():
    formatter = OneLineFormatter(FORMAT)
    assert formatter.format(_record(model=EVIL, rule="Errors")) == formatter.format(_record())


def test_the_log_sink_and_the_job_ledger_name_their_rule_model_and_job(tmp_path, caplog):
    alert = Alert("fp", {"alertname": "DataDrift", "model": EVIL}, {}, "firing", 0.4, 0.0, None, ("log",))
    with caplog.at_level(logging.INFO):
        LogSink(logging.getLogger("driftwarden.alerts")).add([alert])
        with RetrainingQueue(tmp_path / "jobs.sqlite", cooldown_ms=0) as queue:
            job = queue.request(EVIL, [alert], {}, {}, now_ms=60_000)

    fired, queued = (json.loads(JsonFormatter().format(record)) for record in caplog.records)
    assert (fired["rule"], fired["model"]) == ("DataDrift", EVIL)
    assert (queued["job"], queued["model"]) == (job.id, EVIL) and "version" not in queued


@pytest.mark.parametrize(
    ("arguments", "code", "error"),
    [
        (["run"], 2, "driftwarden run: error: the following arguments are required: --config"),
        (["replay", "--config", "c.yaml", "--deliver-timeout=-1", "x"], 2, "--deliver-timeout: '-1' is not a number"),
        (["demo", "--duration", "nan"], 2, "argument --duration: 'nan' is not a number of seconds"),
        (["run", "--config", "absent.yaml"], 2, "bad config: absent.yaml: cannot read"),
        (["replay", "--config", "{config}", "--since", "2026-01-01"], 2, "replay takes EVENTS.jsonl, or --from-kafka"),
        (["replay", "--config", "{config}", "absent.jsonl"], 1, "absent.jsonl: No such file or directory"),
    ],
)
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_command_line_error_is_in_the_log_format_asked_for(arguments, code, error, log_format, tmp_path, capsys):
    # A log pipeline reading --log-format json must get the command's errors as JSON lines too, argparse's included.
    config = tmp_path / "c.yaml"
    config.write_text(f"state: {{dir: {tmp_path / 'state'}}}\n")
    argv = [argument.replace("{config}", str(config)) for argument in arguments]
    with contextlib.chdir(tmp_path):
        try:
            returned = main([*argv, "--log-format", log_format])
        except SystemExit as stop:  # argparse's own errors
            returned = stop.code
    said = capsys.readouterr()
    assert (returned, said.out) == (code, "")
    lines = said.err.splitlines()
    if log_format == "json":
        [line] = lines
        record = json.loads(line)
        assert (record["level"], record["logger"]) == ("ERROR", "driftwarden") and error in record["message"]
    else:
        assert error in lines[-1] and lines[-1].startswith("driftwarden")


def _said(argv, capsys):
    """Exit code, stdout and stderr lines of ``main(argv)``, argparse's exits included."""
    try:
        returned = main(argv)
    except SystemExit as stop:
        returned = stop.code
    said = capsys.readouterr()
    return returned, said.out, said.err.splitlines()


def test_a_log_format_without_its_value_is_the_subcommands_usage_error_as_before(capsys):
    # The format is read before the command line is parsed; a trailing --log-format must not be reported by that
    # first reading (with its own usage, "usage: <argv[0]> [--log-format LOG_FORMAT]") but by the command's parser.
    returned, out, err = _said(["run", "--config", "c.yaml", "--log-format"], capsys)
    assert (returned, out) == (2, "")
    assert err[0].startswith("usage: driftwarden run ")
    assert err[-1] == "driftwarden run: error: argument --log-format: expected one argument"


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"]])
def test_help_with_json_logs_writes_no_stderr_line(argv, capsys):
    # Help goes to stdout; with --log-format json every stderr line must be a JSON object, an empty one is not.
    returned, out, err = _said([*argv, "--log-format", "json"], capsys)
    assert (returned, err) == (0, []) and out.startswith("usage: driftwarden")


def test_a_usage_error_naming_an_argument_with_a_newline_is_one_json_line_of_the_whole_error(capsys):
    # argparse writes unrecognized arguments as they are: the error must not be cut to its last line.
    returned, out, err = _said(["run", "--config", "c.yaml", "--log-format", "json", "x\ny"], capsys)
    [line] = err
    assert (returned, json.loads(line)["message"]) == (2, "driftwarden: error: unrecognized arguments: x\ny")


def test_a_replay_prints_each_model_and_alert_on_one_line_whatever_the_model_is_named(tmp_path, capsys):
    # The alerts carry the model name as the producer sent it: replay's summary and alert lines must escape it
    # (as the log lines do), or a name forges lines of the report.
    config = tmp_path / "c.yaml"
    rule = {"name": "Busy", "metric": "window_events", "op": ">", "threshold": 0, "actions": ["log"],
            "annotations": {"summary": "{model} is busy"}}  # fmt: skip
    config.write_text(json.dumps({"state": {"dir": str(tmp_path / "state")}, "windows": {"size": 100, "min_samples": 1},
                                  "alerts": {"rules": [rule]}}))  # fmt: skip
    model = "bot\n  alert resolved at 2027-01-15T08:00:04+00:00: Busy {model=bot, severity=warning}\x1b[2J"
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"request_id": f"r{i}", "timestamp": 1_800_000_000 + i, "model": model,
                                          "latency_ms": 100.0}) + "\n" for i in range(5)))  # fmt: skip
    returned, out, err = _said(["replay", "--config", str(config), str(events)], capsys)
    lines = out.splitlines()
    assert returned == 0 and all(line.isprintable() for line in lines)
    [_, summary, alert] = lines
    assert summary.startswith(f"  {printable(model)}: 5 calls") and alert.startswith("  alert firing at ")
    assert alert.endswith(f"Busy {{model={printable(model)}, severity=warning}} {printable(model)} is busy")


@pytest.mark.parametrize(("text", "seconds"), [("0", 0.0), ("-0", 0.0), (" 5 ", 5.0), ("1e308", 1e308)])
def test_seconds_are_finite_and_not_negative_not_even_a_negative_zero(text, seconds):
    # --deliver-timeout -0 was accepted as -0.0 and reported as "within --deliver-timeout -0 s".
    taken = _seconds(text)
    assert taken == seconds and math.copysign(1.0, taken) == 1.0 and f"{taken:g}" == f"{seconds:g}"


@pytest.mark.parametrize("text", ["-1", "nan", "inf", "-inf", "1e309", "0x10", "", "5 s"])
def test_what_is_not_a_number_of_seconds_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="is not a number of seconds"):
        _seconds(text)


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("--rate", "nan", "argument --rate: 'nan' is not a rate"),  # the traffic thread died; the demo went on
        ("--rate", "inf", "argument --rate: 'inf' is not a rate"),
        ("--rate", "0", "argument --rate: '0' is not a rate"),  # no traffic at all, silently
        ("--rate", "-1", "argument --rate: '-1' is not a rate"),
        ("--port", "-5", "argument --port: '-5' is not a port"),  # a traceback of the demo's own config
        ("--port", "65536", "argument --port: '65536' is not a port"),
    ],
)
def test_a_demo_refuses_a_rate_or_port_it_cannot_run_with_as_a_usage_error(option, value, error, capsys):
    returned, out, err = _said(["demo", option, value, "--duration", "0", "--log-format", "json"], capsys)
    [line] = err
    assert (returned, out) == (2, "") and error in json.loads(line)["message"]
