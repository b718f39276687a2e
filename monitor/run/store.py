"""TEMPORARY stand-in for the store helper's module (replaced at merge)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class StateStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def describe(self) -> str: ...


class DirectoryStore:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def put(self, key: str, data: bytes) -> None:
        path = self.path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def get(self, key: str) -> bytes | None:
        try:
            return (self.path / key).read_bytes()
        except FileNotFoundError:
            return None

    def describe(self) -> str:
        return str(self.path)
