"""What a model's calls cost: each call's price, and the model's exact spend since its pricing began.

A model with a ``pricing`` section has a :class:`Spend`. Each batch of its
calls is billed at once (:meth:`Spend.add`): a call's tokens (input not read
from a cache, cache reads, output) at the prices of the version it names
(``pricing.versions``, by the name sent, whether the window keeps that
version live or folds it), giving each call's cost for the window's
``cost`` column. The spend itself is kept exactly: the tokens billed at each
set of prices, as integers (saturating at
:data:`~monitor.state.histogram.MAX_COUNT`, as the token counters do), priced
only when read (:attr:`Spend.total`, exact rational arithmetic rounded once
to a float). So it is the same however the calls were batched (a replay and
a Kafka run agree), and a price changed between two runs applies to the
calls after the change only: the tokens billed at the old prices keep them.

A call that reports no token count at all costs nothing and has no cost (NaN);
a count it leaves out counts as none. With ``input_includes_cache_read`` (the
default), the input tokens not read from a cache are ``input_tokens`` minus
``cache_read_input_tokens``, never below zero.

>>> from monitor.config import parse_config
>>> pricing = parse_config({"models": [{"name": "m", "pricing": {"currency": "USD", "input": 3, "output": 15,
...     "cache_read": 0.3, "versions": {"rc1": {"output": 10}}}}]}).models[0].pricing
>>> spend = Spend(pricing)
>>> nan = float("nan")
>>> spend.add(np.array([1000.0, 2000.0, nan]), np.array([100.0, 100.0, nan]), np.array([0.0, 1000.0, nan]),
...           ["v1", "rc1", "v1"]).tolist()
[0.0045, 0.0043, nan]
>>> spend.total
0.0088
"""

from __future__ import annotations

import logging
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

from monitor.config import PricingConfig
from monitor.state.histogram import MAX_COUNT

__all__ = ["Spend", "price_lines"]

log = logging.getLogger(__name__)

#: Prices are per million tokens.
_PER = 1_000_000
#: Every integer up to this is exact as a float64, and so is a sum of such that stays below it.
_EXACT = 2**53

Prices = tuple[Decimal, Decimal, Decimal]  # per million tokens: input not read from a cache, cache reads, output


class Spend:
    """One model's spend in its ``pricing.currency``: the tokens billed at each set of prices, and each call's cost.

    :attr:`tokens` maps a set of prices (input, cache read, output) to the tokens billed at them, in that order.
    """

    def __init__(self, pricing: PricingConfig):
        self.currency = pricing.currency
        self.includes_cache_read = pricing.input_includes_cache_read
        #: The budget as spend per second (None: none set).
        self.budget_per_second = None if pricing.budget is None else pricing.budget.per_second
        self._prices: list[Prices] = [pricing.prices()]
        self._tier_of: dict[Any, int] = {}  # a version's name -> its prices' index in _prices
        for version in pricing.versions:
            prices = pricing.prices(version)
            if prices not in self._prices:
                self._prices.append(prices)
            self._tier_of[version] = self._prices.index(prices)
        self._per_million = np.array([[float(price) for price in prices] for prices in self._prices])
        self.tokens: dict[Prices, list[int]] = {}

    def add(
        self, input_tokens: np.ndarray, output_tokens: np.ndarray, cache_read: np.ndarray, versions: list[Any]
    ) -> np.ndarray:
        """Bill a batch of calls (token counts as float64, NaN where not reported; each call's ``model_version``
        as sent); each call's cost (NaN for a call that reports no count)."""
        unreported = np.isnan(input_tokens) & np.isnan(output_tokens) & np.isnan(cache_read)
        cached = np.nan_to_num(cache_read)
        uncached = np.nan_to_num(input_tokens)
        if self.includes_cache_read:
            uncached = np.maximum(uncached - cached, 0.0)  # exact: integers of at most 2**53
        billed = (uncached, cached, np.nan_to_num(output_tokens))
        if len(self._prices) == 1:  # no version has prices of its own: one tier, no look-up per call
            per_million = self._per_million[0]
            self._count(0, billed)
        else:
            get = self._tier_of.get
            tiers = np.fromiter((get(version, 0) for version in versions), np.intp, len(versions))
            per_million = self._per_million[tiers].T
            for tier in np.unique(tiers).tolist():
                taken = tiers == tier
                self._count(tier, tuple(tokens[taken] for tokens in billed))
        costs = (billed[0] * per_million[0] + billed[1] * per_million[1] + billed[2] * per_million[2]) / _PER
        costs[unreported] = np.nan
        return costs

    def _count(self, tier: int, billed: tuple[np.ndarray, ...]) -> None:
        """Add the tokens of some calls billed at the prices ``tier``, exactly."""
        counts = self.tokens.setdefault(self._prices[tier], [0, 0, 0])
        for kind, tokens in enumerate(billed):
            counts[kind] = min(counts[kind] + _exact_sum(tokens), MAX_COUNT)

    @property
    def total(self) -> float:
        """The spend: every token billed at its prices, summed exactly, as the nearest float."""
        spend = sum(
            (Fraction(price) * count for prices, counts in self.tokens.items() for price, count in zip(prices, counts)),
            Fraction(0),
        )
        return float(spend / _PER)

    def snapshot(self) -> dict:
        """The currency and the tokens billed at each set of prices (as exact decimal strings)."""
        return {
            "currency": self.currency,
            "tokens": [[[str(price) for price in prices], counts] for prices, counts in self.tokens.items()],
        }

    def restore(self, snapshot: dict | None, model: str) -> bool:
        """Take back a :meth:`snapshot` of ``model``'s spend: it goes on from there, under whatever prices applied to
        each token. Spend in another currency (the config changed it) is not carried over: this one's starts at 0.
        Whether the saved costs are in this currency (False: the window's costs of the saved calls are not)."""
        self.tokens = {}
        if snapshot is None:  # saved before the model had pricing, or before spend was kept
            return True
        if snapshot["currency"] != self.currency:
            log.warning(
                "model %s: its spend in %s is not carried over into %s, which starts at 0",
                model, snapshot["currency"], self.currency,
            )  # fmt: skip
            return False
        for prices, counts in snapshot["tokens"]:
            key = (Decimal(prices[0]), Decimal(prices[1]), Decimal(prices[2]))
            self.tokens[key] = [min(int(count), MAX_COUNT) for count in counts]
        return True


def price_lines(pricing: PricingConfig) -> list[str]:
    """What ``check-config`` shows of a model's pricing: the prices it applies, then each version's own.

    >>> from monitor.config import parse_config
    >>> pricing = parse_config({"models": [{"name": "m", "pricing": {"currency": "USD", "input": 3, "output": 15,
    ...     "versions": {"rc1": {"output": 12.5}}, "budget": {"amount": 120, "per": "1d"}}}]}).models[0].pricing
    >>> for line in price_lines(pricing):
    ...     print(line)
    USD per million tokens: input 3, cache read 3, output 15 (input_tokens include the cache reads)
    version 'rc1': input 3, cache read 3, output 12.5
    budget: 120 USD per 86400000 ms (0.00138889 a second)
    """
    cache = "include" if pricing.input_includes_cache_read else "leave out"
    own = _prices(pricing.prices())
    lines = [f"{pricing.currency} per million tokens: {own} (input_tokens {cache} the cache reads)"]
    lines += [f"version {version!r}: {_prices(pricing.prices(version))}" for version in pricing.versions]
    budget = pricing.budget
    if budget is not None:
        per = f"{budget.per_ms} ms ({budget.per_second:.6g} a second)"
        lines.append(f"budget: {budget.amount} {pricing.currency} per {per}")
    return lines


def _prices(prices: Prices) -> str:
    return "input {}, cache read {}, output {}".format(*prices)


def _exact_sum(tokens: np.ndarray) -> int:
    """The sum of float64 token counts (whole numbers, each at most 2**53) as an exact integer: numpy's sum while
    it is below 2**53 (every partial sum of counts is then exact, and only then), else one Python integer a count."""
    total = float(tokens.sum())
    if total < _EXACT:
        return int(total)
    return sum(tokens.astype(np.int64).tolist())
