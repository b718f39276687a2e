"""ConsumerProcess (the Kafka consumer in a child process) against a real Kafka-protocol broker (Tansu, 127.0.0.1).

The child runs a :class:`~monitor.ingest.kafka.KafkaSource` and sends each
batch through a pipe; these tests hold the parent's face to the same promises
as the source's own (``tests/integration/test_kafka_source.py``): records and
positions as produced, commits that a later member resumes after, a
checkpoint before partitions move on a rebalance. And the promises of having
two processes: ``close()`` is prompt and leaves no child, an orphaned child
leaves, a dead child makes ``poll`` raise instead of hanging.

Every test has its own topic and group. A group join takes about 3 s on this
broker and starting the child about 0.5 s more, so each test joins as few
times as its point needs. Every child is killed at the end of its test, even
when the test fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import termios
import textwrap
import threading
import time
from pathlib import Path

import pytest

from monitor.ingest import records as records_of
from monitor.ingest.consumer_process import BATCHES_AHEAD, ConsumerProcess
from tests.components import wait_for
from tests.integration.kafka_helpers import (
    JOIN_S,
    by_position,
    committed,
    kafka_config,
    poll_records,
    polling_in_background,
    produce,
    read_n,
)

PROMPT_S = 10.0  # what "close() is prompt" means here
ROOT = Path(__file__).resolve().parents[2]


def _kill(process: multiprocessing.Process) -> None:
    if process.is_alive():
        process.kill()
    process.join(timeout=5)


@pytest.fixture
def open_process():
    """``open_process(config, **kwargs)``: a ConsumerProcess whose child is gone at the end of the test."""
    processes: list[ConsumerProcess] = []

    def start(config, **kwargs: object) -> ConsumerProcess:
        processes.append(ConsumerProcess(config, **kwargs))
        return processes[-1]

    yield start
    for process in processes:
        _kill(process._process)  # a test that wanted it closed has closed it; here only what is left is killed
        process._connection.close()


def _numbered(indices: range) -> list[tuple[int, bytes]]:
    """Messages ``"<partition>-<index>"`` for partitions 0 and 1, interleaved."""
    return [(partition, f"{partition}-{i}".encode()) for i in indices for partition in (0, 1)]


def _closed_within(process: ConsumerProcess, seconds: float) -> float:
    """Close ``process`` and return how long it took; fail if that was ``seconds`` or more."""
    started = time.monotonic()
    process.close()
    took = time.monotonic() - started
    assert took < seconds, f"close() took {took:.1f} s"
    return took


def _gone(pid: int) -> bool:
    """The process has exited: no such process, or a zombie no one has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


# --- Records and positions --------------------------------------------------------------------------------------


def test_records_arrive_in_order_as_produced_with_positions_lag_and_assignment(kafka_broker, new_topic, open_process):
    topic = new_topic(partitions=2)
    produce(kafka_broker, topic, [(0, b"a0"), (1, b"b0"), (0, None), (1, b"b1"), (0, b'{"x": 1}'), (1, b"b2")])
    source = open_process(kafka_config(kafka_broker, topic, f"{topic}-group"))
    assert (source.positions, source.lag, source.assigned, source.last_poll) == ({}, {}, False, None)

    before = time.monotonic()
    records = read_n(source, 6)

    assert all(record.topic == topic for record in records)
    for partition in (0, 1):  # each partition in offset order
        offsets = [record.offset for record in records if record.partition == partition]
        assert offsets == sorted(offsets)
    assert by_position(records) == [
        (0, 0, b"a0"),
        (0, 1, None),  # the tombstone's value is None, not b""
        (0, 2, b'{"x": 1}'),
        (1, 0, b"b0"),
        (1, 1, b"b1"),
        (1, 2, b"b2"),
    ]
    assert source.positions == {(topic, 0): 3, (topic, 1): 3}  # the next offset to read: last + 1
    assert source.assigned
    assert source.last_poll is not None and before <= source.last_poll <= time.monotonic()

    def caught_up() -> bool:
        assert source.poll(200) == []  # nothing more comes, nothing comes twice
        return source.lag == {(topic, 0): 0, (topic, 1): 0}

    wait_for(caught_up, 10, "the lag to reach 0 on both partitions")
    assert source.positions == {(topic, 0): 3, (topic, 1): 3}
    polled = source.last_poll
    wait_for(
        lambda: source.poll(600) == [] and source.last_poll > polled, 5, "an empty batch to count as a poll", every_s=0
    )


# --- Commits and resuming ---------------------------------------------------------------------------------------


def test_committed_offsets_are_resumed_after_and_a_checkpoint_ahead_of_them_wins(kafka_broker, new_topic, open_process):
    topic = new_topic(partitions=2)
    group = f"{topic}-group"
    produce(kafka_broker, topic, _numbered(range(5)))
    first = open_process(kafka_config(kafka_broker, topic, group))
    assert len(read_n(first, 10)) == 10
    assert first.positions == {(topic, 0): 5, (topic, 1): 5}

    first.commit({**first.positions, (topic, 7): 1})  # a partition it does not own is left out, not an error
    _closed_within(first, PROMPT_S)  # the commit sent just before close() is not lost
    assert first._process.exitcode == 0
    assert [committed(kafka_broker, group, topic, p) for p in (0, 1)] == [5, 5]

    produce(kafka_broker, topic, _numbered(range(5, 8)))
    # Partition 0 has no saved state: the group's committed offset. Partition 1's saved state stands at 7.
    asked: list[list] = []

    def on_assign(partitions: list) -> dict:  # the daemon restores here, in the parent, and says where it stands
        asked.append(sorted(partitions))
        return {(topic, 1): 7}

    second = open_process(kafka_config(kafka_broker, topic, group), on_assign=on_assign)
    records = read_n(second, 3 + 1)  # an old record read again would come first, being earlier in its partition

    assert asked == [[(topic, 0), (topic, 1)]]
    assert by_position(records) == [(0, 5, b"0-5"), (0, 6, b"0-6"), (0, 7, b"0-7"), (1, 7, b"1-7")]
    assert second.positions == {(topic, 0): 8, (topic, 1): 8}


# --- Rebalance ----------------------------------------------------------------------------------------------------


def test_a_rebalance_checkpoints_in_the_parent_then_commits_so_no_record_is_read_twice(
    kafka_broker, new_topic, open_process, open_source
):
    topic = new_topic(partitions=2)
    group = f"{topic}-group"
    produce(kafka_broker, topic, _numbered(range(3)))
    members: dict = {}
    revoked_with: list[tuple[list, dict, bool]] = []

    def on_revoke(partitions: list) -> bool:  # the daemon checkpoints here; what it saves, and whether B owns any
        second = members.get("second")
        revoked_with.append((sorted(partitions), dict(members["first"].positions), bool(second and second.assigned)))
        return True  # the checkpoint was saved: the child may commit the positions

    first = members["first"] = open_process(kafka_config(kafka_broker, topic, group), on_revoke=on_revoke)
    read_by_first = read_n(first, 6)
    assert revoked_with == []  # nothing revoked while it was alone
    assert first.positions == {(topic, 0): 3, (topic, 1): 3}

    second = members["second"] = open_source(kafka_config(kafka_broker, topic, group))
    read_by_second: list = []
    with polling_in_background(first, into=read_by_first) as failures:  # the parent answers a revocation in poll
        wait_for(
            lambda: read_by_second.extend(poll_records(second, 100)) or second.assigned,
            JOIN_S,
            "the second member's share",
            every_s=0,
        )
        # on_revoke ran once, in the parent, before the second member owned anything, with the positions to save.
        assert revoked_with == [([(topic, 0), (topic, 1)], {(topic, 0): 3, (topic, 1): 3}, False)]
        # Then the child committed those positions while the partitions were still its own.
        assert [committed(kafka_broker, group, topic, p) for p in (0, 1)] == [3, 3]

        n_before = len(read_by_first) + len(read_by_second)
        produce(kafka_broker, topic, _numbered(range(3, 6)))
        wait_for(
            lambda: read_by_second.extend(poll_records(second, 100)) or len(read_by_first) + len(read_by_second) >= 12,
            JOIN_S,
            "the records sent after the rebalance",
            every_s=0,
        )
        read_by_second.extend(poll_records(second, 500))  # anything read twice would come now
        time.sleep(0.5)
    assert not failures, failures

    assert n_before == 6  # nothing was read again during the rebalance
    after = [(record.partition, "first") for record in read_by_first[6:]]
    after += [(record.partition, "second") for record in read_by_second]
    owners = {partition: {member for p, member in after if p == partition} for partition in (0, 1)}
    assert sorted(owners.values(), key=sorted) == [{"first"}, {"second"}]  # one partition each, read by one member
    # Each partition went on from the revoked position: nothing read twice, nothing skipped.
    every = [(p, i, f"{p}-{i}".encode()) for p in (0, 1) for i in range(6)]
    assert by_position(read_by_first + read_by_second) == every


def test_a_rebalance_whose_checkpoint_was_aborted_commits_nothing(kafka_broker, new_topic, open_process, open_source):
    """The daemon's checkpoint before a revocation can be aborted (a dead letter undelivered, a full disk): the
    child must then not commit the positions it read, so that another member reads those records again."""
    topic = new_topic(partitions=2)
    group = f"{topic}-group"
    produce(kafka_broker, topic, _numbered(range(3)))
    first = open_process(kafka_config(kafka_broker, topic, group), on_revoke=lambda partitions: False)  # aborted
    read_n(first, 6)
    second = open_source(kafka_config(kafka_broker, topic, group))
    read_by_second: list = []
    with polling_in_background(first) as failures:
        wait_for(
            lambda: read_by_second.extend(poll_records(second, 100)) or second.assigned,
            JOIN_S,
            "the second's share",
            every_s=0,
        )
        owned = [tp.partition for tp in second._consumer.assignment()]
        wait_for(
            lambda: read_by_second.extend(poll_records(second, 100)) or len(read_by_second) >= 3,
            JOIN_S,
            "records",
            every_s=0,
        )
    assert not failures, failures
    assert [committed(kafka_broker, group, topic, p) for p in (0, 1)] == [None, None]
    # The second member read its partition from the start: what the first read was not committed past.
    assert sorted(record.offset for record in read_by_second) == [0, 1, 2] and len(owned) == 1


def test_after_a_rebalance_positions_hold_only_the_partitions_still_owned(
    kafka_broker, new_topic, open_process, open_source
):
    topic = new_topic(partitions=2)
    group = f"{topic}-group"
    produce(kafka_broker, topic, [(0, b"a"), (1, b"b")])
    first = open_process(kafka_config(kafka_broker, topic, group))
    assert len(read_n(first, 2)) == 2
    assert first.positions == {(topic, 0): 1, (topic, 1): 1}

    second = open_source(kafka_config(kafka_broker, topic, group))
    with polling_in_background(first):
        wait_for(lambda: second.poll(100) == [] and second.assigned, JOIN_S, "the second member's share", every_s=0)
        owned_by_second = {(tp.topic, tp.partition) for tp in second._consumer.assignment()}
        assert len(owned_by_second) == 1
        # The child measures the lag over its new assignment (once a second) and sends it with a batch.
        wait_for(lambda: first.lag and not owned_by_second & set(first.lag), 5, "the lag of the new assignment")
    assert first.assigned
    # The checkpoint the daemon saves from these must not carry a partition another member now reads.
    assert not owned_by_second & set(first.positions), first.positions


# --- Closing ------------------------------------------------------------------------------------------------------


def test_close_is_prompt_and_leaves_no_child(kafka_broker, new_topic, open_process):
    topic = new_topic(partitions=1)
    produce(kafka_broker, topic, [(0, b"one")])

    starting = open_process(kafka_config(kafka_broker, topic, f"{topic}-early"))
    _closed_within(starting, PROMPT_S)  # before the child has even joined the group
    assert not starting._process.is_alive() and starting._process.exitcode == 0

    source = open_process(kafka_config(kafka_broker, topic, f"{topic}-group"))
    assert [record.value for record in read_n(source, 1)] == [b"one"]
    _closed_within(source, PROMPT_S)
    assert not source._process.is_alive()
    assert source._process.exitcode == 0  # it left by itself, not killed at close()'s deadline
    assert source._process not in multiprocessing.active_children()


def _queued_bytes(connection) -> int:
    """Bytes the child has written into the pipe that the parent has not read."""
    return int.from_bytes(fcntl.ioctl(connection.fileno(), termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)


def _settled(connection) -> int | None:
    """The bytes queued in the pipe if they stayed the same for 0.2 s (its writer is blocked), else None."""
    before = _queued_bytes(connection)
    time.sleep(0.2)
    return before if _queued_bytes(connection) == before else None


def test_close_is_prompt_while_the_child_is_blocked_sending_a_batch_never_read(kafka_broker, new_topic, open_process):
    topic = new_topic(partitions=1)
    batch, size = 100, 20_000  # batches of 2 MB: ten times what the pipe holds
    n = batch * (BATCHES_AHEAD + 4)  # the first, those received ahead, one the receiver holds, one in the pipe
    produce(kafka_broker, topic, [(0, bytes([i % 251]) * size) for i in range(n)])
    source = open_process(kafka_config(kafka_broker, topic, f"{topic}-group", max_poll_records=batch))
    first = records_of(wait_for(lambda: source.poll(200), JOIN_S, "the first batch", every_s=0))
    assert [record.offset for record in first] == list(range(batch))
    assert all(len(record.value) == size for record in first)

    # The receiver holds as many batches as it may, and one more it cannot queue; the child fetched the next
    # and is stuck writing it: the pipe is full, holds less than the batch, and stays so.
    wait_for(lambda: _queued_bytes(source._connection) > 64_000, 10, "the child to fill the pipe")
    queued = wait_for(lambda: _settled(source._connection), 10, "the child to block")  # it may end a message first
    time.sleep(0.5)
    assert _queued_bytes(source._connection) == queued < batch * size
    assert source._process.is_alive()

    _closed_within(source, PROMPT_S)
    assert not source._process.is_alive() and source._process.exitcode == 0


def test_close_is_prompt_while_a_revocation_waits_for_the_checkpoint(
    kafka_broker, new_topic, open_process, open_source
):
    topic = new_topic(partitions=2)
    group = f"{topic}-group"
    produce(kafka_broker, topic, [(0, b"a"), (1, b"b")])

    def on_revoke(partitions: list) -> bool:  # the checkpoint fails (a full disk): poll raises, the daemon closes
        raise OSError("no space left on device")

    first = open_process(kafka_config(kafka_broker, topic, group), on_revoke=on_revoke)
    assert len(read_n(first, 2)) == 2
    second = open_source(kafka_config(kafka_broker, topic, group))
    closer = threading.Thread(target=first.close, daemon=True)
    with polling_in_background(second):  # its join request sets the rebalance off
        try:
            with pytest.raises(OSError, match="no space"):
                deadline = time.monotonic() + JOIN_S
                while time.monotonic() < deadline:
                    first.poll(100)

            started = time.monotonic()
            closer.start()
            closer.join(timeout=5)  # a close takes about half a second otherwise
            assert not closer.is_alive(), f"close() still waiting after {time.monotonic() - started:.1f} s"
            assert first._process.exitcode == 0  # the child left the group by itself
        finally:
            _kill(first._process)
            if closer.is_alive():
                closer.join(timeout=5)


# --- One process dies ---------------------------------------------------------------------------------------------

_ORPHAN_PARENT = textwrap.dedent(
    """
    import sys

    from monitor.config import parse_config
    from monitor.ingest.consumer_process import BATCHES_AHEAD, ConsumerProcess

    if __name__ == "__main__":
        bootstrap_servers, topic, group = sys.argv[1:4]
        section = {
            "bootstrap_servers": bootstrap_servers,
            "topics": [topic],
            "group_id": group,
            "max_poll_interval": "10s",
            "session_timeout": "6s",
        }
        source = ConsumerProcess(parse_config({"kafka": section}).kafka)
        print(source._process.pid, flush=True)
        announced = False
        while True:
            records = source.poll(200)
            if records and not announced:
                print("consuming", flush=True)
                announced = True
    """
)


_INTERRUPTED_AT_START = textwrap.dedent(
    """
    import os
    import signal
    import sys

    from monitor.config import parse_config
    from monitor.ingest.consumer_process import ConsumerProcess

    if __name__ == "__main__":
        bootstrap_servers, topic, group = sys.argv[1:4]
        section = {"bootstrap_servers": bootstrap_servers, "topics": [topic], "group_id": group,
                   "max_poll_interval": "10s", "session_timeout": "6s"}
        source = ConsumerProcess(parse_config({"kafka": section}).kafka)  # this process's first child
        for signum in (signal.SIGINT, signal.SIGTERM):
            os.kill(source._process.pid, signum)  # at once: the child has not imported anything yet
        batches = []
        while not batches:
            batches = source.poll(200)  # raises if the child has died
        print(batches[0].values, flush=True)
        os.kill(source._process.pid, signal.SIGINT)  # and once it consumes
        source.poll(500)
        source.close()
        print(source._process.exitcode, flush=True)
    """
)


def test_a_ctrl_c_while_the_child_starts_does_not_stop_it(kafka_broker, new_topic, tmp_path):
    """Ctrl-C in a terminal reaches the whole process group, and may come before the child has set its signals
    aside (it imports for about a second; it then died of a KeyboardInterrupt, and poll raised): it is born with
    SIGINT and SIGTERM blocked, then ignores them. In a fresh process, as the demo's: there, starting the first
    child also starts multiprocessing's resource tracker, which unblocked both signals on its way."""
    topic = new_topic(partitions=1)
    produce(kafka_broker, topic, [(0, b"one")])
    script = tmp_path / "interrupted_at_start.py"
    script.write_text(_INTERRUPTED_AT_START)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, str(script), kafka_broker.bootstrap_servers, topic, f"{topic}-group"]
    done = subprocess.run(command, capture_output=True, cwd=ROOT, env=env, timeout=JOIN_S + PROMPT_S)
    assert done.stdout.decode().splitlines() == ["[b'one']", "0"], done.stderr.decode()


def test_the_child_of_a_killed_parent_leaves_the_group_and_exits(kafka_broker, new_topic, tmp_path):
    topic = new_topic(partitions=1)
    produce(kafka_broker, topic, [(0, b"one")])
    script = tmp_path / "orphan_parent.py"
    script.write_text(_ORPHAN_PARENT)
    stderr_path = tmp_path / "stderr.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with stderr_path.open("wb") as stderr:
        parent = subprocess.Popen(
            [sys.executable, str(script), kafka_broker.bootstrap_servers, topic, f"{topic}-group"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=ROOT,
            env=env,
        )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line.decode().strip()) for line in parent.stdout], daemon=True)
    reader.start()

    def next_line() -> str:
        try:
            return lines.get(timeout=JOIN_S)
        except queue.Empty:
            pytest.fail(f"the parent said nothing; its stderr:\n{stderr_path.read_text(errors='replace')}")

    child = None
    try:
        child = int(next_line())
        assert next_line() == "consuming"
        assert not _gone(child)

        parent.kill()
        parent.wait(timeout=5)
        wait_for(lambda: _gone(child), 10, "the orphaned child to exit")
        log = stderr_path.read_text(errors="replace")
        assert "the daemon is gone; leaving the group" in log, log  # it left the group on its way out
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and not _gone(child):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        reader.join(timeout=5)  # the child holds the pipe's write end too: EOF once both are gone
        parent.stdout.close()


def test_poll_raises_when_the_child_dies(kafka_broker, new_topic, open_process):
    topic = new_topic(partitions=1)
    source = open_process(kafka_config(kafka_broker, topic, f"{topic}-group"))
    # The child sends a batch, empty while it joins, every half second: it runs.
    wait_for(lambda: source.poll(200) == [] and source.last_poll is not None, JOIN_S, "the first batch", every_s=0)

    os.kill(source._process.pid, signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="consumer process") as raised:
        while time.monotonic() - started < 10:  # batches already in the pipe may come first
            source.poll(200)
    assert time.monotonic() - started < 5
    assert "exited (-9)" in str(raised.value)
    with pytest.raises(RuntimeError, match="exited"):
        source.poll(0)  # and so does every later poll, at once

    _closed_within(source, 5)  # closing after the death neither raises nor waits for a deadline
    assert not source._process.is_alive() and source._process.exitcode == -signal.SIGKILL
