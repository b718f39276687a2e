# TEMPORARY STUB (lead): replaced by the helper's module at merge
from __future__ import annotations
from dataclasses import dataclass
import math
import numpy as np
from detectors.results import SequentialResult

@dataclass(frozen=True)
class Moments:
    n: int
    mean: float
    m2: float
    @classmethod
    def empty(cls): return cls(0, 0.0, 0.0)
    @classmethod
    def of(cls, values):
        v = values[~np.isnan(values)]
        if not len(v): return cls.empty()
        m = float(v.mean()); return cls(len(v), m, float(((v - m) ** 2).sum()))
    def merge(self, o):
        if o.n == 0: return self
        if self.n == 0: return o
        n = self.n + o.n; d = o.mean - self.mean
        return Moments(n, self.mean + d * o.n / n, self.m2 + o.m2 + d * d * self.n * o.n / n)
    def to_list(self): return [self.n, self.mean, self.m2]
    @classmethod
    def from_list(cls, v): return cls(int(v[0]), float(v[1]), float(v[2]))

class AnytimeTTest:
    def __init__(self, alpha=0.05, phi=1.0, min_samples=100):
        self.alpha, self.phi, self.min_samples = alpha, phi, min_samples
        self._reset()
    def _reset(self):
        self._p = 1.0; self._lower = -math.inf; self._upper = math.inf
    def update(self, b: Moments, c: Moments) -> SequentialResult:
        effect = c.mean - b.mean
        n = b.n + c.n
        if min(b.n, c.n) < self.min_samples or n <= 3 or b.m2 + c.m2 <= 0:
            return SequentialResult(effect, -math.inf, math.inf, 1.0, b.n, c.n, False)
        s2 = (b.m2 + c.m2) / (n - 2); se = math.sqrt(s2 * (1 / b.n + 1 / c.n))
        t2 = (effect / se) ** 2; nu = n - 3; z2 = b.n * c.n / n; r = self.phi / (self.phi + z2)
        lbf = 0.5 * math.log(r) + 0.5 * (nu + 1) * (math.log1p(t2 / nu) - math.log1p(r * t2 / nu))
        self._p = min(self._p, math.exp(-lbf) if lbf > -700 else 1.0, 1.0)
        a = (r * self.alpha ** 2) ** (1 / (nu + 1))
        radius = se * math.sqrt(nu * (1 - a) / max(1e-300, a - r))
        self._lower = max(self._lower, effect - radius); self._upper = min(self._upper, effect + radius)
        return SequentialResult(effect, self._lower, self._upper, self._p, b.n, c.n, self._p <= self.alpha)
    def snapshot(self): return {"p_value": self._p, "lower": self._lower, "upper": self._upper}
    def restore(self, s): self._p, self._lower, self._upper = s["p_value"], s["lower"], s["upper"]
