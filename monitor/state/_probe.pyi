"""Linear probing into the label store's index (monitor/state/_probe.c; see monitor/state/labels.py)."""

import numpy as np

def insert(table: np.ndarray, hashes: np.ndarray, positions: np.ndarray, /) -> None: ...
def find(
    table: np.ndarray,
    hashes: np.ndarray,
    keys_0: np.ndarray,
    keys_1: np.ndarray,
    n_held: int,
    newest: int,
    capacity: int,
    rows: np.ndarray,
    /,
) -> None: ...
def hashes(keys: list, seed: int, prime: int, mix_1: int, mix_2: int, /) -> bytes | None: ...
