"""``driftwarden run``: the consumer loop, its schedule, and a shutdown that loses nothing.

One thread consumes: it takes a batch from the Kafka consumer (with
kafka-python, a child process, :mod:`monitor.ingest.consumer_process`,
fetching the next batch meanwhile; with ``kafka.client: confluent``,
:mod:`monitor.ingest.confluent` in this process, librdkafka fetching in its
own threads), applies it to the pipeline (which evaluates each model, and runs
the alert rules, as the model's event time crosses a boundary of
``windows.evaluate_every``), sends the rejected records to the dead-letter
topic, lets idle models' event time follow the wall clock, and, when a
checkpoint is due, hands over to :class:`~monitor.run.checkpointer.Checkpointer`
(flush and check the dead letters, save the state with the offsets it covers,
commit). APScheduler asks for checkpoints and delivers notifications on
timers. A scrape reads the pipeline under its lock at any time.

Nothing raised on behalf of one message, one send or one model stops the
loop: the decoder never raises, a model whose ingest or evaluation raises is
logged and counted (``driftwarden_internal_errors_total``), a dead letter that
cannot be sent is kept and sent again, and while more than
:data:`MAX_DEAD_LETTER_BACKLOG` wait the loop stops reading rather than
commit past them.

Delivery is at-least-once from Kafka with no double counting: after a crash
the daemon restores the last checkpoint and reads again from its offsets, so
the events it had applied since are applied once more to a state that does
not yet hold them. Dead letters are at-least-once (a crash can send one
twice). On SIGTERM or SIGINT (:meth:`Daemon.stop`) the loop finishes its
batch, checkpoints, commits, leaves the group and returns.

State follows the consumer group. Each model has a home, the partition its
first event came from (serving code keys events by model, so a model lives on
one partition). A checkpoint saves each partition's offset with the state of
the models at home there into the partition store (``state.store``: the local
``state.dir`` for one replica, an S3 bucket for several), and the rest (the
process's own counters) into ``state.dir``. When the group assigns a
partition, the daemon restores its models from the store before reading it,
from the offset saved with them; before a partition is taken away, it
checkpoints, then forgets the partition's models: it stops exporting them and
evaluating their rules, and their new owner carries on from that checkpoint.

``/readyz`` says ready while the consumer has partitions, holds a connection to a broker and has polled in
the last few seconds, and no partition's state is being restored; until Kafka answers, the daemon keeps
trying and says not ready (with the reason).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import ProcessCollector

from monitor.config import Config
from monitor.export.alerting import Alerting, AlertsCollector
from monitor.export.collectors import ConsumerLagCollector, DaemonCollector, Exports, MetricsServer, PipelineCollector
from monitor.export.report import DriftReports
from monitor.ingest import Offsets, Partition, PartitionBatch
from monitor.ingest.consumer_process import ConsumerProcess
from monitor.ingest.kafka import KafkaDeadLetters, KafkaError, KafkaSink, client_settings
from monitor.pipeline import Pipeline
from monitor.run.checkpoint import (
    PARTITION_FINGERPRINT,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    PartitionCheckpoints,
    config_fingerprint,
)
from monitor.run.checkpointer import Checkpointer
from monitor.run.store import open_store

if TYPE_CHECKING:
    from monitor.ingest.confluent import ConfluentSource

__all__ = ["Daemon"]

log = logging.getLogger(__name__)

_POLL_MS = 500
_READY_WITHIN_S = 10.0
_RETRY_S = 2.0
_DELIVER_EVERY_S = 1.0
_RESTORING = "restoring the state of assigned partitions"
#: Dead letters waiting to be sent again above which the loop stops reading new events.
MAX_DEAD_LETTER_BACKLOG = 10_000


class _Stopped(Exception):
    """The daemon was asked to stop while it waited for the state store."""


class Daemon:
    """The monitoring daemon for one config; :meth:`run` blocks until :meth:`stop` is called."""

    def __init__(self, config: Config):
        self.config = config
        self.pipeline = Pipeline(config)
        self.store = CheckpointStore(config.state.dir)
        self.partitions = PartitionCheckpoints(open_store(config.state), config.kafka.group_id)
        self._fingerprint = config_fingerprint(config)
        self.checkpointer = Checkpointer(
            self.store, self._snapshot, self._fingerprint, partitions=self.partitions, snapshot_home=self._snapshot_home
        )
        self._resume_from: Offsets = {}  # a checkpoint's from before partitions owned state: where each resumes
        self._restoring: str | None = None  # why not ready while partitions are assigned
        self._unrestored: set[Partition] = set()  # assigned, but their state was never loaded: never saved here
        self._source: ConsumerProcess | ConfluentSource | None = None
        self._dead_letters: KafkaDeadLetters | None = None
        self._stopping = threading.Event()
        self._checkpoint_due = threading.Event()
        lag = ConsumerLagCollector(lambda: self._source.lag if self._source else {})
        daemon = DaemonCollector(self.checkpointer, lambda: self._dead_letters.n_failed if self._dead_letters else 0)
        exports = Exports(PipelineCollector(self.pipeline), lag, daemon)
        self.alerting = Alerting(config, exports.samples, publish=self._publish_job)
        self.pipeline.on_evaluate = lambda models, now_ms: self.alerting.tick(self.pipeline, now_ms, models)
        exports.add(AlertsCollector(self.alerting))
        self.registry = exports.registry
        ProcessCollector(registry=self.registry)  # process_*: CPU, resident memory, open fds (the standard names)
        self._jobs: dict[str, KafkaSink] = {}  # a producer per topic of jobs (retraining, rollback), opened on use
        self.server = MetricsServer(
            self.registry,
            config.server.host,
            config.server.port,
            ready=self.ready,
            report=DriftReports(self.pipeline),
            web=config.server.web_config_file,
            timeout_s=config.server.timeout_ms / 1000,
            max_connections=config.server.max_connections,
        )

    @property
    def metrics_url(self) -> str:
        web = self.config.server.web_config_file
        scheme = "https" if web is not None and web.tls is not None else "http"
        return f"{scheme}://{self.config.server.host}:{self.server.port}/metrics"

    def ready(self) -> str | None:
        """None when ready, else why not (``/readyz``)."""
        source = self._source
        if source is None or source.last_poll is None:
            return "starting"
        if self._restoring is not None:
            return self._restoring
        if not source.connected:
            return "no connection to a Kafka broker"
        if not source.assigned:
            return "no partitions assigned"
        if time.monotonic() - source.last_poll >= _READY_WITHIN_S:
            return f"no poll in the last {_READY_WITHIN_S:g} s"
        return None

    def stop(self) -> None:
        """Ask the loop to finish its batch and shut down (safe from a signal handler)."""
        self._stopping.set()

    def run(self) -> None:
        self._restore()
        self.server.start()
        log.info("serving %s", self.metrics_url)
        scheduler = self._scheduler()
        scheduler.start()
        try:
            if self._connect():
                self._consume()
                self._checkpoint()
        finally:
            scheduler.shutdown(wait=False)
            if self._source is not None:
                self._source.close()
            if self._dead_letters is not None:
                self._dead_letters.close()
            for sink in self._jobs.values():
                sink.close()
            self.server.stop()
            log.info("stopped")

    def _restore(self) -> None:
        """This process's own checkpoint: its counters, and the models of a checkpoint written before
        partitions owned state (with the offsets they resume from, :meth:`_assigned`)."""
        checkpoint = self.store.load()
        if checkpoint is None:
            return
        self._resume_from = checkpoint.offsets
        if checkpoint.config_fingerprint == self._fingerprint:
            self.pipeline.restore(checkpoint.pipeline)
            self.alerting.restore(checkpoint.pipeline.get("alerts", {}))
            log.info(
                "restored the checkpoint of %s (%d models; started afresh: %s)",
                time.ctime(checkpoint.created_at),
                len(self.pipeline.states),
                ", ".join(f"{model} ({reason})" for model, reason in self.pipeline.states.resets.items()) or "none",
            )
        else:
            log.warning(
                "the state layout or limits.max_models changed since the checkpoint of %s: state starts afresh, "
                "reading resumes from its offsets",
                time.ctime(checkpoint.created_at),
            )

    def _assigned(self, partitions: list[Partition]) -> Offsets:
        """Restore the models at home in newly assigned partitions; the offset each resumes from.

        A partition without a checkpoint of its own resumes from this process's older checkpoint, if that
        covers it, else from the group's committed offset. A checkpoint that cannot be read, or whose state
        does not fit, is logged and skipped: the partition's models then start afresh (it never stops the
        daemon). While the store does not answer, the restore waits for it (``/readyz`` says why): starting
        afresh would overwrite the saved state, references included, at the next checkpoint. A partition
        still waiting when the daemon stops is left out of every later checkpoint.
        """
        self._restoring = _RESTORING
        try:
            offsets = {}
            for partition in partitions:
                started = time.monotonic()
                try:
                    checkpoint = self._load(partition)
                except _Stopped:
                    self._unrestored.add(partition)
                    continue
                if checkpoint is None:
                    if partition in self._resume_from:
                        offsets[partition] = self._resume_from[partition]
                    continue
                offsets[partition] = checkpoint.offsets[partition]
                if checkpoint.config_fingerprint != PARTITION_FINGERPRINT:
                    message = "%s[%d]: the state layout changed since its save; its models start afresh"
                    log.warning(message, *partition, extra={"topic": partition[0], "partition": partition[1]})
                    continue
                n_models = self._restore_home(partition, checkpoint.pipeline)
                log.info(
                    "%s[%d]: restored %d models in %.2f s, resuming at offset %d",
                    *partition, n_models, time.monotonic() - started, offsets[partition],
                    extra={"topic": partition[0], "partition": partition[1]},
                )  # fmt: skip
            return offsets
        finally:
            self._restoring = None

    def _load(self, partition: Partition) -> Checkpoint | None:
        """The partition's checkpoint; None if it has none or it cannot be read (logged); while the store does
        not answer, try again until it does; :class:`_Stopped` once the daemon is asked to stop (it reads
        nothing more: the restore would be wasted)."""
        while not self._stopping.is_set():
            try:
                return self.partitions.load(partition)
            except CheckpointError as error:
                message = "%s[%d]: its state cannot be restored (%s); its models start afresh"
                log.error(message, *partition, error, extra={"topic": partition[0], "partition": partition[1]})
                return None
            except OSError as error:
                message = "%s[%d]: the state store does not answer (%s); trying again"
                log.error(message, *partition, error, extra={"topic": partition[0], "partition": partition[1]})
                self._restoring = f"{_RESTORING}: the state store does not answer ({error})"
                self._stopping.wait(_RETRY_S)
        raise _Stopped

    def _restore_home(self, partition: Partition, saved: dict) -> int:
        """Take back a partition's models and their alert state; how many. State of the wrong shape (a
        document written by something else) is logged and its models start afresh."""
        try:
            models = self.pipeline.restore_home(saved)
            self.alerting.restore_models(saved["alerts"])
        except Exception as error:  # noqa: BLE001 - a document in the store must never stop the daemon
            message = "%s[%d]: its saved state does not fit (%r); its models start afresh"
            log.error(message, *partition, error, extra={"topic": partition[0], "partition": partition[1]})
            self.alerting.forget_models(self.pipeline.forget([partition]))
            return 0
        return len(models)

    def _revoked(self, partitions: list[Partition]) -> bool:
        """Checkpoint, then forget the models at home in partitions taken away; whether the checkpoint saved."""
        saved = self._save_checkpoint() is not None
        models = self.pipeline.forget(partitions)
        self.alerting.forget_models(models)
        names = ", ".join(f"{topic}[{number}]" for topic, number in partitions)
        log.info("%s: handed over %d models", names, len(models))
        return saved

    def _scheduler(self) -> BackgroundScheduler:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not a line per tick
        scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
        every_s = self.config.state.checkpoint_every_ms / 1000
        scheduler.add_job(self._checkpoint_due.set, "interval", seconds=every_s, id="checkpoint")
        scheduler.add_job(self.alerting.deliver, "interval", seconds=_DELIVER_EVERY_S, id="deliver")
        return scheduler

    def _connect(self) -> bool:
        """Start the consumer process and the dead-letter producer (retrying while Kafka is away)."""
        kafka = self.config.kafka
        if kafka.client == "confluent":
            from monitor.ingest.confluent import ConfluentSource  # the optional extra: imported only when chosen

            self._source = ConfluentSource(kafka, self._assigned, self._revoked)
        else:
            self._source = ConsumerProcess(kafka, self._assigned, self._revoked)
        while kafka.dead_letter_topic and self._dead_letters is None and not self._stopping.is_set():
            try:
                # Not idempotent: kafka-python's idempotent producer treats one refused write (say, an
                # authorization failure) as fatal and fails every later send; dead letters are at-least-once.
                sink = KafkaSink(
                    client_settings(kafka), kafka.dead_letter_topic, max_block_ms=10_000, enable_idempotence=False
                )
                self._dead_letters = KafkaDeadLetters(sink)
                self.checkpointer.sinks.append(self._dead_letters)
            except KafkaError as error:
                log.warning("Kafka at %s: %s; retrying in %g s", kafka.bootstrap_servers, error, _RETRY_S)
                self._stopping.wait(_RETRY_S)
        return not self._stopping.is_set()

    def _consume(self) -> None:
        source = self._source
        assert source is not None  # _connect() set it before consuming starts
        while not self._stopping.is_set():
            if self._dead_letters is not None and self._dead_letters.backlog > MAX_DEAD_LETTER_BACKLOG:
                self._checkpoint_due.set()  # read nothing more until the dead letters are delivered
                self._stopping.wait(_POLL_MS / 1000)
            else:
                batches = source.poll(_POLL_MS)
                if batches:
                    self._apply(batches)
                self.pipeline.advance_idle(time.time() * 1000)
            if self._checkpoint_due.is_set():
                self._checkpoint()

    def _apply(self, batches: list[PartitionBatch]) -> None:
        for record, invalid, _ in self.pipeline.apply_batches(batches, wall_ms=time.time() * 1000):
            if self._dead_letters is not None:
                self._dead_letters.write(record, invalid.reason, invalid.detail)
            else:
                where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
                log.warning(
                    "dropped %s[%d]@%d: %s", *where.values(), invalid.reason, extra={**where, "reason": invalid.reason}
                )

    def _checkpoint(self) -> None:
        """Save state and offsets, then commit the offsets to the group (see :mod:`monitor.run.checkpointer`)."""
        self._checkpoint_due.clear()
        assert self._source is not None  # checkpoints are taken only once connected
        saved = self.checkpointer.checkpoint(self._positions(), self._source.commit)
        self._claim_homes()
        if saved is not None and not self._stopping.is_set():  # (a store that fails, or a stop, waits for nothing)
            self._promote_references()

    def _promote_references(self) -> None:
        """Apply the reference promotions asked for (``driftwarden reference promote``) of the models held here,
        and drop them from the store's record."""
        try:
            requests = self.partitions.promotions()
            done = {
                model: request["id"]
                for model, request in requests.items()
                if self.pipeline.promote_reference(model, request.get("version"), str(request.get("id")))
            }
            if done:
                self.partitions.promoted(done)
        except OSError as error:
            log.warning("cannot read or update the reference promotions asked for (%s); trying again later", error)

    def _claim_homes(self) -> None:
        """Record in the store the homes given to new models since the last checkpoint, and check those claimed
        then: a model at home on another partition (another replica's, which this one cannot see) is split."""
        states = self.pipeline.states
        with self.pipeline.lock:
            claims, states.new_homes = states.new_homes, {}
        for position, (name, home) in enumerate(claims.items()):
            try:
                recorded = self.partitions.claim_home(name, home)
            except OSError as error:
                log.warning("cannot record the homes of new models (%s); trying again at the next checkpoint", error)
                with self.pipeline.lock:
                    states.new_homes.update(list(claims.items())[position:])
                return
            with self.pipeline.lock:
                if recorded is None:  # claimed now: checked once more, in case another replica claimed it too
                    states.new_homes.setdefault(name, home)
                elif recorded != home:
                    states.home_elsewhere(name, recorded)

    def _save_checkpoint(self) -> Offsets | None:
        """Before a rebalance takes partitions away: save state and offsets; the source commits them."""
        self._checkpoint_due.clear()
        assert self._source is not None  # called back by the source itself
        return self.checkpointer.checkpoint(self._positions(), lambda offsets: None)

    def _positions(self) -> Offsets:
        """Where the source stands in the partitions whose state is here (not those never restored)."""
        assert self._source is not None  # checkpoints are taken only once connected
        return {key: offset for key, offset in self._source.positions.items() if key not in self._unrestored}

    def _snapshot(self) -> dict:
        """What stays with this process: its counters, the models without a home yet, the series without a model."""
        models = [state.name for state in self.pipeline.states if state.home is None]
        return {**self.pipeline.snapshot(homed_models=False), "alerts": self.alerting.snapshot([*models, ""])}

    def _snapshot_home(self, partition: Partition) -> dict:
        """What moves with a partition: its models' state and alert state."""
        snapshot = self.pipeline.snapshot_home(partition)
        return {**snapshot, "alerts": self.alerting.snapshot_models(list(snapshot["models"]))}

    def _publish_job(self, topic: str, key: str, value: bytes) -> None:
        """Publish a retraining job or a rollback request to ``topic`` keyed by model; returns once the broker has
        it (called by the delivery job of the scheduler, one at a time)."""
        sink = self._jobs.get(topic)
        if sink is None:
            sink = self._jobs[topic] = KafkaSink(client_settings(self.config.kafka), topic, max_block_ms=10_000)
        sink.send(value, key=key.encode()).get(timeout=10)
