"""The peers metricsduck is measured against, each computing previous_run drift itself.

Every peer returns the same rows as metricsduck's `drift` view filtered to
`baseline_kind = 'previous_run'`, as `{(baseline_key, run_id, item_kind, item): Row}`:
scalar metrics (incl. `<distribution>.missing_rate`) with status (IMPROVED for a change the
metric's good way), tier, delta and rel_delta; distributions with n, m, PSI, KS D, KS p (exact
for small samples), status and tier, a tier needing the chi-square test on the PSI bins or the
KS p as evidence (docs/design.md §5, default config); NO_BASELINE rows for each key's first run.

- peer A: the per-cohort approach pipelines use today: walk the tree, `json.load` each
  cohort's `telemetry_metrics.json`, find the previous run per baseline key, deltas and
  tiers in Python, PSI/KS per pair with numpy/scipy on samples read per cohort (pyarrow).
- peer B: pandas + scipy: the sidecars through `pyarrow.dataset` into pandas, baselines by
  groupby/shift and merges, `scipy.stats.ks_2samp` and numpy PSI per pair.
- floor: a stat walk of the tree plus reading every sidecar's bytes once (no parsing).

Nothing here imports metricsduck; thresholds come from the packaged safety.yaml read with
PyYAML (the file a user of the pipeline edits).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

SKIP_DIRS = {".metricsduck"}
METRICS_JSON = "telemetry_metrics.json"
METRICS_PARQUET = "telemetry_metrics.parquet"
SAMPLES_PARQUET = "telemetry_samples.parquet"
Z95 = 1.6448536269514722


class Row(NamedTuple):
    status: str
    tier: str | None
    baseline_run_id: str | None
    delta: float | None = None
    rel_delta: float | None = None
    n: int | None = None
    m: int | None = None
    psi: float | None = None
    ks_d: float | None = None
    ks_p: float | None = None


# --- settings -----------------------------------------------------------------------------

def load_settings(path: str | Path | None = None) -> dict:
    """The drift settings of the default safety.yaml (or `path`)."""
    import yaml

    if path is None:
        import importlib.util

        spec = importlib.util.find_spec("metricsduck")  # locate the package data, do not import it
        path = Path(spec.origin).parent / "config" / "safety.yaml"
    doc = yaml.safe_load(Path(path).read_text())["safety"]["telemetry"]
    return doc["drift"]


class Tiers:
    """Per-metric thresholds and the distribution tiers of docs/design.md §5."""

    def __init__(self, drift: dict) -> None:
        self.d = drift
        t = drift["tiers"]
        self.critical = set(drift.get("critical_metrics") or [])
        self.overrides = drift.get("overrides") or {}
        self.default = (tuple(t["relative"]), tuple(t["absolute"]))
        self.crit = (tuple(t["critical_relative"]), tuple(t["critical_absolute"]))
        self.direction = drift.get("direction") or {}
        # the peers implement the default config's decision: the distances are not tiered there
        assert not any(drift.get(k) for k in ("wasserstein_warn", "wasserstein_threshold", "js_warn",
                                              "js_threshold", "fdr_q")), "peers: distance tiers / fdr_q unset"
        self._cache: dict[str, tuple] = {}

    def thresholds(self, metric: str) -> tuple[tuple, tuple]:
        got = self._cache.get(metric)
        if got is None:
            rel, ab = self.crit if metric in self.critical else self.default
            o = self.overrides.get(metric) or {}
            got = self._cache[metric] = (tuple(o.get("relative", rel)), tuple(o.get("absolute", ab)))
        return got

    @staticmethod
    def tier_of(x: float, pair: tuple) -> str:
        return "OK" if x < pair[0] else "WARN" if x < pair[1] else "ALERT"

    def improved(self, metric: str, tier: str, delta: float) -> bool:
        """A WARN/ALERT-sized change in the metric's good direction (docs/design.md §5.1)."""
        good = self.direction.get(metric, "both")
        return tier != "OK" and ((good == "higher_is_better" and delta > 0)
                                 or (good == "lower_is_better" and delta < 0))

    def distribution(self, psi: float, chi2_p: float, d: float, p: float, n: int, m: int) -> tuple[str, str]:
        """(status, tier): an effect tiers only with its evidence (docs/design.md §5.4)."""
        s = self.d
        psi_effect = "ALERT" if psi >= s["psi_threshold"] else "WARN" if psi >= s["psi_warn"] else "OK"
        ks_effect = "ALERT" if d >= s["ks_threshold"] else "WARN" if d >= s["ks_warn"] else "OK"
        if min(n, m) < s["min_samples"]:
            return "LOW_N", "OK"
        psi_tier = psi_effect if chi2_p < s["psi_alpha"] else "OK"
        ks_tier = ks_effect if p < s["ks_alpha"] else "OK"
        order = ("OK", "WARN", "ALERT")
        tier = order[max(order.index(psi_tier), order.index(ks_tier))]
        if tier == "OK" and order[max(order.index(psi_effect), order.index(ks_effect))] != "OK":
            return "INCONCLUSIVE", tier
        return "COMPARED", tier


# --- statistics (numpy / scipy) -------------------------------------------------------------

def psi(cur: np.ndarray, base: np.ndarray, bins: int, eps: float) -> tuple[float, float]:
    """PSI with edges = distinct linear quantiles of the baseline at i/B, right-closed bins,
    shares floored at eps (not renormalised), bins summed in order; and the p of Pearson's
    chi-square of homogeneity on the bins holding a value (its evidence)."""
    from scipy.special import chdtrc

    edges = np.unique(np.quantile(base, np.arange(1, bins) / bins))
    nb = edges.size + 1
    cc = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=nb)
    bc = np.bincount(np.searchsorted(edges, base, side="left"), minlength=nb)
    pc, pb = np.maximum(cc / cur.size, eps), np.maximum(bc / base.size, eps)
    total = 0.0
    for c in ((pc - pb) * np.log(pc / pb)).tolist():
        total += c
    filled = (cc + bc) > 0
    both = (cc + bc)[filled]
    ec, eb = both * cur.size / (cur.size + base.size), both * base.size / (cur.size + base.size)
    chi2 = float(np.sum((cc[filled] - ec) ** 2 / ec + (bc[filled] - eb) ** 2 / eb))
    return total, float(chdtrc(filled.sum() - 1, chi2)) if filled.sum() > 1 else 1.0


def ks_d(cur: np.ndarray, base: np.ndarray) -> float:
    from scipy.stats import ks_2samp

    # scipy's default method: for these sizes it reports D as the exact fraction h/lcm(n, m)
    # (method="asymp" leaves D as a float difference of CDFs, off in the last bits, and is
    # slower here); the p-value used is the asymptotic formula of docs/design.md §5.3 (ks_p)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful", RuntimeWarning)
        return float(ks_2samp(cur, base).statistic)


_J = np.arange(1, 101, dtype=float)
_SIGN = (-1.0) ** (_J - 1)


def ks_p(d: float, n: int, m: int, exact_max: int) -> float:
    """scipy's exact two-sided p while n * m <= exact_max, else the asymptotic form."""
    if n * m <= exact_max:
        from scipy.stats._stats_py import _attempt_exact_2kssamp

        return min(float(_attempt_exact_2kssamp(n, m, math.gcd(n, m), d, "two-sided")[2]), 1.0)
    ne = n * m / (n + m)
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    if lam < 0.2:
        return 1.0
    terms = (_SIGN * np.exp(-2.0 * _J * _J * lam * lam)).tolist()
    total = 0.0
    for t in terms:
        total += t
    return float(min(max(2.0 * total, 0.0), 1.0))


def distribution_row(cur: np.ndarray | None, base: np.ndarray | None, baseline_run_id: str,
                     tiers: Tiers) -> Row:
    n = 0 if cur is None else int(cur.size)
    m = 0 if base is None else int(base.size)
    if n == 0 or m == 0:
        return Row("NO_DATA", None, baseline_run_id, n=n, m=m)
    d = ks_d(cur, base)
    p = ks_p(d, n, m, int(tiers.d["ks_exact_max"]))
    value, chi2_p = psi(cur, base, int(tiers.d["psi_bins"]), float(tiers.d["psi_epsilon"]))
    status, tier = tiers.distribution(value, chi2_p, d, p, n, m)
    return Row(status, tier, baseline_run_id, n=n, m=m, psi=value, ks_d=d, ks_p=p)


def scalar_row(metric: str, cur: tuple | None, base: tuple | None, baseline_run_id: str,
               tiers: Tiers) -> Row:
    """`cur` / `base` are (kind, value, value_text) or None; previous_run rules of V003."""
    critical = metric in tiers.critical
    bad = "ALERT" if critical else "WARN"
    if cur is None:
        return Row("MISSING", "WARN", baseline_run_id)
    if base is None:
        return Row("NEW", "OK", baseline_run_id)
    (ck, cv, ct), (bk, bv, bt) = cur, base
    if ck != bk:
        return Row("KIND_CHANGED", bad, baseline_run_id)
    if ck == "text":
        return Row("COMPARED", "OK" if ct == bt else bad, baseline_run_id)
    if cv is None or bv is None:
        return Row("NON_FINITE", "OK" if (cv == bv and ct == bt) else bad, baseline_run_id)
    delta = cv - bv
    rel_pair, abs_pair = tiers.thresholds(metric)
    if bv != 0:
        rel = delta / abs(bv)
    elif cv == 0:
        rel = 0.0
    else:
        rel = None
    tier = tiers.tier_of(abs(rel), rel_pair) if rel is not None else tiers.tier_of(abs(delta), abs_pair)
    if tiers.improved(metric, tier, delta):
        return Row("IMPROVED", "OK", baseline_run_id, delta=delta, rel_delta=rel)
    return Row("COMPARED", tier, baseline_run_id, delta=delta, rel_delta=rel)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- peer A: per cohort, json + pyarrow + numpy/scipy ----------------------------------------

def _read_samples(path: str) -> dict[str, tuple[np.ndarray, int, int]]:
    """`{distribution: (finite values, n_total, n_missing)}` of one samples Parquet."""
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["distribution", "n_total", "n_missing", "value"])
    names = t.column("distribution").to_numpy(zero_copy_only=False)
    values = t.column("value").to_numpy(zero_copy_only=False).astype(float)  # nulls -> nan
    n_total = t.column("n_total").to_numpy()
    n_missing = t.column("n_missing").to_numpy()
    out = {}
    for name in dict.fromkeys(names.tolist()):
        mask = names == name
        v = values[mask]
        first = int(np.argmax(mask))
        out[name] = (v[~np.isnan(v)], int(n_total[first]), int(n_missing[first]))
    return out


def _missing_rates(samples: dict) -> dict[str, tuple]:
    return {f"{name}.missing_rate": ("number", n_missing / n_total if n_total > 0 else None,
                                     None if n_total > 0 else "nan")
            for name, (_, n_total, n_missing) in samples.items()}


def peer_a(root: str | Path, settings: dict | None = None) -> dict[tuple, Row]:
    tiers = Tiers(settings or load_settings())
    by_key: dict[str, dict[str, tuple]] = defaultdict(dict)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        if METRICS_JSON not in filenames:
            continue
        with open(os.path.join(dirpath, METRICS_JSON), "rb") as handle:
            doc = json.load(handle)
        ident = doc["identity"]
        entry = (_ts(ident["run_started_at"]), ident["run_id"], _ts(ident["written_at"]), dirpath,
                 {k: (v["kind"], v["value"], v["value_text"]) for k, v in doc["metrics"].items()})
        runs = by_key[ident["baseline_key"]]
        old = runs.get(ident["run_id"])
        if old is None or entry[2] > old[2]:  # the newest written_at wins a duplicate
            runs[ident["run_id"]] = entry
    rows: dict[tuple, Row] = {}
    for key, runs in by_key.items():
        prev = None
        for _started, run_id, _, folder, metrics in sorted(runs.values(), key=lambda e: (e[0], e[1])):
            spath = os.path.join(folder, SAMPLES_PARQUET)
            samples = _read_samples(spath) if os.path.exists(spath) else {}
            scalars = {**metrics, **_missing_rates(samples)}
            if prev is None:
                for name in scalars:
                    rows[(key, run_id, "metric", name)] = Row("NO_BASELINE", None, None)
                for name, (values, _, _) in samples.items():
                    rows[(key, run_id, "distribution", name)] = Row("NO_BASELINE", None, None,
                                                                    n=int(values.size), m=0)
            else:
                prun, pscalars, psamples = prev
                for name in scalars.keys() | pscalars.keys():
                    rows[(key, run_id, "metric", name)] = scalar_row(
                        name, scalars.get(name), pscalars.get(name), prun, tiers)
                for name in samples.keys() | psamples.keys():
                    cur, base = samples.get(name), psamples.get(name)
                    rows[(key, run_id, "distribution", name)] = distribution_row(
                        None if cur is None else cur[0], None if base is None else base[0], prun, tiers)
            prev = (run_id, scalars, samples)
    return rows


# --- peer B: pyarrow.dataset -> pandas, groupby/shift, scipy per pair ------------------------

def _sidecars(root: str | Path, name: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        if name in filenames:
            out.append(os.path.join(dirpath, name))
    return out


def peer_b(root: str | Path, settings: dict | None = None) -> dict[tuple, Row]:
    import pandas as pd
    import pyarrow.dataset as ds

    tiers = Tiers(settings or load_settings())
    facts = ds.dataset(_sidecars(root, METRICS_PARQUET), format="parquet").to_table(
        columns=["baseline_key", "run_id", "run_started_at", "written_at", "metric", "kind",
                 "value", "value_text"]).to_pandas()
    samples = ds.dataset(_sidecars(root, SAMPLES_PARQUET), format="parquet").to_table(
        columns=["baseline_key", "run_id", "written_at", "distribution", "n_total", "n_missing",
                 "value"]).to_pandas()

    # a duplicate cohort-run: the newest written_at wins
    newest = facts.groupby(["baseline_key", "run_id"])["written_at"].transform("max")
    facts = facts[facts["written_at"] == newest]
    newest = samples.groupby(["baseline_key", "run_id"])["written_at"].transform("max")
    samples = samples[samples["written_at"] == newest]

    runs = (facts[["baseline_key", "run_id", "run_started_at"]].drop_duplicates()
            .sort_values(["baseline_key", "run_started_at", "run_id"]))
    runs["prev_run"] = runs.groupby("baseline_key")["run_id"].shift(1)

    per_dist = samples.groupby(["baseline_key", "run_id", "distribution"], sort=False).agg(
        n_total=("n_total", "first"), n_missing=("n_missing", "first"), n=("value", "count"))
    per_dist = per_dist.reset_index()
    rates = pd.DataFrame({
        "baseline_key": per_dist["baseline_key"], "run_id": per_dist["run_id"],
        "metric": per_dist["distribution"] + ".missing_rate", "kind": "number",
        "value": np.where(per_dist["n_total"] > 0,
                          per_dist["n_missing"] / per_dist["n_total"].where(per_dist["n_total"] > 0, 1),
                          np.nan),
        "value_text": np.where(per_dist["n_total"] > 0, None, "nan"),
    })
    scalars = pd.concat([facts[["baseline_key", "run_id", "metric", "kind", "value", "value_text"]], rates],
                        ignore_index=True)
    scalars = scalars.merge(runs[["baseline_key", "run_id", "prev_run"]], on=["baseline_key", "run_id"])

    rows: dict[tuple, Row] = {}
    # first runs: NO_BASELINE
    first = scalars[scalars["prev_run"].isna()]
    for key, run_id, metric in zip(first["baseline_key"], first["run_id"], first["metric"], strict=True):
        rows[(key, run_id, "metric", metric)] = Row("NO_BASELINE", None, None)
    # pairs: current metrics outer-joined with the previous run's
    cur = scalars[scalars["prev_run"].notna()]
    prev_of = runs.dropna(subset=["prev_run"])[["baseline_key", "run_id", "prev_run"]]
    base = scalars.drop(columns="prev_run").rename(columns={"run_id": "prev_run"}).merge(
        prev_of, on=["baseline_key", "prev_run"])
    pairs = cur.merge(base, on=["baseline_key", "run_id", "prev_run", "metric"], how="outer",
                      suffixes=("_c", "_b"))
    crit = pairs["metric"].isin(tiers.critical)
    bad = np.where(crit, "ALERT", "WARN")
    ck, bk = pairs["kind_c"], pairs["kind_b"]
    cv, bv = pairs["value_c"].astype(float), pairs["value_b"].astype(float)
    ct, bt = pairs["value_text_c"], pairs["value_text_b"]
    status = np.select(
        [ck.isna(), bk.isna(), ck != bk, ck == "text", cv.isna() | bv.isna()],
        ["MISSING", "NEW", "KIND_CHANGED", "COMPARED", "NON_FINITE"], "COMPARED")
    compared = (status == "COMPARED") & (ck != "text")
    delta = np.where(compared, cv - bv, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(bv != 0, delta / np.abs(bv), np.where(cv == 0, 0.0, np.nan))
    rel = np.where(compared, rel, np.nan)
    # thresholds per metric
    metrics = pairs["metric"].unique()
    th = pd.DataFrame([(mname, *tiers.thresholds(mname)[0], *tiers.thresholds(mname)[1]) for mname in metrics],
                      columns=["metric", "rw", "ra", "aw", "aa"]).set_index("metric")
    t = th.loc[pairs["metric"]].to_numpy()
    mag = np.where(np.isnan(rel), np.abs(delta), np.abs(rel))
    warn_at = np.where(np.isnan(rel), t[:, 2], t[:, 0])
    alert_at = np.where(np.isnan(rel), t[:, 3], t[:, 1])
    numeric_tier = np.where(mag < warn_at, "OK", np.where(mag < alert_at, "WARN", "ALERT"))
    same_text = (ct.isna() & bt.isna()) | (ct == bt)
    same_value = (cv.isna() & bv.isna()) | (cv == bv)
    tier = np.select(
        [status == "NEW", status == "MISSING", status == "KIND_CHANGED", ck == "text",
         status == "NON_FINITE"],
        ["OK", "WARN", bad, np.where(same_text, "OK", bad),
         np.where(same_value & same_text, "OK", bad)], numeric_tier)
    # only degradations alert: a WARN/ALERT-sized change the metric's good way is IMPROVED
    good = pairs["metric"].map(lambda name: tiers.direction.get(name, "both")).to_numpy()
    with np.errstate(invalid="ignore"):
        improved = compared & (tier != "OK") & (((good == "higher_is_better") & (delta > 0))
                                                | ((good == "lower_is_better") & (delta < 0)))
    status = np.where(improved, "IMPROVED", status)
    tier = np.where(improved, "OK", tier)
    for key, run_id, metric, s, tr, prun, dl, rl in zip(
            pairs["baseline_key"], pairs["run_id"], pairs["metric"], status, tier, pairs["prev_run"],
            delta.tolist(), rel.tolist(), strict=True):
        rows[(key, run_id, "metric", metric)] = Row(
            s, tr, prun, None if dl != dl else dl, None if rl != rl else rl)

    # distributions: finite values per cohort-run x distribution, compared per pair
    finite = samples[samples["value"].notna()]
    values = {k: g.to_numpy() for k, g in finite.groupby(["baseline_key", "run_id", "distribution"],
                                                           sort=False)["value"]}
    dists = per_dist.merge(runs[["baseline_key", "run_id", "prev_run"]], on=["baseline_key", "run_id"])
    for key, run_id, name, n, prun in zip(dists["baseline_key"], dists["run_id"], dists["distribution"],
                                          dists["n"], dists["prev_run"], strict=True):
        if not isinstance(prun, str):
            rows[(key, run_id, "distribution", name)] = Row("NO_BASELINE", None, None, n=int(n), m=0)
            continue
        rows[(key, run_id, "distribution", name)] = distribution_row(
            values.get((key, run_id, name)), values.get((key, prun, name)), prun, tiers)
    # a distribution only in the baseline run: NO_DATA (n = 0)
    have = set(zip(dists["baseline_key"], dists["run_id"], dists["distribution"], strict=True))
    following_runs = runs.dropna(subset=["prev_run"])
    nxt = dict(zip(zip(following_runs["baseline_key"], following_runs["prev_run"], strict=True),
                   following_runs["run_id"], strict=True))
    for key, run_id, name in have:
        following = nxt.get((key, run_id))
        if following is not None and (key, following, name) not in have:
            rows[(key, following, "distribution", name)] = distribution_row(
                None, values.get((key, run_id, name)), run_id, tiers)
    return rows


# --- the floor ----------------------------------------------------------------------------

def floor(root: str | Path) -> dict[str, int]:
    """Stat every file of the tree (a walk) and read each sidecar's bytes once."""
    files = read = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            path = os.path.join(dirpath, name)
            os.stat(path)
            files += 1
            if name in (METRICS_PARQUET, SAMPLES_PARQUET):
                with open(path, "rb") as handle:
                    read += len(handle.read())
    return {"files": files, "bytes": read}
