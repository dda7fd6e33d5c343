"""Independent numpy/scipy implementations of docs/design.md §5's distribution statistics.

Shared by the drift and rollup tests; nothing here calls metricsduck.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.stats


def psi_oracle(cur: np.ndarray, base: np.ndarray, bins: int, eps: float) -> dict:
    """Edges, per-bin counts/shares/contributions and PSI as docs/design.md §5.2 defines them."""
    edges = np.unique(np.quantile(base, np.arange(1, bins) / bins))
    nbins = edges.size + 1
    # Right-closed bins (-inf, e1], (e1, e2], ..., (e_last, inf): a value equal to an edge
    # belongs to the lower bin, i.e. its bin is the number of edges strictly below it.
    cur_counts = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=nbins)
    base_counts = np.bincount(np.searchsorted(edges, base, side="left"), minlength=nbins)
    cur_share, base_share = cur_counts / cur.size, base_counts / base.size
    # Floored at epsilon, not renormalised.
    fc, fb = np.maximum(cur_share, eps), np.maximum(base_share, eps)
    contribution = (fc - fb) * np.log(fc / fb)
    return {
        "edges": edges, "cur_counts": cur_counts, "base_counts": base_counts,
        "cur_share": cur_share, "base_share": base_share, "contribution": contribution,
        "psi": math.fsum(contribution), "bins": nbins,
    }


def ks_statistic(cur, base) -> float:
    """scipy.stats.ks_2samp(cur, base).statistic.

    For some sizes scipy's exact p-value fails and it warns that it switches to the
    asymptotic one; only its p-value is affected (the statistic is still h/lcm(n, m)),
    and the p-value of docs/design.md §5.3 is a different formula anyway.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful", RuntimeWarning)
        return float(scipy.stats.ks_2samp(cur, base).statistic)


def ks_p_oracle(d: float, n: int, m: int) -> float:
    """Asymptotic Kolmogorov p-value with effective n_e = n*m/(n+m) (docs/design.md §5.3)."""
    ne = n * m / (n + m)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    if lam < 0.2:
        return 1.0
    j = np.arange(1, 101, dtype=float)
    q = 2.0 * np.sum((-1.0) ** (j - 1) * np.exp(-2.0 * j * j * lam * lam))
    return float(min(max(q, 0.0), 1.0))


def chi2_95_wilson_hilferty(df: int) -> float:
    """The 0.95 quantile of chi2(df) by Wilson-Hilferty: df*(1 - 2/(9df) + z*sqrt(2/(9df)))^3."""
    z = scipy.stats.norm.ppf(0.95)
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def tier_psi(psi: float, cfg: dict) -> str:
    return "ALERT" if psi >= cfg["psi_threshold"] else "WARN" if psi >= cfg["psi_warn"] else "OK"


def tier_ks(d: float, p: float, cfg: dict) -> str:
    if p < cfg["ks_alpha"] and d >= cfg["ks_threshold"]:
        return "ALERT"
    if p < cfg["ks_alpha"] and d >= cfg["ks_warn"]:
        return "WARN"
    return "OK"


def worse(a: str, b: str) -> str:
    order = ("OK", "WARN", "ALERT")
    return order[max(order.index(a), order.index(b))]
