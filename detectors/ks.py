"""Two-sided two-sample Kolmogorov-Smirnov test with the asymptotic p-value."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import smirnov
from scipy.stats import kstwo

from detectors._merge import SortedSampleTest

__all__ = ["KSTest", "cdf_steps", "ks_gap", "ks_p_value", "ks_statistic"]

#: scipy's cut-offs in ``kstwo.sf`` (``scipy/stats/_ksstats.py``, Simard and L'Ecuyer): at most this many values
#: its exact algorithms; above it, with ``n * d**2`` at least ``SMIRNOV_FROM``, twice the one-sided tail (a ufunc),
#: else Pelz and Good's series, unless ``n * d**1.5`` is at most ``DURBIN_UP_TO`` (the exact Durbin matrix again).
EXACT_UP_TO, SMIRNOV_FROM, DURBIN_UP_TO = 140, 2.2, 1.4
#: :class:`_Grid`'s cells: this many per reference value (16 or 32 bytes each), at most this many in all (in the cache);
#: and at most this many reference values in one cell, else a window is sorted (a normal reference of 5,000 values
#: crowds 5 into a cell: with a 100,000-value window the grid would cost what the sort does).
CELLS_PER_VALUE, MAX_CELLS, MAX_PER_CELL = 16, 1 << 14, 4


class KSTest(SortedSampleTest):
    """Largest gap between the empirical CDFs, and its p-value; drift when ``p_value < threshold``.

    Equals ``scipy.stats.ks_2samp(reference, window, method="asymp")``, ties
    included: the statistic is :func:`ks_statistic`, and the p-value
    :func:`ks_p_value`, which is ``scipy.stats.kstwo.sf(d, round(m * n / (m + n)))``.
    ``fit`` sorts the reference once; a window costs one sort and binary searches of the smaller sample's values,
    or, when it is the larger sample and the reference's values are spread out, no sort at all (:class:`_Grid`:
    for 5,000 values against 250, 0.09 ms at a load of 2 where comparing every value with its cell's reference
    values took 0.12 ms, and a sort 0.19 ms in a quieter moment; the same counts).

    Parameters
    ----------
    threshold
        Significance level; None takes 0.05.

    Notes
    -----
    The daemon always uses the asymptotic distribution. scipy's default
    ``method="auto"`` (which Evidently calls) switches to an exact O(m * n)
    computation when both samples have at most 10,000 values, so small samples'
    p-values differ from Evidently's somewhat; the statistic is the same.
    Evidently flags drift at ``p_value <= threshold``, the base class at ``<``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> test = KSTest().fit(rng.normal(size=2_000))
    >>> result = test.score(rng.normal(loc=0.2, size=500))
    >>> round(result.statistic, 4), round(result.p_value, 6), result.drifted
    (0.0785, 0.013663, True)
    """

    name = "ks"
    has_p_value = True
    default_threshold = 0.05

    def _reset(self) -> None:
        super()._reset()
        self._grid: _Grid | None = None

    def _fit(self, reference: np.ndarray) -> None:
        super()._fit(reference)
        self._grid = _Grid.fit(self._fitted(self._reference))

    def _statistic(self, window: np.ndarray) -> tuple[float, float, float]:
        reference = self._fitted(self._reference)
        window = np.asarray(window, dtype=float)
        m, n = reference.size, window.size
        d = self._grid.statistic(window) if self._grid is not None and m <= n else None
        if d is None:
            d = ks_statistic(reference, np.sort(window))
        return d, ks_p_value(d, round(m * n / (m + n))), 0.0


class _Grid:
    """Where a window's values fall among a sorted reference's, without sorting the window: for each reference
    value, how many window values are at most it and below it, as binary searches into the sorted window count.

    The reference's range is cut into equal cells; a value's cell is ``floor((x - low) * scale)``, clipped, a
    non-decreasing function of ``x`` however it rounds, so every reference value of an earlier cell is below
    ``x`` and every one of a later cell above it. A window value in a cell without reference values (nine in
    ten of them) has as many below it, and at most it, as there are before its cell: one ``np.bincount`` counts
    them all. The others have those of their cell too, at most :data:`MAX_PER_CELL` compared one by one (a
    later cell's value, or the padding's infinity, never counts). Exact for finite and infinite values; a
    window with NaN is left to the sort.

    >>> grid = _Grid.fit(np.array([1.0, 2.0, 2.0, 4.0]))
    >>> [count.tolist() for count in grid.counts(np.array([2.0, 3.0, 0.5, 2.0, 9.0]))]
    [[1, 3, 3, 4], [1, 1, 1, 4]]
    """

    def __init__(self, reference: np.ndarray, low: float, scale: float, n_cells: int):
        self.reference = reference
        self.low = low
        self.scale = scale
        self.n_cells = n_cells
        m = reference.size
        cells = self.cell(reference)
        held = np.bincount(cells, minlength=n_cells)
        self.per_cell = int(held.max())
        first = np.searchsorted(cells, np.arange(n_cells), "left")  # the reference values before each cell
        # By cell: the values before it, plus m + 1 for a cell that holds some (a byte a cell up to 127 values, two up
        # to 32,767).
        self.table = np.where(held > 0, first + m + 1, first).astype(np.min_scalar_type(2 * m + 1))
        self.padded = np.concatenate([reference, np.full(self.per_cell, np.inf)])
        self.steps = cdf_steps(m)

    @classmethod
    def fit(cls, reference: np.ndarray) -> _Grid | None:
        """The grid of a sorted reference, or None when its values crowd into cells (ties, outliers)."""
        low, span = float(reference[0]), float(reference[-1] - reference[0])
        n_cells = min(CELLS_PER_VALUE * reference.size, MAX_CELLS)
        if not 0.0 < span < math.inf or not math.isfinite(n_cells / span):
            return None
        grid = cls(reference, low, n_cells / span, n_cells)
        return grid if grid.per_cell <= MAX_PER_CELL else None

    def cell(self, values: np.ndarray) -> np.ndarray:
        """Each value's cell (NaN's the last): clipped before it is truncated, which is then the floor."""
        cells = (values - self.low) * self.scale
        np.fmin(cells, self.n_cells - 1.0, out=cells)
        np.fmax(cells, 0.0, out=cells)
        return cells.astype(np.int32)

    def statistic(self, window: np.ndarray) -> float | None:
        """The KS statistic of ``window`` against the reference (:func:`ks_gap`), None if a value is NaN."""
        counts = self.counts(window)
        return None if counts is None else ks_gap(*counts, window.size, self.steps)

    def counts(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """For each reference value, how many of ``window``'s are at most it and below it (None if one is NaN)."""
        m = self.reference.size
        found = self.table.take(self.cell(window))
        inside = np.flatnonzero(found > m)
        values = window.take(inside)
        if np.isnan(values).any():  # a NaN's cell is the last, which holds the reference's largest value
            return None
        outside = np.bincount(found, minlength=m)[:m]  # the values of cells without reference values
        before = found.take(inside) - (m + 1)
        candidate = self.padded.take(before)  # the first of its cell's (a cell with none is not among these)
        below, at_most = before + (candidate < values), before + (candidate <= values)  # per such value: those below
        for k in range(1, self.per_cell):  # it and at most it
            candidate = self.padded[k:].take(before)
            below += candidate < values
            at_most += candidate <= values
        # reference value i is at least the window values with at most i below them
        return (
            np.cumsum(outside + np.bincount(below, minlength=m)[:m]),
            np.cumsum(outside + np.bincount(at_most, minlength=m)[:m]),
        )


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The largest gap between the empirical CDFs of two sorted samples, ties included.

    Each side of the gap is found from the smaller sample's values alone, by
    binary searches into the larger one: O(m log n) for ``m <= n`` values, not
    a merge of the two (:func:`ks_gap`).

    >>> ks_statistic(np.array([1.0, 2.0, 2.0, 3.0]), np.array([2.0, 2.0, 4.0]))  # scipy's ks_2samp: 0.33333333333333337
    0.33333333333333337
    """
    small, large = (a, b) if a.size <= b.size else (b, a)
    return ks_gap(np.searchsorted(large, small, "right"), np.searchsorted(large, small, "left"), large.size)


def ks_gap(at_most: np.ndarray, below: np.ndarray, n_large: int, steps: np.ndarray | None = None) -> float:
    """:func:`ks_statistic` from the smaller sample's side: for each of its ``m`` values, sorted, how many of the
    ``n_large`` values of the larger sample are at most it and below it; ``steps``, ``np.arange(m + 1) / m`` (the
    smaller sample's CDF before and at each value), when the caller keeps them.

    >>> ks_gap(np.array([3, 3, 4]), np.array([1, 1, 4]), 4)  # ks_statistic's example above: small is b
    0.33333333333333337
    """
    steps = cdf_steps(at_most.size) if steps is None else steps
    return min(max(_rise_at(at_most, n_large, steps), _rise_between(below, n_large, steps), 0.0), 1.0)


def cdf_steps(m: int) -> np.ndarray:
    """The empirical CDF of ``m`` sorted values below the first and at each, ``i / m`` for ``i`` from 0 to ``m``.

    >>> cdf_steps(4).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    return np.arange(m + 1) / m


def _rise_at(at_most: np.ndarray, n_large: int, steps: np.ndarray) -> float:
    """The largest ``F_small - F_large``: it only rises at a value of ``small``; at the ``i``-th smallest (0-based)
    it is at least ``(i + 1) / m - F_large``, with equality at the last of a run of equal values."""
    return float((steps[1:] - at_most / n_large).max())


def _rise_between(below: np.ndarray, n_large: int, steps: np.ndarray) -> float:
    """The largest ``F_large - F_small``: it rises along ``large``'s values and falls at ``small``'s, so it peaks
    just before a value of ``small`` (at the ``below``-th of ``large``, ``below`` of them being smaller) or at the
    end. Just before the ``i``-th value of ``small`` (0-based) it is at most ``below / n_large - i / m``, with
    equality at the first of a run of equal values (``below`` the same, ``i`` larger: never above the first's,
    as rounding is monotone), so the largest of them is the peak's."""
    m = below.size
    above_all = m - np.searchsorted(below, n_large, "left")
    return max(float((below / n_large - steps[:-1]).max()), above_all / m)


def ks_p_value(d: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(d, n)``, the chance that the two-sided one-sample statistic of ``n`` values reaches
    ``d``, without scipy's per-call overhead where its own formula is cheap.

    Follows scipy's choice of algorithm (the constants above): for ``n`` above
    ``EXACT_UP_TO`` and ``n * d**2`` at least ``SMIRNOV_FROM`` it is
    ``2 * smirnov(n, d)`` (a ufunc), below that Pelz and Good's series
    (:func:`_pelz_good_sf`, scipy's formula summed directly); the rest (small
    ``n``, or ``p`` near 1 where scipy runs the exact Durbin matrix) calls
    ``kstwo.sf`` itself. Equal to scipy's within a relative 1e-12 (the summation
    order), a test proves it. Pelz and Good's region (most windows without drift) costs 5 us instead of scipy's
    200 us; ``smirnov`` is a ufunc but O(n): 0.15 ms at ``n`` 238, 5 ms at 4,762, whoever calls it.

    >>> round(ks_p_value(0.05, 1_000), 8) == round(float(kstwo.sf(0.05, 1_000)), 8)
    True
    """
    t = n * d
    if n <= EXACT_UP_TO or t <= 1.0 or t >= n - 1 or d >= 0.5:
        return float(kstwo.sf(d, n))
    if t * d >= SMIRNOV_FROM:
        return min(1.0, 2.0 * float(smirnov(n, d)))
    if n <= 100_000 and n * d**1.5 <= DURBIN_UP_TO:
        return float(kstwo.sf(d, n))
    return min(1.0, max(0.0, _pelz_good_sf(n, d)))


def _pelz_good_sf(n: int, x: float) -> float:
    """Pelz and Good's (1976) approximation of ``P(D_n > x)``, as scipy's ``_kolmogn_PelzGood`` computes it, with
    its Horner scheme over odd integers written as the sum of ``c_k q**(2k - 1)**2`` it evaluates; in floats, as
    a handful of terms costs less so than in numpy calls."""
    z = math.sqrt(n) * x
    z2 = z * z
    z4, z6 = z2 * z2, z2 * z2 * z2
    pi2 = math.pi**2
    pi4, pi6 = pi2 * pi2, pi2 * pi2 * pi2
    qlog, q2log = -pi2 / 8 / z2, -pi2 / 2 / z2
    k2a, k2b, k2c = 6 * z6 + 2 * z4, (2 * z4 - 5 * z2) * pi2 / 4, pi4 * (1 - 2 * z2) / 16
    k3a, k3b = -30 * z6 - 90 * z4 * z4, pi2 * (135 * z4 - 96 * z6) / 4
    k3c, k3d = pi4 * (-60 * z2 + 212 * z4) / 16, pi6 * (5 - 30 * z2) / 64
    root3z = math.sqrt(3) * z
    s0 = s1 = s2 = s3 = e2 = e3 = 0.0
    for k in range(math.ceil(16 * z / math.pi), 0, -1):
        odd2 = (2 * k - 1) ** 2
        weight = math.exp(qlog * odd2)
        s0 += weight
        s1 += weight * (-z2 + pi2 / 4 * odd2)
        s2 += weight * (k2a + k2b * odd2 + k2c * odd2 * odd2)
        s3 += weight * (k3a + k3b * odd2 + k3c * odd2 * odd2 + k3d * odd2 * odd2 * odd2)
        power = k * k * math.exp(q2log * k * k)
        e2 += power
        e3 += (root3z + math.pi * k) * (root3z - math.pi * k) * power
    root_2pi, root_n = math.sqrt(2 * math.pi), math.sqrt(n)
    k0 = s0 * root_2pi / z
    k1 = s1 * root_2pi / (6 * z4) / root_n
    k2 = (s2 * root_2pi / (72 * z**7) + e2 * pi2 * root_2pi / (-36 * z**3)) / n
    k3 = (s3 * root_2pi / (6480 * z**10) + e3 * pi2 * root_2pi / (216 * z6)) / (n * root_n)
    return 1.0 - k0 - k1 - k2 - k3
