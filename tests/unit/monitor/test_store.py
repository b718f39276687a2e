"""The directory state store: atomic replacement (a real crash between write and rename), key checks, and
the choice of store from the config. The S3 store is tested against an S3 server in
``tests/integration/test_state_store.py``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from monitor.config import parse_config
from monitor.run.store import DirectoryStore, S3Store, open_store

ROOT = Path(__file__).resolve().parents[3]


def test_values_round_trip_under_nested_keys(tmp_path):
    store = DirectoryStore(tmp_path / "state")
    store.put("group/llm-events/0.msgpack", b"first")
    store.put("group/llm-events/0.msgpack", b"second")
    store.put("group/llm.events/10.msgpack", b"")
    assert store.get("group/llm-events/0.msgpack") == b"second"
    assert store.get("group/llm.events/10.msgpack") == b""
    assert store.get("group/llm-events/1.msgpack") is None
    assert store.get("other/llm-events/0.msgpack") is None
    assert sorted(os.listdir(tmp_path / "state" / "group" / "llm-events")) == ["0.msgpack"], "no temp file left"
    assert store.describe() == f"directory {tmp_path / 'state'}"


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../outside", "group/../../outside", "group/./0", "group//0", "group/", "a\\b", "a\0b"],
)
def test_keys_that_could_escape_the_directory_or_name_nothing_are_refused(tmp_path, key):
    store = DirectoryStore(tmp_path / "state")
    with pytest.raises(ValueError, match="bad state key"):
        store.put(key, b"x")
    with pytest.raises(ValueError, match="bad state key"):
        store.get(key)
    assert not (tmp_path / "state").exists()


def _crash_during_put(directory: Path, key: str, data: bytes, at: str) -> subprocess.CompletedProcess:
    """A process that SIGKILLs itself inside ``put`` just before ``os.<at>`` runs."""
    script = textwrap.dedent(f"""
        import os, signal
        from monitor.run.store import DirectoryStore
        def crash(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        os.{at} = crash
        DirectoryStore({str(directory)!r}).put({key!r}, {data!r})
    """)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, timeout=60)


def test_a_crash_between_the_temp_write_and_the_rename_leaves_the_previous_value(tmp_path):
    store = DirectoryStore(tmp_path)
    store.put("group/t/0.msgpack", b"old value")
    result = _crash_during_put(tmp_path, "group/t/0.msgpack", b"new value" * 1000, at="replace")
    assert result.returncode == -signal.SIGKILL, result.stderr
    leftover = tmp_path / "group" / "t" / ".0.msgpack.tmp"
    assert leftover.read_bytes() == b"new value" * 1000, "the crash came after the temp file was written"

    assert store.get("group/t/0.msgpack") == b"old value"
    store.put("group/t/0.msgpack", b"next value")  # the next put overwrites the leftover and tidies up
    assert store.get("group/t/0.msgpack") == b"next value"
    assert sorted(os.listdir(tmp_path / "group" / "t")) == ["0.msgpack"]


def test_a_crash_before_the_first_value_is_renamed_leaves_no_value(tmp_path):
    result = _crash_during_put(tmp_path, "group/t/0.msgpack", b"first", at="replace")
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert DirectoryStore(tmp_path).get("group/t/0.msgpack") is None


def test_a_failed_fsync_raises_and_keeps_the_previous_value(tmp_path, monkeypatch):
    store = DirectoryStore(tmp_path)
    store.put("k", b"old")

    def full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full)
        with pytest.raises(OSError, match="No space left"):
            store.put("k", b"new")
    assert store.get("k") == b"old"


def test_open_store_follows_state_store(tmp_path):
    local = open_store(parse_config({"state": {"dir": str(tmp_path)}}).state)
    assert isinstance(local, DirectoryStore) and local.path == tmp_path
    config = parse_config({"state": {"store": "s3", "s3": {"bucket": "b", "prefix": "dw/", "region": "eu-west-1"}}})
    remote = open_store(config.state)
    assert isinstance(remote, S3Store)
    assert (remote.bucket, remote.prefix, remote.region) == ("b", "dw/", "eu-west-1")
    assert remote.describe() == "s3://b/dw/ (eu-west-1)"
