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


def ks_p_exact(d: float, n: int, m: int) -> float:
    """scipy's exact two-sided KS p-value of D = d for sizes n and m (ks_2samp(method="exact")
    on samples without ties with that D: scipy's exact p depends on n, m and D only)."""
    from scipy.stats._stats_py import _attempt_exact_2kssamp

    ok, _, p = _attempt_exact_2kssamp(n, m, math.gcd(n, m), d, "two-sided")
    # scipy gives up (and switches to its asymptotic p) when rounding puts p a hair above 1,
    # as it does for n = m = 5, D = 1/5 (1.0000000000000002): the exact p is then 1
    assert ok or 1 < p < 1 + 1e-12, (n, m, d, p)
    return min(float(p), 1.0)


def ks_p_any(d: float, n: int, m: int, exact_max: int) -> tuple[float, str]:
    """The KS p-value docs/design.md §5.3 gives and its method: exact while n*m <= exact_max."""
    if n * m <= exact_max:
        return ks_p_exact(d, n, m), "exact"
    return ks_p_oracle(d, n, m), "asymptotic"


def chi2_bins(cur_counts, base_counts) -> tuple[float, float]:
    """Pearson's chi-square of homogeneity and its p over the bins holding a value, as
    scipy.stats.chi2_contingency(correction=False) on the 2 x K table ((0, 1) for K < 2)."""
    table = np.vstack([np.asarray(cur_counts), np.asarray(base_counts)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = scipy.stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def effect_tier(value: float, warn: float, alert: float) -> str:
    return "ALERT" if value >= alert else "WARN" if value >= warn else "OK"


def wasserstein_over_std(cur, base) -> float | None:
    """scipy's Wasserstein-1 distance over the baseline's population std (None when it is 0)."""
    spread = float(np.std(base))
    return float(scipy.stats.wasserstein_distance(cur, base)) / spread if spread > 0 else None


def js_distance(cur_share, base_share) -> float:
    """scipy's Jensen-Shannon distance (natural log) of two share vectors."""
    from scipy.spatial.distance import jensenshannon

    return float(jensenshannon(cur_share, base_share))


def optional_tier(value: float | None, warn: float, alert: float) -> str:
    """A distance's tier: a bound of 0 is off."""
    if value is not None and alert > 0 and value >= alert:
        return "ALERT"
    if value is not None and warn > 0 and value >= warn:
        return "WARN"
    return "OK"


def decide(psi: float, chi2_p: float, d: float, ks_p: float, n: int, m: int, cfg: dict,
           wasserstein: float | None = None, js: float | None = None) -> dict:
    """psi_tier, ks_tier, distance_tier, tier and status of a distribution comparison
    (docs/design.md §5.4): an effect tiers only with its evidence (PSI and JS with the
    chi-square, KS D and Wasserstein with KS); LOW_N below min_samples; INCONCLUSIVE when an
    effect reaches WARN without its evidence."""
    low_n = min(n, m) < cfg["min_samples"]
    psi_effect = effect_tier(psi, cfg["psi_warn"], cfg["psi_threshold"])
    ks_effect = effect_tier(d, cfg["ks_warn"], cfg["ks_threshold"])
    w_effect = optional_tier(wasserstein, cfg.get("wasserstein_warn", 0), cfg.get("wasserstein_threshold", 0))
    js_effect = optional_tier(js, cfg.get("js_warn", 0), cfg.get("js_threshold", 0))
    chi2_evidence = chi2_p < cfg["psi_alpha"] and not low_n
    ks_evidence = ks_p < cfg["ks_alpha"] and not low_n
    psi_tier = psi_effect if chi2_evidence else "OK"
    ks_tier = ks_effect if ks_evidence else "OK"
    distance_tier = worse(w_effect if ks_evidence else "OK", js_effect if chi2_evidence else "OK")
    tier = worse(worse(psi_tier, ks_tier), distance_tier)
    if low_n:
        status = "LOW_N"
    elif tier == "OK" and any(e != "OK" for e in (psi_effect, ks_effect, w_effect, js_effect)):
        status = "INCONCLUSIVE"
    else:
        status = "COMPARED"
    return {"psi_tier": psi_tier, "ks_tier": ks_tier, "distance_tier": distance_tier, "tier": tier,
            "status": status}


def worse(a: str, b: str) -> str:
    order = ("OK", "WARN", "ALERT")
    return order[max(order.index(a), order.index(b))]
