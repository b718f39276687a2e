"""Configuration: every bad file names its key path and why, the CLI exits 2 on it, secrets and durations."""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import ConfigError, load_config, parse_config, parse_duration_ms
from tests.components import wait_for

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "config.yaml"
_PATHS = "must be 'features.<key>', 'segment.<key>' or one of the event fields model_version,"


def _features(*lines):
    return "models:\n  - name: bot\n    features:\n" + "".join(f"      - {line}\n" for line in lines)


BAD = [
    pytest.param("window: {size: 10}\n", "window: unknown key (did you mean 'windows'?)", id="unknown-top-level"),
    pytest.param(
        "zzzzz: 1\n",
        "zzzzz: unknown key (valid keys: alerts, kafka, limits, models, retraining, rollback, server, state, windows)",
        id="unknown-top-level-far-from-any",
    ),  # fmt: skip
    pytest.param(
        "windows: {evaluate_evry: 30s}\n",
        "windows.evaluate_evry: unknown key (did you mean 'evaluate_every'?)",
        id="unknown-nested",
    ),  # fmt: skip
    pytest.param(
        _features("{name: x, kind: numeric, pth: features.x}"),
        "models[0].features[0].pth: unknown key (did you mean 'path'?)",
        id="unknown-feature-key",
    ),  # fmt: skip
    pytest.param("windows: {size: big}\n", "windows.size: must be an integer (got 'big')", id="wrong-type"),
    pytest.param("windows: {size: 1.5}\n", "windows.size: must be an integer (got 1.5)", id="float-for-integer"),
    pytest.param("windows: 3\n", "windows: must be a mapping (got 3)", id="section-not-a-mapping"),  # fmt: skip
    pytest.param(
        'windows: {evaluate_every: "soon"}\n',
        "windows.evaluate_every: must be a positive duration such as '30s', '15m', '6h' or '7d' (got 'soon')",
        id="bad-duration",
    ),  # fmt: skip
    pytest.param(
        _features("{name: x, kind: numeric}", "{name: y, kind: numerik}"),
        "models[0].features[1].kind: must be one of 'numeric', 'categorical', 'text' or 'embedding' (got 'numerik')",
        id="unknown-feature-kind",
    ),  # fmt: skip
    pytest.param(
        _features("{name: embedding, kind: embedding}"),
        "models[0].features[0]: 'dim' is required for kind 'embedding' and only for it",
        id="embedding-without-dim",
    ),  # fmt: skip
    pytest.param(
        _features("{name: x, kind: numeric, dim: 3}"),
        "models[0].features[0]: 'dim' is required for kind 'embedding' and only for it",
        id="dim-without-embedding",
    ),  # fmt: skip
    pytest.param(
        _features("{name: x, kind: numeric, path: foo.bar}"),
        f"models[0].features[0]: path 'foo.bar' {_PATHS}",
        id="bad-feature-path",
    ),  # fmt: skip
    pytest.param(
        _features("{name: x, kind: numeric, path: 'segment.'}"),
        f"models[0].features[0]: path 'segment.' {_PATHS}",
        id="feature-path-without-key",
    ),  # fmt: skip
    pytest.param(
        _features("{name: x}"), "models[0].features[0].kind: required key is missing", id="feature-without-kind"
    ),  # fmt: skip
    pytest.param("models:\n  - features: []\n", "models[0].name: required key is missing", id="model-without-name"),
    pytest.param(
        "models:\n  - name: a\n  - name: b\n  - name: a\n",
        "models: model names must be unique (repeated: a)",
        id="duplicate-model-names",
    ),  # fmt: skip
    pytest.param(
        _features("{name: x, kind: numeric}", "{name: x, kind: categorical}"),
        "models[0]: feature names must be unique (repeated: x)",
        id="duplicate-feature-names",
    ),  # fmt: skip
    pytest.param("models: []\n", "models: must have at least 1 item(s)", id="empty-models"),  # fmt: skip
    pytest.param("server: {port: -1}\n", "server.port: must be >= 0 (got -1)", id="negative-port"),  # fmt: skip
    pytest.param(
        "server: {port: 70000}\n", "server.port: must be <= 65535 (got 70000)", id="port-too-large"
    ),  # fmt: skip
    pytest.param(
        "kafka: {security_protocol: TLS}\n",
        "kafka.security_protocol: must be one of 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL' (got 'TLS')",
        id="bad-security-protocol",
    ),  # fmt: skip
    pytest.param("kafka: {topics: []}\n", "kafka.topics: must have at least 1 item(s)", id="no-topics"),
    pytest.param(
        "kafka: {topics: [llm-events, {name: traces, encoding: otlp_proto}], dead_letter_topic: traces}\n",
        "kafka: dead_letter_topic 'traces' is a topic read: each dead letter would be read, rejected and dead-lettered "
        "again, forever",
        id="dead-letters-into-a-topic-read",
    ),  # fmt: skip
    pytest.param(
        "windows:\n  size: 10\n   bad: [\n",
        "not valid YAML at line 3, column 7: mapping values are not allowed here",
        id="invalid-yaml",
    ),  # fmt: skip
    pytest.param("- kafka\n- windows\n", "the top level must be a mapping of sections (got list)", id="top-level-list"),
    pytest.param("hello\n", "the top level must be a mapping of sections (got str)", id="top-level-scalar"),
    pytest.param(
        "windows:\n  size: 10\n  size: 20\n",
        "not valid YAML at line 3, column 3: duplicate key 'size'",
        id="duplicate-key",
    ),
    pytest.param("? [a, b]\n: 1\n", "not valid YAML at line 1, column 3: found unhashable key", id="unhashable-key"),
    pytest.param("windows: {size: true}\n", "windows.size: must be an integer (got True)", id="bool-for-integer"),
    pytest.param(
        "windows: {size: 50, min_samples: 100}\n",
        "windows: min_samples (100) exceeds size (50): no window would be evaluated",
        id="min-samples-beyond-size",
    ),  # fmt: skip
    pytest.param("models:\n  - name: ''\n", "models[0].name: must not be empty", id="empty-model-name"),
    pytest.param(
        _features("{name: 'has space', kind: numeric}"),
        "models[0].features[0].name: must match ^[A-Za-z_][A-Za-z0-9_.\\-]*$ (got 'has space')",
        id="bad-feature-name",
    ),  # fmt: skip
    pytest.param(
        "alerts:\n  rules:\n    - {name: Ok, metric: version_verdict, op: '<', threshold: 0, actions: [rollback]}\n"
        "    - {name: Drift, metric: drift_share, op: '>', threshold: 0.3, actions: [log, rollback]}\n",
        "alerts: rules[1].actions: 'rollback' rolls back the version of a series, and driftwarden_drift_share has no "
        "version label (its labels: model); use a driftwarden_version_* metric such as version_verdict",
        id="rollback-without-version",
    ),  # fmt: skip
    pytest.param(
        "rollback: {cooldown: forever}\n",
        "rollback.cooldown: must be a positive duration such as '30s', '15m', '6h' or '7d' (got 'forever')",
        id="rollback-cooldown",
    ),  # fmt: skip
    pytest.param(
        "rollback: {trigger_url: 'ftp://rollouts'}\n", "rollback.trigger_url: must match ^https?://", id="rollback-url"
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_config_names_the_key_and_the_reason(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_every_problem_is_reported_one_per_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("windows: {size: big, evaluate_every: soon}\nserver: {port: -1}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    lines = str(raised.value).removeprefix(f"{path}: ").splitlines()
    assert sorted(line.split(": ", 1)[0] for line in lines) == ["server.port", "windows.evaluate_every", "windows.size"]


def test_missing_file_is_a_config_error(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError, match="cannot read: No such file or directory") as raised:
        load_config(path, environ={})
    assert str(path) in str(raised.value)


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"# caf\xe9\nwindows: {size: 10}\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path, environ={})


def test_empty_file_gives_the_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set\n")
    config = load_config(path, environ={})
    assert [model.name for model in config.models] == ["*"]
    assert (config.windows.size, config.windows.evaluate_every_ms, config.server.port) == (10_000, 30_000, 9108)


@pytest.mark.parametrize(
    ("labels", "error"),
    [
        ({"team": ""}, "labels: label 'team': empty (Alertmanager reads an empty value as no label"),
        ({"on-call": "x"}, "labels: label name 'on-call': must be letters, digits and _"),
        ({"__name__": "x"}, "labels: label name '__name__': must be letters"),
        ({"2fa": "x"}, "labels: label name '2fa': must be letters"),
    ],
)
def test_a_rules_labels_are_labels_alertmanager_keeps(labels, error):
    # A rule's own label set to "" was dropped by Alertmanager (no label); alerts carry values as sent and the sink
    # shows them as /metrics does, so it would now arrive as "(empty)". A name Alertmanager refuses would have every
    # alert of the rule rejected (400) at delivery, long after the config was accepted.
    rule = {"name": "Drift", "metric": "drift_share", "op": ">", "threshold": 0.3, "labels": labels}
    with pytest.raises(ConfigError, match=re.escape(f"alerts.rules[0].{error}")):
        parse_config({"alerts": {"rules": [rule]}}, environ={})


def test_a_rollback_rule_on_a_version_metric_is_accepted_with_the_rollback_defaults():
    rule = {"name": "CanaryWorse", "metric": "version_verdict", "op": "<", "threshold": 0, "actions": ["rollback"]}
    config = parse_config({"alerts": {"rules": [rule]}}, environ={})
    assert config.alerts.rules[0].actions == ["rollback"]
    assert (config.rollback.topic, config.rollback.trigger_url, config.rollback.cooldown_ms) == (
        "driftwarden-rollback",
        None,
        24 * 3_600_000,
    )


def test_example_config_is_valid():
    config = load_config(EXAMPLE, environ={})
    assert [model.name for model in config.models] == ["support-bot", "*"]
    assert config.windows.evaluate_every_ms == 60_000


def test_check_config_reports_a_bad_file_on_stderr_and_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("windows: {size: big}\n")
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{path}: windows.size: must be an integer (got 'big')" in err


def test_check_config_accepts_the_example(capsys):
    assert main(["check-config", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert f"{EXAMPLE}: ok" in out
    assert "model 'support-bot'" in out
    assert "kafka: llm-events (json) as group 'driftwarden', dead letters to llm-events-dlq" in out
    assert "every 30000 ms" in out  # the default checkpoint interval
    assert "    labels: the last 20000 calls kept for labels up to 604800000 ms late (20000 x 61 bytes" in out
    assert (
        "    pricing: USD per million tokens: input 3.0, cache read 0.3, output 15.0 (input_tokens include the cache "
        "reads)\n      version '2026-02': input 3.0, cache read 0.3, output 12.0\n"
        "      budget: 50 USD per 86400000 ms (0.000578704 a second)\n"
    ) in out
    assert "    pricing: EUR per million tokens: input 0.5, cache read 0.5, output 1.5" in out
    assert err == ""


def test_check_config_on_a_missing_file_exits_2(tmp_path, capsys):
    assert main(["check-config", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_ctrl_c_while_the_config_loads_exits_130_without_a_traceback(tmp_path):
    """Ctrl-C before a command has set its own handler (here while the config is read from a pipe that no one
    writes) ends the process as a shell expects, 128 + SIGINT, without a KeyboardInterrupt traceback."""
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "monitor.cli", "check-config", str(fifo)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        writer = wait_for(lambda: _open_writer(fifo), 30, "the CLI to open its config")  # it is reading now
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
        os.close(writer)
    finally:
        process.kill()
    assert process.returncode == 130
    assert b"Traceback" not in stderr and b"KeyboardInterrupt" not in stderr


def _open_writer(fifo) -> int | None:
    """A write end of the pipe, once a reader has it open (None before: opening would fail with ENXIO)."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None


def test_replay_with_a_bad_config_exits_2_before_reading_events(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("window: {size: 10}\n")
    assert main(["replay", "--config", str(path), str(tmp_path / "events.jsonl")]) == 2
    assert "did you mean 'windows'?" in capsys.readouterr().err


def test_environment_overrides_the_sasl_password_and_never_shows_it(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("kafka: {sasl_username: dw, sasl_password: from-file}\n")
    config = load_config(path, environ={"DRIFTWARDEN_KAFKA_SASL_PASSWORD": "s3cret"})
    assert config.kafka.sasl_password.get_secret_value() == "s3cret"
    assert config.kafka.sasl_username == "dw"
    for text in (repr(config), str(config), repr(config.kafka), str(config.kafka)):
        assert "s3cret" not in text and "**********" in text


def test_file_password_is_used_without_the_variable_and_is_masked(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("kafka: {sasl_password: from-file}\n")
    config = load_config(path, environ={})
    assert config.kafka.sasl_password.get_secret_value() == "from-file"
    assert "from-file" not in repr(config) and "from-file" not in str(config)


def test_environment_sets_secrets_absent_from_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("server: {port: 9200}\n")
    environ = {"DRIFTWARDEN_KAFKA_SASL_PASSWORD": "a", "DRIFTWARDEN_KAFKA_SSL_PASSWORD": "b"}
    kafka = load_config(path, environ=environ).kafka
    assert (kafka.sasl_password.get_secret_value(), kafka.ssl_password.get_secret_value()) == ("a", "b")
    assert kafka.topic_names == ["llm-events"]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("kafka: {sasl_password: 12345}\n", "kafka.sasl_password"),
        ("kafka: {ssl_password: 12345}\n", "kafka.ssl_password"),
        ("kafka: {sasl_password: [12345]}\n", "kafka.sasl_password"),
        ("kafka: {sasl_password: {p: 12345}}\n", "kafka.sasl_password"),
        ("alerts: {sinks: {webhook: {url: 'https://h.example', secret: 12345}}}\n", "alerts.sinks.webhook.secret"),
        ("kafka: 'sasl_password=12345'\n", "kafka"),  # a section holding secrets, mistyped
        ("alerts: {sinks: {webhook: 'secret=12345'}}\n", "alerts.sinks.webhook"),
    ],
)
def test_config_error_names_a_secret_key_and_never_shows_its_value(tmp_path, text, key):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    message = str(raised.value)
    assert f": {key}: must be a " in message and "not shown" in message
    assert "12345" not in message


def test_config_error_still_shows_other_values_of_a_section_with_secrets(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("kafka: {max_poll_records: many, sasl_password: 12345}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    assert "kafka.max_poll_records: must be an integer (got 'many')" in str(raised.value)
    assert "12345" not in str(raised.value)


@pytest.mark.parametrize("text", ["alerts: {sinks: hooks}\n", "alerts: [sinks]\n"])
def test_webhook_secret_variable_with_a_mistyped_alerts_section_is_a_config_error(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(path, environ={"DRIFTWARDEN_WEBHOOK_SECRET": "x"})


def test_limits_max_clock_skew_is_a_duration_defaulting_to_ten_minutes():
    assert parse_config({}, environ={}).limits.max_clock_skew_ms == 600_000
    assert parse_config({"limits": {"max_clock_skew": "1h"}}, environ={}).limits.max_clock_skew_ms == 3_600_000
    with pytest.raises(ConfigError, match="limits.max_clock_skew: must be a positive duration"):
        parse_config({"limits": {"max_clock_skew": 600}}, environ={})


def test_environment_secret_does_not_hide_a_broken_kafka_section(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("kafka: 3\n")
    with pytest.raises(ConfigError, match="kafka: must be a mapping"):
        load_config(path, environ={"DRIFTWARDEN_KAFKA_SASL_PASSWORD": "s3cret"})


@pytest.mark.parametrize(
    ("text", "milliseconds"),
    [
        ("500ms", 500),
        ("30s", 30_000),
        ("15m", 900_000),
        ("6h", 21_600_000),
        ("7d", 604_800_000),
        ("1w", 604_800_000),
        ("1.5s", 1_500),
        (" 30 s ", 30_000),
    ],  # fmt: skip
)
def test_durations_parse_to_milliseconds(text, milliseconds):
    assert parse_duration_ms(text) == milliseconds


@pytest.mark.parametrize("value", ["0s", "-1s", "30", 30, "30S", "1e3s", "", None, True, "soon"])
def test_bad_durations_are_rejected(value):
    with pytest.raises(ValueError, match="must be a positive duration"):
        parse_duration_ms(value)


@pytest.mark.parametrize("value", ["0.5ms", "0.0001s"])
def test_sub_millisecond_durations_are_rejected(value):
    with pytest.raises(ValueError, match="must be a positive duration"):
        parse_duration_ms(value)


def test_durations_in_the_config_are_milliseconds():
    windows = parse_config({"windows": {"duration": "15m", "evaluate_every": "500ms"}}, environ={}).windows
    assert (windows.duration_ms, windows.evaluate_every_ms) == (900_000, 500)


def test_default_min_samples_shrinks_to_a_small_window():
    assert parse_config({"windows": {"size": 50}}).windows.min_samples == 50


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"store": "s3"}, "state: s3.bucket: required when store is s3"),
        ({"store": "s3", "s3": {"prefix": "dw/"}}, "state.s3.bucket: required key is missing"),
        ({"store": "s3", "s3": {"bucket": ""}}, "state.s3.bucket: must not be empty"),
        ({"s3": {"bucket": "b"}}, "state: s3: set, but store is local (set store: s3"),
        ({"store": "s3", "s3": {"bucket": "b", "prefix": "/dw"}}, "state.s3.prefix: must not start with '/'"),
        ({"store": "s3", "s3": {"bucket": "b", "endpoint_url": "minio:9000"}}, "state.s3.endpoint_url: must be"),
        ({"store": "gcs"}, "state.store: must be one of 'local' or 's3' (got 'gcs')"),
    ],
)
def test_state_store_settings_are_checked_with_the_key_and_reason(state, message):
    with pytest.raises(ConfigError) as raised:
        parse_config({"state": state})
    assert str(raised.value).startswith(message), str(raised.value)


def test_an_endpoint_url_with_credentials_is_refused_without_showing_them():
    url = "https://AKIAEXAMPLE:wJalrXUtnFEMI@minio.example:9000"
    with pytest.raises(ConfigError) as raised:
        parse_config({"state": {"store": "s3", "s3": {"bucket": "b", "endpoint_url": url}}})
    assert str(raised.value).startswith("state.s3.endpoint_url: must not hold credentials")
    assert "wJalrXUtnFEMI" not in str(raised.value) and "AKIAEXAMPLE" not in str(raised.value)


@pytest.mark.parametrize(
    ("drift", "error"),
    [
        ({"alpha": 5e-324}, "alpha: must be >= 1e-09"),
        ({"false_alarms_per_week": 1e-300}, "false_alarms_per_week: must be >= 0.001"),
    ],
)
def test_an_alpha_too_small_to_split_is_refused_at_its_key(drift, error):
    """Split across features and groups, such an alpha rounded to 0, and every evaluation of the model failed."""
    with pytest.raises(ConfigError, match=re.escape(f"models[0].drift.{error}")):
        parse_config({"models": [{"name": "m", "drift": drift}]}, environ={})
