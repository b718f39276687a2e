"""The durable store that state documents live in: bytes by key, replaced whole.

A :class:`StateStore` has two verbs. ``put(key, data)`` is atomic and
durable: once it returns, a reader gets all of ``data``; if it raises (or the
process dies meanwhile), a reader gets the previous value. ``get(key)`` returns
the bytes, or None for a key never written. The store knows nothing of what the
bytes mean; the caller builds the keys (``/`` separates their parts).

- :class:`DirectoryStore` (``state.store: local``): files under ``state.dir``,
  each written to a temp file, fsynced, renamed over the old one, and the
  directory fsynced. One replica: a pod's directory cannot follow a partition
  to another pod.
- :class:`S3Store` (``state.store: s3``): one object per key in an
  S3-compatible bucket (AWS, MinIO, Ceph, R2) through boto3. A PUT replaces an
  object whole, so a reader sees the old or the new one. Every replica of a
  group reaches it, so a model's state follows its partition.

A store that cannot do its work raises :class:`OSError` (:class:`StoreError`
for S3) naming the place and the reason, never a credential: the
checkpointer takes that as "not saved, commit nothing".

>>> import tempfile
>>> store = DirectoryStore(tempfile.mkdtemp())
>>> store.put("group/llm-events/0.msgpack", b"state")
>>> store.get("group/llm-events/0.msgpack"), store.get("group/llm-events/1.msgpack")
(b'state', None)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from monitor.config import StateConfig

__all__ = ["DirectoryStore", "S3Store", "StateStore", "StoreError", "key_parts", "open_store"]


class StoreError(OSError):
    """The object store did not do what was asked; the message names the object and the reason."""


class StateStore(Protocol):
    """Bytes by key, each ``put`` atomic and durable."""

    def put(self, key: str, data: bytes) -> None:
        """Replace the value of ``key``: afterwards a reader gets all of ``data``, before it the previous value."""

    def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None if it was never written."""

    def describe(self) -> str:
        """Where the values live, for log lines (no secrets)."""


def key_parts(key: str) -> list[str]:
    """The parts of a store key; ValueError for one that could escape its store or name nothing.

    >>> key_parts("group/llm-events/3.msgpack")
    ['group', 'llm-events', '3.msgpack']
    >>> key_parts("group/../etc")
    Traceback (most recent call last):
    ...
    ValueError: bad state key 'group/../etc': parts must not be empty, '.' or '..'
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"bad state key {key!r}: must be a non-empty string")
    if key.startswith("/") or "\\" in key or "\0" in key:
        raise ValueError(f"bad state key {key!r}: must be relative, without backslashes or NUL")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"bad state key {key!r}: parts must not be empty, '.' or '..'")
    return parts


class DirectoryStore:
    """Files under ``path``; the key ``a/b/c`` is the file ``path/a/b/c``.

    A value is written to a temp file beside its target (``.NAME.tmp``, which
    no reader looks at), flushed to disk, renamed over the target and the directory
    flushed, so that a crash or power cut at any point leaves the old value or
    the new one. A key has one writer at a time (the owner of its partition):
    two concurrent puts of one key would share the temp file.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def _path(self, key: str) -> Path:
        return self.path.joinpath(*key_parts(key))

    def put(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")  # a crash's leftover is overwritten by the next put
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def describe(self) -> str:
        return f"directory {self.path}"


class S3Store:
    """One object per key, ``<prefix><key>``, in an S3-compatible bucket, through boto3.

    Credentials come from boto3's standard chain (``AWS_*`` variables, a web
    identity token as IRSA mounts it, the instance or task role), never from
    the config file. Every request is bounded: ``connect_timeout_s`` and
    ``read_timeout_s`` per attempt, ``max_attempts`` attempts with botocore's
    standard retry mode (exponential backoff on throttling, 5xx and connection
    errors). A failure raises :class:`StoreError`.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 20.0,
        max_attempts: int = 3,
    ):
        import boto3  # the optional extra: imported only when this store is chosen
        from botocore.config import Config as BotoConfig
        from botocore.exceptions import BotoCoreError, ClientError

        self.bucket, self.prefix, self.endpoint_url, self.region = bucket, prefix, endpoint_url, region
        settings = BotoConfig(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"mode": "standard", "max_attempts": max_attempts},
        )
        session = boto3.session.Session()
        self._client = session.client("s3", endpoint_url=endpoint_url, region_name=region, config=settings)
        self._failures = (BotoCoreError, ClientError)

    def _object(self, key: str) -> str:
        key_parts(key)
        return self.prefix + key

    def put(self, key: str, data: bytes) -> None:
        name = self._object(key)
        try:
            self._client.put_object(Bucket=self.bucket, Key=name, Body=data)
        except self._failures as error:
            raise self._error("put", name, error) from None

    def get(self, key: str) -> bytes | None:
        name = self._object(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=name)
            data = response["Body"].read()
        except self._client.exceptions.NoSuchKey:
            return None
        except self._failures as error:
            raise self._error("get", name, error) from None
        if len(data) != response["ContentLength"]:
            raise StoreError(f"s3://{self.bucket}/{name}: cannot get: read {len(data)} of {response['ContentLength']}")
        return data

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        region = f" ({self.region})" if self.region else ""
        return f"s3://{self.bucket}/{self.prefix}{where}{region}"

    def _error(self, verb: str, name: str, error: Exception) -> StoreError:
        response = getattr(error, "response", None)  # a ClientError: the service's answer
        if response is not None:
            details = response.get("Error", {})
            reason = f"{details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")
        else:  # no answer: connection, timeout, credentials
            reason = str(error)
        return StoreError(f"s3://{self.bucket}/{name}: cannot {verb}: {reason}")


def open_store(state: StateConfig) -> StateStore:
    """The store ``state.store`` names: the directory ``state.dir``, or the bucket of ``state.s3``."""
    if state.store == "s3":
        assert state.s3 is not None  # the config requires it with store s3
        s3 = state.s3
        return S3Store(s3.bucket, s3.prefix, s3.endpoint_url, s3.region)
    return DirectoryStore(state.dir)
