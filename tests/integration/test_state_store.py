"""The S3 state store against a real S3-protocol server on loopback (moto's, as ``tests/components.py`` starts it):
round trips, a missing key, a missing bucket, a server that is gone, and overwrites that readers never see torn."""

from __future__ import annotations

import threading
import time
import uuid

import boto3
import pytest

from monitor.run.store import S3Store, StoreError
from tests.components import S3Server


def _store(server: S3Server, **settings: object) -> S3Store:
    prefix = f"test-{uuid.uuid4().hex[:8]}/"
    return S3Store(server.bucket, prefix, server.url, "us-east-1", **settings)


def test_a_5_mb_value_round_trips_to_one_object_under_the_prefix(s3_credentials):
    store = _store(s3_credentials)
    payload = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    store.put("group/llm-events/0.msgpack", payload)
    assert store.get("group/llm-events/0.msgpack") == payload

    client = boto3.client("s3", endpoint_url=s3_credentials.url, region_name="us-east-1")
    listed = client.list_objects_v2(Bucket=s3_credentials.bucket, Prefix=store.prefix)["Contents"]
    assert [(item["Key"], item["Size"]) for item in listed] == [(f"{store.prefix}group/llm-events/0.msgpack", 5 << 20)]
    assert store.describe() == f"s3://{s3_credentials.bucket}/{store.prefix} at {s3_credentials.url} (us-east-1)"


def test_a_missing_key_is_none_and_bad_keys_are_refused(s3_credentials):
    store = _store(s3_credentials)
    assert store.get("group/llm-events/7.msgpack") is None
    with pytest.raises(ValueError, match="bad state key"):
        store.put("group/../other-prefix/0.msgpack", b"x")


def test_a_missing_bucket_is_an_error_not_an_empty_store(s3_credentials):
    store = S3Store(f"absent-{uuid.uuid4().hex[:8]}", "", s3_credentials.url, "us-east-1")
    with pytest.raises(StoreError, match=r"s3://absent-\w+/k: cannot get: NoSuchBucket"):
        store.get("k")
    with pytest.raises(OSError, match=r"cannot put: NoSuchBucket"):
        store.put("k", b"x")


def test_a_stopped_server_raises_oserror_naming_the_object_within_the_timeouts(monkeypatch):
    server = S3Server()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTSTOPPED")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-never-shown")
    store = _store(server, connect_timeout_s=1.0, read_timeout_s=2.0, max_attempts=3)
    store.put("group/t/0.msgpack", b"saved")
    server.stop()

    for operation in (lambda: store.put("group/t/0.msgpack", b"lost"), lambda: store.get("group/t/0.msgpack")):
        started = time.monotonic()
        with pytest.raises(OSError) as raised:
            operation()
        elapsed = time.monotonic() - started
        message = str(raised.value)
        assert message.startswith(f"s3://{server.bucket}/{store.prefix}group/t/0.msgpack: cannot ")
        assert "Could not connect to the endpoint URL" in message
        assert "secret-never-shown" not in message and "AKIDTESTSTOPPED" not in message
        # three attempts' timeouts, and the standard mode's backoff between them (at most 1 s, then 2 s)
        assert elapsed < 3 * (1.0 + 2.0) + 1 + 2, f"{elapsed:.1f} s: beyond three attempts' timeouts and backoff"


def test_readers_see_the_old_value_or_the_new_one_never_a_torn_one(s3_credentials):
    store = _store(s3_credentials)
    size = 1 << 20
    store.put("group/t/0.msgpack", bytes([0]) * size)
    seen: set[int] = set()
    torn: list[str] = []
    writing = threading.Event()
    writing.set()

    def read() -> None:
        while writing.is_set():
            value = store.get("group/t/0.msgpack")
            if value is None or len(value) != size or value.count(value[0]) != size:
                torn.append("missing" if value is None else f"{len(value)} bytes, mixed")
            else:
                seen.add(value[0])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version in range(1, 21):
            store.put("group/t/0.msgpack", bytes([version]) * size)
    finally:
        writing.clear()
        reader.join()
    assert torn == []
    assert len(seen) > 1, "the reader overlapped the overwrites"
    assert store.get("group/t/0.msgpack") == bytes([20]) * size
