"""ADWIN's cut test in C (detectors/_adwin_cut.c; see ADWIN._cut_found in detectors/adwin.py)."""

def cut_found(
    totals: list[list[float]], width: int, total: float, variance: float, delta: float, least: int, /
) -> bool: ...
