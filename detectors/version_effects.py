# TEMPORARY STUB (lead)
import numpy as np
def quantile_difference(b, c, q=0.95, confidence=0.95):
    if len(b) < 20 or len(c) < 20: return (float("nan"),) * 3
    e = float(np.quantile(c, q) - np.quantile(b, q)); return (e, e - 1, e + 1)
def rank_effect(b, c):
    if not len(b) or not len(c): return float("nan")
    s = np.sort(b); return float((np.searchsorted(s, c, "left") + np.searchsorted(s, c, "right")).sum() / 2 / (len(b) * len(c)))
