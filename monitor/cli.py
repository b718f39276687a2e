"""The ``driftwarden`` command.

Exit codes: 0 done, 1 a file could not be read or written, 2 the config (or
the command line) is wrong; the message on stderr says which key and why.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import math
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from threadpoolctl import threadpool_limits

from alerts.printable import printable
from alerts.retraining import Job, RetrainingQueue
from monitor.config import DEFAULT_WARMUP, Config, ConfigError, load_config
from monitor.evaluate.data_quality import data_quality_policy
from monitor.evaluate.drift import drift_alpha, false_alarm_policy, promise_coverage
from monitor.evaluate.slices import slice_policy
from monitor.export.alerting import RETRAINING_LEDGER, ROLLBACK_LEDGER
from monitor.export.collectors import write_exposition
from monitor.export.report import ReportUnavailable, drift_report_html
from monitor.ingest.file import JsonlDeadLetters, JsonlSource, write_jsonl
from monitor.logs import FORMATS, LogFormat, error_line, log_to_stderr
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import CheckpointError, CheckpointStore, PartitionCheckpoints
from monitor.run.replay import FILE_ENCODINGS, Drained, drain, replay
from monitor.run.store import open_store
from monitor.state.changes import change_policy
from monitor.state.labels import store_policy
from monitor.state.memory import memory_bound
from monitor.state.reference import ReferenceFileError, reference_records
from monitor.state.spend import price_lines

if TYPE_CHECKING:
    from monitor.ingest.backfill import TopicRange

__all__ = ["main"]


class _UsageError(Exception):
    """The command line is wrong in a way argparse cannot see (exit 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before the command took it over (loading the config, say): no traceback
        return 128 + signal.SIGINT


def _main(argv: Sequence[str] | None) -> int:
    log_format = _log_format_asked(sys.argv[1:] if argv is None else argv)
    arguments = _parse(argv, log_format)
    # One BLAS thread: the tick's matrix work is small, threads waiting on each other on a busy
    # machine made the embedding tests ten times slower, and results stay bit-identical across hosts.
    threadpool_limits(limits=1)
    try:
        config = load_config(arguments.config) if "config" in arguments else None  # demo brings its own
    except ConfigError as error:
        print(error_line(f"bad config: {error}", log_format), file=sys.stderr)
        return 2
    try:
        return arguments.command(config, arguments)
    except _UsageError as error:
        print(error_line(str(error), log_format), file=sys.stderr)
        return 2
    except (CheckpointError, ReferenceFileError) as error:
        print(error_line(str(error), log_format), file=sys.stderr)
        return 1
    except OSError as error:
        print(error_line(f"{error.filename or ''}: {error.strerror or error}", log_format), file=sys.stderr)
        return 1


def _log_format_asked(argv: Sequence[str]) -> LogFormat:
    """The ``--log-format`` of a command line, read before it is parsed, so that its usage errors are in it too
    (a ``--log-format`` without its value is left for the command's parser to report)."""
    asked = _Parser(add_help=False)
    asked.add_argument("--log-format")
    try:
        return "json" if asked.parse_known_args(argv)[0].log_format == "json" else "text"
    except _Misused:
        return "text"


class _Misused(Exception):
    """argparse's usage error, for :func:`_parse` to report in the log format asked for."""

    def __init__(self, parser: argparse.ArgumentParser, message: str):
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its subcommands' too), whose usage errors raise :class:`_Misused` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise _Misused(self, message)


def _parse(argv: Sequence[str] | None, log_format: LogFormat) -> argparse.Namespace:
    """The command line's arguments; a usage error exits 2 with argparse's text, or its error as one JSON log
    line (a log pipeline wants the error, not the usage)."""
    try:
        return _parser().parse_args(argv)
    except _Misused as misused:
        if log_format == "text":
            argparse.ArgumentParser.error(misused.parser, misused.message)
        print(error_line(f"{misused.parser.prog}: error: {misused.message}", log_format), file=sys.stderr)
        raise SystemExit(2) from None


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="driftwarden", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="the daemon: consume Kafka, serve /metrics, checkpoint, until SIGTERM")
    run.add_argument("--config", required=True, metavar="FILE", help="the daemon's YAML config")
    _log_format_argument(run)
    run.set_defaults(command=_run)

    demo = commands.add_parser(
        "demo", help="embedded broker + synthetic LLM traffic + the daemon, on localhost, until Ctrl-C"
    )
    demo.add_argument("--port", type=_port, default=9108, help="where to serve /metrics (0: any free port)")
    demo.add_argument("--rate", type=_rate, default=100.0, help="synthetic calls per second")
    demo.add_argument("--regress-at", type=_seconds, default=30.0, metavar="S", help="when support-bot slows down")
    demo.add_argument("--duration", type=_seconds, metavar="S", help="stop by itself after S seconds")
    _log_format_argument(demo)
    demo.set_defaults(command=_demo)

    check = commands.add_parser("check-config", help="validate a config file and say what it sets up")
    check.add_argument("config", metavar="FILE", help="the daemon's YAML config")
    check.set_defaults(command=_check_config)

    replay_command = commands.add_parser(
        "replay",
        help="run the pipeline over a file of events (JSONL; or OpenTelemetry traces, see --encoding), or a topic's "
        "time range, ticks on event time",
    )
    replay_command.add_argument("--config", required=True, metavar="FILE", help="the daemon's YAML config")
    replay_command.add_argument(
        "events", nargs="?", metavar="EVENTS.jsonl", help="one event per line, as on the Kafka topic (see --encoding)"
    )
    replay_command.add_argument(
        "--encoding",
        choices=FILE_ENCODINGS,
        help="what the file holds (default json: driftwarden's JSON events one a line); OpenTelemetry traces as the "
        "Collector's file exporter writes them: otlp_json one ExportTraceServiceRequest a line (format: json), "
        "otlp_proto each preceded by its length in 4 bytes, big-endian (format: proto, uncompressed). Never taken "
        "from a topic of the same name; --from-kafka decodes the topic as configured",
    )
    replay_command.add_argument(
        "--from-kafka", metavar="TOPIC", help="read the topic's messages from --since to --until instead of a file"
    )
    for bound, where in (("--since", "at or after"), ("--until", "before")):
        replay_command.add_argument(
            bound, type=_instant_ms, metavar="TIME", help=f"messages stamped {where} TIME (ISO 8601; UTC if no zone)"
        )
    replay_command.add_argument("--metrics-file", metavar="OUT.prom", help="write the final exposition here")
    replay_command.add_argument(
        "--dead-letter-file", metavar="OUT.jsonl", help="append rejected lines here with their reason"
    )
    replay_command.add_argument(
        "--deliver-alerts",
        action="store_true",
        help="deliver the alert transitions to the configured sinks (log, Alertmanager, webhook) through an outbox "
        "of the replay's own, not the daemon's; never queues retraining or rollback jobs for old data",
    )
    replay_command.add_argument(
        "--deliver-timeout",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="with --deliver-alerts: give up delivering after S seconds (plus Alertmanager's resolve_hold), exit 1",
    )
    _log_format_argument(replay_command)
    replay_command.set_defaults(command=_replay)

    reference = commands.add_parser("reference", help="build a reference file, or promote a version's calls")
    reference_commands = reference.add_subparsers(required=True, metavar="build|promote")
    build = reference_commands.add_parser(
        "build", help="write a reference file: each model's first (or last) valid inference events of a file"
    )
    build.add_argument("--config", required=True, metavar="FILE", help="the daemon's YAML config")
    build.add_argument("events", metavar="EVENTS.jsonl", help="one event per line, as on the Kafka topic")
    build.add_argument("--out", required=True, metavar="REFERENCE.jsonl", help="where to write the reference")
    build.add_argument("--model", action="append", metavar="NAME", help="only this model (repeatable)")
    build.add_argument("--size", type=int, default=DEFAULT_WARMUP, metavar="N", help="events per model")
    build.add_argument("--last", action="store_true", help="take the last N events instead of the first")
    build.set_defaults(command=_reference_build)
    promote = reference_commands.add_parser(
        "promote", help="ask the running daemon to relearn a model's warm-up reference from a version's next calls"
    )
    promote.add_argument("--config", required=True, metavar="FILE", help="the daemon's YAML config")
    promote.add_argument("--model", required=True, metavar="NAME", help="the model")
    promote.add_argument("--version", metavar="VERSION", help="a live version (default: the baseline)")
    promote.set_defaults(command=_reference_promote)

    report = commands.add_parser(
        "report", help="replay a file, then write an HTML drift report of a model's last window (Evidently)"
    )
    report.add_argument("--config", required=True, metavar="FILE", help="the daemon's YAML config")
    report.add_argument("events", metavar="EVENTS.jsonl", help="one event per line, as on the Kafka topic")
    report.add_argument("--model", required=True, metavar="NAME", help="the model to report on")
    report.add_argument("--out", required=True, metavar="REPORT.html", help="where to write the report")
    report.set_defaults(command=_report)

    jobs = commands.add_parser("jobs", help="the retraining jobs in the state directory's ledger")
    jobs_commands = jobs.add_subparsers(required=True, metavar="list|show")
    listing = jobs_commands.add_parser("list", help="the latest jobs, newest first")
    listing.add_argument("--config", required=True, metavar="FILE", help="the daemon's YAML config")
    listing.add_argument("--model", metavar="NAME", help="only this model's jobs")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="at most N jobs")
    listing.set_defaults(command=_jobs_list)
    show = jobs_commands.add_parser("show", help="one job, as JSON")
    show.add_argument("--config", required=True, metavar="FILE", help="the daemon's YAML config")
    show.add_argument("job_id", metavar="ID")
    show.set_defaults(command=_jobs_show)

    versions = commands.add_parser(
        "versions", help="each model's live versions, verdicts and rollback requests, from the latest checkpoint"
    )
    versions_commands = versions.add_subparsers(required=True, metavar="list|show")
    listing = versions_commands.add_parser("list", help="per model: live versions, baseline, each candidate's verdict")
    listing.add_argument("--config", required=True, metavar="FILE", help="the daemon's YAML config")
    listing.add_argument("--model", metavar="NAME", help="only this model")
    listing.set_defaults(command=_versions_list)
    show = versions_commands.add_parser("show", help="one version's evidence and rollback requests, as JSON")
    show.add_argument("--config", required=True, metavar="FILE", help="the daemon's YAML config")
    show.add_argument("model", metavar="MODEL")
    show.add_argument("version", metavar="VERSION")
    show.set_defaults(command=_versions_show)
    return parser


def _log_format_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--log-format", choices=FORMATS, default="text", help="stderr log lines as text, or one JSON object each"
    )


def _run(config: Config, arguments: argparse.Namespace) -> int:
    from monitor.run.daemon import Daemon  # Kafka and APScheduler load only for the commands that use them
    from monitor.run.heap import settle_heap

    log_to_stderr(logging.INFO, arguments.log_format)
    daemon = Daemon(config)
    settle_heap()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: daemon.stop())
    daemon.run()
    return 0


def _demo(config: None, arguments: argparse.Namespace) -> int:
    from monitor.demo.scenario import run_demo

    log_to_stderr(logging.WARNING, arguments.log_format)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run_demo(arguments.port, arguments.rate, arguments.duration, arguments.regress_at, stop, _print_flushed)
    return 0


def _print_flushed(text: str) -> None:
    print(text, flush=True)


def _check_config(config: Config, arguments: argparse.Namespace) -> int:
    windows = config.windows
    extent = f"{windows.size} events" + (f" within {windows.duration_ms} ms" if windows.duration_ms else "")
    kafka, state = config.kafka, config.state
    print(f"{arguments.config}: ok")
    topics = ", ".join(f"{topic.name} ({topic.encoding})" for topic in kafka.topics)
    print(f"  kafka: {topics} as group {kafka.group_id!r}, dead letters to {kafka.dead_letter_topic}")
    print(f"  state: checkpoints in {open_store(state).describe()} every {state.checkpoint_every_ms} ms")
    server = config.server
    web = server.web_config_file.describe() if server.web_config_file else "http, no TLS, no basic auth"
    print(f"  server: {server.host}:{server.port}, {web}")
    print(f"  windows: last {extent}, evaluated every {windows.evaluate_every_ms} ms")
    print(f"  memory: at most {memory_bound(config)}")
    for model in config.models:
        features = ", ".join(f"{feature.name} ({feature.kind})" for feature in model.features) or "none"
        source = f"file {model.reference.file}" if model.reference.file else f"first {model.reference.warmup} events"
        print(f"  model {model.name!r}: features {features}; reference: {source}")
        if model.features:
            print(f"    drift: {false_alarm_policy(model.drift, windows)}")
            print(f"    drift promise: {promise_coverage(model)}")
            alpha = drift_alpha(model.drift, windows)
            print(f"    data quality: {data_quality_policy(model, alpha, windows.evaluations_per_week)}")
        drift = model.drift
        if drift.change_detector is not None:
            policy = change_policy(
                drift.change_detector, windows.min_samples, drift.change_arl, drift.change_shift, drift.change_warmup
            )
            print(f"    changes: {policy}")
        if model.slices.attributes:
            alpha = drift_alpha(model.drift, windows)
            print(f"    slices: {slice_policy(model, alpha, windows.evaluations_per_week)}")
        print(f"    labels: {store_policy(model)}")
        if model.pricing is not None:
            first, *others = price_lines(model.pricing)
            print(f"    pricing: {first}")
            for line in others:
                print(f"      {line}")
    sinks = [name for name in ("alertmanager", "webhook") if getattr(config.alerts.sinks, name) is not None]
    for rule in config.alerts.rules:
        wait = f" for {rule.for_ms} ms" if rule.for_ms else ""
        print(f"  rule {rule.name}: {rule.metric} {rule.op} {rule.threshold}{wait} -> {', '.join(rule.actions)}")
    if config.alerts.rules:
        print(f"  alert sinks: log{''.join(', ' + name for name in sinks)}")
    return 0


def _seconds(text: str) -> float:
    """A number of seconds, finite and not negative."""
    if not 0 <= (seconds := _number(text)) < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return seconds + 0.0  # -0 as 0


def _rate(text: str) -> float:
    """Calls per second, finite and more than 0."""
    if not 0 < (rate := _number(text)) < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate (calls per second, more than 0)")
    return rate


def _port(text: str) -> int:
    """A TCP port, or 0 for any free one."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65_535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return port


def _number(text: str) -> float:
    """``text`` as a number, NaN when it is none."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def _instant_ms(text: str) -> int:
    """An ISO 8601 time (UTC when it names no zone) in epoch milliseconds; a bare number is refused (seconds or
    milliseconds?)."""
    try:
        if text.strip().isdigit():
            raise ValueError
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (e.g. 2026-01-01T00:00:00Z)") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    # The millisecond at or after it, exactly: Kafka stamps whole ones, so a message is at or after (or before) the
    # time if and only if it is at or after (before) that millisecond.
    return -(-(instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1))


def _replay_source(config: Config, arguments: argparse.Namespace) -> str | TopicRange:
    """The file, or the topic's range; exits 2 (argparse) when the command line names both, neither or half a
    range."""
    ranged = arguments.since is not None or arguments.until is not None
    if arguments.from_kafka is None:
        if arguments.events is None or ranged:
            raise _UsageError("replay takes EVENTS.jsonl, or --from-kafka TOPIC with --since and --until")
        return arguments.events
    if arguments.events is not None or arguments.since is None or arguments.until is None:
        raise _UsageError("--from-kafka TOPIC takes --since and --until, and no EVENTS.jsonl")
    if arguments.encoding is not None:
        raise _UsageError("--encoding is a file's: --from-kafka decodes TOPIC as the config's kafka.topics say")
    if arguments.since >= arguments.until:
        raise _UsageError(f"--since ({_iso(arguments.since)}) must come before --until ({_iso(arguments.until)})")
    from monitor.ingest.backfill import TopicRange  # Kafka loads only for the commands that use it

    return TopicRange(config.kafka, arguments.from_kafka, arguments.since, arguments.until)


def _replay(config: Config, arguments: argparse.Namespace) -> int:
    log_to_stderr(logging.WARNING, arguments.log_format)
    source = _replay_source(config, arguments)
    from monitor.ingest.backfill import BackfillError

    dead_letters = JsonlDeadLetters(arguments.dead_letter_file) if arguments.dead_letter_file else None
    delivering = arguments.deliver_alerts
    if delivering:  # the log sink writes a resolve at INFO
        logging.getLogger("driftwarden.alerts").setLevel(logging.INFO)
    temporary = tempfile.TemporaryDirectory(prefix="driftwarden-replay-") if delivering else contextlib.nullcontext()
    with temporary as outbox_dir:
        try:
            events = source if isinstance(source, str) else source.polls()
            outbox = Path(outbox_dir) if outbox_dir else None
            result = replay(config, events, dead_letters, outbox_dir=outbox, encoding=arguments.encoding or "json")
        except BackfillError as error:
            print(error_line(str(error), arguments.log_format), file=sys.stderr)
            return 1
        finally:
            if dead_letters is not None:
                dead_letters.close()
        drained = drain(result.alerting, arguments.deliver_timeout) if delivering else None
    if arguments.metrics_file:
        write_exposition(result.registry(), arguments.metrics_file)
    # a message of OpenTelemetry traces holds several events, so several may be rejected of one
    print(f"replayed {result.n_records} messages ({result.n_rejected} events rejected), {result.n_ticks} evaluations")
    _print_summary(result.pipeline)
    for alert in result.alerts:
        at_ms = alert.starts_at_ms if alert.ends_at_ms is None else alert.ends_at_ms  # set once resolved
        labels = ", ".join(f"{key}={value}" for key, value in sorted(alert.labels.items()) if key != "alertname")
        summary = alert.annotations.get("summary", "")
        print(printable(f"  alert {alert.state} at {_iso(at_ms)}: {alert.name} {{{labels}}} {summary}".rstrip()))
    if drained is not None:
        return _delivered_alerts(result.alerts, drained, arguments)
    return 0


def _delivered_alerts(alerts: list, drained: Drained, arguments: argparse.Namespace) -> int:
    """Print what a replay delivered; exit 1 (with the sinks' origins on stderr) if some were left undelivered."""
    print(f"delivered alerts: {sum('log' in alert.actions for alert in alerts)} transitions logged")
    for name, where in drained.origins.items():
        print(f"  {name} at {where}: {drained.delivered[name]} delivered, {drained.left[name]} undelivered")
    for name, n_left in drained.left.items():
        if n_left:
            where = f"{name} at {drained.origins[name]} within --deliver-timeout {arguments.deliver_timeout:g} s"
            message = f"{n_left} alert(s) not delivered to {where} (see the log for why)"
            print(error_line(message, arguments.log_format), file=sys.stderr)
    if drained.n_dropped:
        message = f"the outbox was full (alerts.outbox_size): it dropped {drained.n_dropped} queued alert(s)"
        print(error_line(message, arguments.log_format), file=sys.stderr)
    return 0 if drained.complete else 1


def _iso(time_ms: float) -> str:
    return datetime.fromtimestamp(time_ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _reference_promote(config: Config, arguments: argparse.Namespace) -> int:
    partitions = PartitionCheckpoints(open_store(config.state), config.kafka.group_id)
    request_id = partitions.request_promotion(arguments.model, arguments.version)
    version = printable(arguments.version) if arguments.version is not None else "its baseline"
    print(
        f"asked for request {request_id}: the replica that holds {printable(arguments.model)} promotes its reference "
        f"from the next calls of {version} at its next checkpoint (driftwarden_reference_info shows source "
        "'promoted'; the daemon logs why if it cannot)"
    )
    return 0


def _reference_build(config: Config, arguments: argparse.Namespace) -> int:
    models = set(arguments.model) if arguments.model else None
    batches = JsonlSource(arguments.events).batches()
    records = reference_records(batches, config.limits.max_event_bytes, arguments.size, models, arguments.last)
    write_jsonl(arguments.out, records)
    print(f"wrote {len(records)} reference events to {arguments.out}")
    return 0


def _report(config: Config, arguments: argparse.Namespace) -> int:
    pipeline = replay(config, arguments.events).pipeline
    try:
        page = drift_report_html(pipeline, arguments.model)
    except ReportUnavailable as error:
        print(f"driftwarden: {error.args[0]}", file=sys.stderr)
        return 1
    Path(arguments.out).write_text(page, encoding="utf-8")
    print(f"wrote the drift report of {arguments.model!r} to {arguments.out}")
    return 0


def _ledger(config: Config) -> RetrainingQueue:
    path = Path(config.state.dir) / RETRAINING_LEDGER
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no retraining ledger (no job was ever queued)", str(path))
    return RetrainingQueue(path, config.retraining.cooldown_ms)


def _jobs_list(config: Config, arguments: argparse.Namespace) -> int:
    jobs = _ledger(config).jobs(arguments.model, arguments.limit)
    print(f"{'id':<24} {'model':<20} {'version':<12} {'status':<12} {'created':<25} reason")
    for job in jobs:  # model names, versions and reasons come from events: one row each, whatever they hold
        model, version, reason = printable(job.model), printable(job.version or "-"), printable(job.reason)
        print(f"{job.id:<24} {model:<20} {version:<12} {job.status:<12} {_iso(job.created_ms):<25} {reason}")
    return 0


def _jobs_show(config: Config, arguments: argparse.Namespace) -> int:
    job = _ledger(config).get(arguments.job_id)
    if job is None:
        print(f"driftwarden: no job {arguments.job_id!r} in the ledger", file=sys.stderr)
        return 1
    print(job.to_json())  # JSON with every non-ASCII character escaped: one line
    return 0


def _saved_versions(config: Config) -> dict[str, dict]:
    """Each model's versions (``ModelState.snapshot()["versions"]``) as the latest checkpoints hold them: the state
    directory's own (models without a home yet) and those of the partitions it covered (the models at home there,
    in the partition store). Models whose state predates versions are left out."""
    checkpoint = CheckpointStore(config.state.dir).load()
    if checkpoint is None:
        path = str(CheckpointStore(config.state.dir).path)
        raise FileNotFoundError(errno.ENOENT, "no checkpoint (the daemon has saved none yet)", path)
    models = dict(checkpoint.pipeline["states"]["models"])
    partitions = PartitionCheckpoints(open_store(config.state), config.kafka.group_id)
    for partition in checkpoint.offsets:
        saved = partitions.load(partition)
        if saved is not None:
            models.update(saved.pipeline["models"])
    return {name: state["versions"] for name, state in sorted(models.items()) if state.get("versions")}


def _rollback_requests(config: Config, model: str | None = None) -> dict[tuple[str, str | None], list[Job]]:
    """The rollback ledger's requests by (model, version), newest first; none when no request was ever queued."""
    path = Path(config.state.dir) / ROLLBACK_LEDGER
    if not path.exists():
        return {}
    requests: dict[tuple[str, str | None], list[Job]] = {}
    with RetrainingQueue(path, config.rollback.cooldown_ms, kind="rollback") as ledger:
        for job in ledger.jobs(model, limit=10_000):
            requests.setdefault((job.model, job.version), []).append(job)
    return requests


#: How a verdict of ``driftwarden_version_verdict`` reads.
_VERDICTS = {-1: "worse", 0: "undecided", 1: "better"}


def _versions_list(config: Config, arguments: argparse.Namespace) -> int:
    saved = _saved_versions(config)
    requests = _rollback_requests(config, arguments.model)
    for model, versions in saved.items():
        if arguments.model is not None and model != arguments.model:
            continue
        live = ", ".join(printable(name) for name in versions["codes"]) or "none"
        print(f"model {printable(model)}: baseline {printable(versions['baseline'] or '-')}; live {live}")
        print(f"  {'version':<20} {'verdict':<10} {'baseline n':>10} {'candidate n':>11} {'evaluated':<25} rollback")
        for version, comparison in versions["comparisons"].items():
            latest = comparison.get("latest")
            verdict, n_baseline, n_candidate, evaluated = "-", "-", "-", "-"
            if latest is not None:
                calls = latest["metrics"]["error_ratio"]  # every call has it
                verdict, evaluated = _VERDICTS[latest["verdict"]], _iso(latest["evaluated_at_ms"])
                n_baseline, n_candidate = calls["n_baseline"], calls["n_candidate"]
            jobs = requests.get((model, version))
            rollback = f"{jobs[0].status} {jobs[0].id}" if jobs else "-"
            sizes = f"{n_baseline:>10} {n_candidate:>11}"
            print(f"  {printable(version):<20} {verdict:<10} {sizes} {evaluated:<25} {rollback}")
    return 0


def _versions_show(config: Config, arguments: argparse.Namespace) -> int:
    model, version = arguments.model, arguments.version
    versions = _saved_versions(config).get(model)
    jobs = _rollback_requests(config, model).get((model, version), [])
    if (versions is None or version not in versions["codes"]) and not jobs:
        print(f"driftwarden: no version {version!r} of model {model!r} in the checkpoint", file=sys.stderr)
        return 1
    comparison = versions["comparisons"].get(version) if versions is not None else None
    document = {
        "model": model,
        "version": version,
        "live": versions is not None and version in versions["codes"],
        "baseline": versions["baseline"] if versions is not None else None,
        "comparison": comparison.get("latest") if comparison is not None else None,
        "rollback_requests": [_delivered(job) for job in jobs],
    }
    print(json.dumps(document, sort_keys=True, indent=2, allow_nan=False))  # non-ASCII escaped: nothing can repaint
    return 0


def _delivered(job: Job) -> dict:
    """A job's document with where its delivery stands."""
    delivery = {
        "status": job.status,
        "attempts": job.attempts,
        "last_error": job.last_error,
        "updated_ms": job.updated_ms,
    }
    return {**json.loads(job.to_json()), **delivery}


def _print_summary(pipeline: Pipeline) -> None:
    for state in pipeline.states:
        evaluation = pipeline.evaluations.get(state.name)
        line = f"  {printable(state.name)}: {state.n_events['inference']} calls, {state.n_events['feedback']} feedback"
        if evaluation is not None and evaluation.traffic is not None:
            traffic = evaluation.traffic
            latency = ", ".join(f"p{q * 100:g} {value:.0f} ms" for q, value in traffic.latency_quantiles_ms)
            line += f"; window {evaluation.window_events}: {latency}, errors {traffic.error_ratio:.2%}"
            if evaluation.drift is not None:
                drifted = ", ".join(evaluation.drift.drifted) or "none"
                line += f"; drift share {evaluation.drift.drift_share:.2f} (drifted: {drifted})"
        elif evaluation is not None:
            line += f"; window {evaluation.window_events} (below min_samples, no statistics)"
        print(line)
    rejected = {reason: count for reason, count in pipeline.n_invalid.items() if count}
    if rejected:
        print("  rejected: " + ", ".join(f"{reason} {count}" for reason, count in rejected.items()))


if __name__ == "__main__":
    sys.exit(main())
