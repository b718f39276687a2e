"""Checkpoints: the pipeline's state and the Kafka offsets it covers, saved together.

A restarted daemon restores the state and resumes reading at the saved
offsets, so every event is counted once however the process ended (even
SIGKILL): events applied after the last checkpoint are simply read again.
Each partition has a checkpoint of its own in the state store
(:class:`PartitionCheckpoints`: its offset and the models at home there, which
move with it to whichever replica the group assigns it), and each process one
in its state directory (:class:`CheckpointStore`: its own counters). Every
one is written atomically (temp file, fsync, rename, fsync of the directory;
or one S3 PUT), so a crash leaves the previous checkpoint or the new one,
never a torn one. The daemon commits its offsets to the group only after the
checkpoints that cover them are saved.

The format is msgpack (numpy arrays as extension values), not pickle: a
state directory is data and loading it runs no code. A checkpoint remembers a
fingerprint of the state layout (a process's own, also of the model limit;
a partition's, :data:`PARTITION_FINGERPRINT`, of the layout alone); when that
changes, the daemon keeps the offsets and starts the state afresh rather than forcing old
columns into new windows. Each model's state carries a fingerprint of its own
shape (window, features, bias or slice attributes, reference, ...): a config change
resets only the models it touches (:meth:`monitor.state.model.ModelStates.restore`).

>>> import tempfile
>>> from monitor.config import parse_config
>>> from monitor.pipeline import Pipeline
>>> config = parse_config({"state": {"dir": tempfile.mkdtemp()}})
>>> store = CheckpointStore(config.state.dir)
>>> store.save(Checkpoint({("llm-events", 0): 42}, Pipeline(config).snapshot(), config_fingerprint(config)))
>>> store.load().offsets
{('llm-events', 0): 42}
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import msgspec
import numpy as np

from monitor.config import Config
from monitor.ingest import Partition
from monitor.run.store import DirectoryStore, StateStore

__all__ = [
    "PARTITION_FINGERPRINT",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "PartitionCheckpoints",
    "config_fingerprint",
]

_FORMAT = "driftwarden-checkpoint"
_VERSION = 1
_NUMERIC_ARRAY = 1  # msgpack extension codes
_OBJECT_ARRAY = 2


class CheckpointError(RuntimeError):
    """A checkpoint file that exists but cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class Checkpoint:
    """``offsets`` are the next offsets to read, per (topic, partition); ``pipeline`` a Pipeline snapshot."""

    offsets: dict[tuple[str, int], int]
    pipeline: dict
    config_fingerprint: str
    created_at: float = field(default_factory=time.time)


#: The settings that shape the saved state as a whole; what shapes each model's state is in its own
#: fingerprint (:attr:`monitor.state.model.ModelState.fingerprint`), so a change there resets that model only.
_SHAPING = {"limits": {"max_models"}}


#: The layout of the saved state; bump it when a release changes what the state holds, so that an
#: upgraded daemon starts afresh (keeping the offsets) instead of failing on an old checkpoint.
STATE_LAYOUT = 3


def config_fingerprint(config: Config) -> str:
    """A digest of the state layout and of the settings whose change makes all saved state unusable."""
    shaping = {**config.model_dump(mode="json", include=_SHAPING), "layout": STATE_LAYOUT}
    return hashlib.sha256(msgspec.json.encode(shaping, order="sorted")).hexdigest()[:16]


#: What a partition's checkpoint is stamped with: the layout alone. Its models carry their own fingerprints,
#: and the settings of :func:`config_fingerprint` shape only a replica's own part (the models it admitted).
PARTITION_FINGERPRINT = hashlib.sha256(msgspec.json.encode({"layout": STATE_LAYOUT})).hexdigest()[:16]


class CheckpointStore:
    """The one checkpoint file in a state directory: this process's own (see :class:`PartitionCheckpoints`)."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.path = self.directory / "checkpoint.msgpack"

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the checkpoint atomically and durably."""
        DirectoryStore(self.directory).put(self.path.name, _encode(checkpoint))

    def load(self) -> Checkpoint | None:
        """The saved checkpoint, or None if there is none yet."""
        payload = DirectoryStore(self.directory).get(self.path.name)
        return None if payload is None else _decode(payload, str(self.path))


class PartitionCheckpoints:
    """One checkpoint per partition in a store that every replica reaches: the partition's offset and the
    state of the models at home there, which follow the partition to whichever replica the group assigns.

    Keys are ``<group>/<topic>/<partition>.msgpack`` (the group id percent-encoded, and its dots too if it
    is ``.`` or ``..``, which a key may not name), so that several deployments can share a bucket.
    """

    def __init__(self, store: StateStore, group_id: str):
        self.store = store
        group = quote(group_id, safe="")
        self.group = group.replace(".", "%2E") if group in (".", "..") else group

    def key(self, partition: Partition) -> str:
        topic, number = partition
        return f"{self.group}/{topic}/{number}.msgpack"

    def claim_home(self, model: str, home: Partition) -> Partition | None:
        """Record ``home`` as the home of ``model`` unless the store holds one already; the home it held (None
        if there was none: claimed now; a claim made at the same time elsewhere shows on the next call)."""
        key = f"{self.group}/homes/{hashlib.sha256(model.encode()).hexdigest()[:32]}.json"
        recorded = self.store.get(key)
        if recorded is None:
            self.store.put(key, msgspec.json.encode(home))
            return None
        try:
            topic, number = msgspec.json.decode(recorded, type=tuple[str, int])
        except msgspec.DecodeError:
            self.store.put(key, msgspec.json.encode(home))  # not ours to read: taken over
            return None
        return (topic, number)

    def request_promotion(self, model: str, version: str | None) -> str:
        """Ask the replica that holds ``model`` to promote its reference from ``version``'s next calls (None: the
        baseline's): recorded under ``<group>/promotions.json`` (one request a model, the latest), which every
        replica reads at each checkpoint (:meth:`promotions`); the request's id."""
        requests = self.promotions()
        request_id = uuid.uuid4().hex
        requests[model] = {"version": version, "id": request_id, "requested_at": time.time()}
        self.store.put(self._promotions_key, msgspec.json.encode(requests))
        return request_id

    def promotions(self) -> dict[str, dict]:
        """The reference promotions asked for, by model (see :meth:`request_promotion`); none if unreadable."""
        recorded = self.store.get(self._promotions_key)
        try:
            return msgspec.json.decode(recorded, type=dict[str, dict]) if recorded is not None else {}
        except msgspec.DecodeError:
            return {}

    def promoted(self, done: dict[str, str]) -> None:
        """Drop the requests applied (model -> request id) from the record, unless a newer one replaced them."""
        requests = self.promotions()
        left = {model: request for model, request in requests.items() if done.get(model) != request.get("id")}
        if left != requests:
            self.store.put(self._promotions_key, msgspec.json.encode(left))

    @property
    def _promotions_key(self) -> str:
        return f"{self.group}/promotions.json"

    def save(self, checkpoint: Checkpoint) -> None:
        """Save the checkpoint of one partition (its ``offsets`` hold that partition alone)."""
        (partition,) = checkpoint.offsets
        self.store.put(self.key(partition), _encode(checkpoint))

    def load(self, partition: Partition) -> Checkpoint | None:
        """The partition's saved checkpoint, or None if it has none yet; :class:`CheckpointError` if the object
        is not one (garbage, or the checkpoint of another partition: say, copied under the wrong key)."""
        key = self.key(partition)
        payload = self.store.get(key)
        if payload is None:
            return None
        where = f"{self.store.describe()}: {key}"
        checkpoint = _decode(payload, where)
        if list(checkpoint.offsets) != [partition]:
            raise CheckpointError(f"{where}: holds the offsets of {list(checkpoint.offsets)}, not of {partition}")
        return checkpoint


def _encode(checkpoint: Checkpoint) -> bytes:
    document = {
        "format": _FORMAT,
        "version": _VERSION,
        "created_at": checkpoint.created_at,
        "config_fingerprint": checkpoint.config_fingerprint,
        "offsets": [[topic, partition, offset] for (topic, partition), offset in checkpoint.offsets.items()],
        "pipeline": checkpoint.pipeline,
    }
    return msgspec.msgpack.encode(document, enc_hook=_encode_array)


def _decode(payload: bytes, where: str) -> Checkpoint:
    try:
        document = msgspec.msgpack.decode(payload, ext_hook=_decode_array)
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            raise ValueError("not a driftwarden checkpoint")
        if document["version"] != _VERSION:
            raise ValueError(f"format version {document['version']}, this driftwarden reads {_VERSION}")
        offsets = {(topic, partition): offset for topic, partition, offset in document["offsets"]}
        if not all(type(topic) is str and type(number) is int and type(offset) is int and offset >= 0
                   for (topic, number), offset in offsets.items()):  # fmt: skip
            raise ValueError(f"offsets that are not (topic, partition, offset): {document['offsets']!r:.200}")
        if not isinstance(document["pipeline"], dict):
            raise ValueError("the state is not a map")
        return Checkpoint(offsets, document["pipeline"], document["config_fingerprint"], document["created_at"])
    except (msgspec.DecodeError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{where}: unreadable checkpoint ({error}); move it aside to start from the committed offsets"
        ) from None


def _encode_array(value: object) -> msgspec.msgpack.Ext:
    if not isinstance(value, np.ndarray):
        raise NotImplementedError(f"cannot checkpoint a {type(value).__name__}")
    if value.dtype == object:
        return msgspec.msgpack.Ext(_OBJECT_ARRAY, msgspec.msgpack.encode(value.tolist()))
    header = [value.dtype.str, list(value.shape)]
    return msgspec.msgpack.Ext(_NUMERIC_ARRAY, msgspec.msgpack.encode([header, np.ascontiguousarray(value).data]))


def _decode_array(code: int, data: memoryview) -> np.ndarray:
    if code == _OBJECT_ARRAY:
        values = msgspec.msgpack.decode(data)
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array
    if code == _NUMERIC_ARRAY:
        (dtype, shape), buffer = msgspec.msgpack.decode(data)
        return np.frombuffer(buffer, dtype=np.dtype(dtype)).reshape(shape).copy()
    raise ValueError(f"unknown extension type {code}")
