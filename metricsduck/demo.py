"""The synthetic demo tree: realistic TARGET_RANKING cohorts with known, injected drift.

`write_demo` writes `runs` pipeline runs through `ReproducibilityTracker` (the same path a
real pipeline takes) and returns the `Injection`s it planted, so the CLI and the tests can
say exactly where drift must show. Everything else is stable: per-run noise is far below
every WARN tier. The same `(runs, seed)` always gives byte-identical files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config, load_config
from .errors import InputError
from .layout import CROSS_SECTIONAL, SYMBOL_SPECIFIC, baseline_key
from .tracker import ReproducibilityTracker

if TYPE_CHECKING:
    import numpy as np

STAGE = "TARGET_RANKING"
TARGETS = (
    "y_will_swing_high_60m_0.05",
    "y_will_swing_low_60m_0.05",
    "y_will_peak_30m_0.03",
    "y_will_valley_30m_0.03",
    "y_will_swing_high_15m_0.02",
    "y_will_swing_low_15m_0.02",
    "y_will_peak_120m_0.08",
    "y_will_valley_120m_0.08",
    "y_will_breakout_60m_0.04",
    "y_will_breakdown_60m_0.04",
)
SYMBOLS = ("AAPL", "MSFT", "NVDA", "TSLA", "AMZN")

FIRST_RUN_STARTED_AT = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
RUN_SPACING = timedelta(days=1)
WRITE_DELAY = timedelta(hours=1)  # written_at = run_started_at + 1 h keeps the bytes fixed

# Injected drift; the targets are distinct so each cohort carries one story only.
COLLAPSE_TARGET = "y_will_swing_low_60m_0.05"  # CROSS_SECTIONAL, last run
COLLAPSE_FACTOR = 0.73  # mean_score and composite_score keep 73%: a ~27% drop
SHIFT_TARGET, SHIFT_SYMBOL = "y_will_swing_high_60m_0.05", "TSLA"  # SYMBOL_SPECIFIC, last run
SHIFT_AMOUNT = 0.15  # added to oof_predictions
TREND_TARGET = "y_will_peak_30m_0.03"  # CROSS_SECTIONAL, every run
TREND_STEP = 0.015  # composite_score loses 1.5% per run
IMPROVE_TARGET = "y_will_valley_120m_0.08"  # CROSS_SECTIONAL, last run
IMPROVE_FACTOR = 1.3  # mean_score and composite_score gain 30%: IMPROVED (higher_is_better), not ALERT
# A categorical sample: the market regime of each out-of-fold row, the same every run
# (like the fold scores), until the last run of one cohort relabels half its calm rows
# volatile and a twentieth of all rows with a regime the baseline never saw.
REGIMES = ("calm", "trending", "volatile")
REGIME_TARGET = "y_will_breakout_60m_0.04"  # CROSS_SECTIONAL, last run
REGIME_NEW = "halted"
# The injections whose items come out ALERT in the last run, against every baseline kind.
ALERTING = ("collapse", "shift", "categorical_shift")
BAD_RUN = 4  # marked good=False when a later run exists to be compared with it
FINGERPRINT_RUN = 5  # git_commit changes from this run on
GIT_COMMITS = ("4f1c2ab", "9d8e7f6")

# Per-run noise: relative, sd 0.003, truncated at 2 sd so that a stable metric never moves
# more than 1.2% between runs and the trend target's steps never reverse.
NOISE_SD = 0.003
NOISE_CLIP = 2.0
# Per-run distribution jitter: oof_predictions get N(0, JITTER x std of the base array);
# feature_importance is scaled by 1 + N(0, JITTER), which keeps importances positive.
JITTER = 1e-3
N_MODELS = 5
N_FOLDS = 5
N_OOF = 500
CONFIG_HASH = "c7e21a9f03b4"
PIPELINE_SEED = 42
FLOAT_METRICS = ("mean_score", "std_score", "mean_importance", "composite_score", "pos_rate")


@dataclass(frozen=True)
class Injection:
    """One planted change: where it shows and a one-line description for people.

    `run_id` None means across all runs (the trend); `view`, `target` and `symbol` None
    mean every cohort of that level (the bad run and the fingerprint change).
    """

    kind: str  # "collapse" | "shift" | "categorical_shift" | "improvement" | "trend" | "bad_run" | "fingerprint"
    run_id: str | None
    stage: str
    view: str | None
    target: str | None
    symbol: str | None
    items: tuple[str, ...]  # metric / distribution names affected
    description: str


@dataclass(frozen=True)
class _Cohort:
    """A cohort's fixed definition and base values, drawn once per (seed, cohort)."""

    view: str
    target: str
    symbol: str | None
    base: dict[str, float]
    n_features_pre: int
    n_features_post_prune: int
    n_effective: int
    min_samples: int
    fold_scores: np.ndarray
    oof_base: np.ndarray
    importance_base: np.ndarray
    regime_base: np.ndarray

    @property
    def key(self) -> str:
        return baseline_key(STAGE, self.view, self.target, self.symbol)


def run_id_of(index: int) -> str:
    """`demo_run_01` for the first run."""
    return f"demo_run_{index:02d}"


def _rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator seeded from the demo seed and a label: stable across processes."""
    import numpy as np

    text = "\0".join(str(p) for p in (seed, *parts))
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "little"))


# With linear quantiles, a PSI bin edge lands exactly on a sample value when (n-1)*i/B is
# whole; the per-run jitter would then flip that value across the edge at random. Sizes
# with n-1 prime (like N_OOF = 500) avoid that for every bin count B below n-1.
_IMPORTANCE_SIZES = tuple(
    p + 1 for p in range(101, 250) if all(p % d for d in range(2, int(p**0.5) + 1))
)


def _cohort(seed: int, view: str, target: str, symbol: str | None) -> _Cohort:
    rng = _rng(seed, "cohort", view, target, symbol)
    mean_score = float(rng.uniform(0.55, 0.70))
    n_pre = int(rng.integers(300, 600))
    n_post = int(rng.choice(_IMPORTANCE_SIZES))
    # Cross-sectional cohorts pool all symbols, so they see about five times the rows.
    n_effective = int(rng.integers(150_000, 400_000) if symbol is None else rng.integers(30_000, 80_000))
    return _Cohort(
        view=view, target=target, symbol=symbol,
        base={
            "mean_score": mean_score,
            "std_score": float(rng.uniform(0.015, 0.04)),
            "mean_importance": float(rng.uniform(0.005, 0.02)),
            "composite_score": mean_score * float(rng.uniform(0.80, 0.90)),
            "pos_rate": float(rng.uniform(0.05, 0.35)),
        },
        n_features_pre=n_pre,
        n_features_post_prune=n_post,
        n_effective=n_effective,
        min_samples=int(rng.choice([1_000, 2_000, 5_000])),
        fold_scores=mean_score + rng.normal(0.0, 0.02, N_FOLDS),
        oof_base=rng.beta(2.0, 5.0, N_OOF),
        importance_base=rng.exponential(0.01, n_post),
        regime_base=rng.choice(REGIMES, N_OOF, p=rng.dirichlet([6.0, 3.0, 2.0])),
    )


def _cohorts(seed: int) -> list[_Cohort]:
    cohorts = [_cohort(seed, CROSS_SECTIONAL, t, None) for t in TARGETS]
    cohorts += [_cohort(seed, SYMBOL_SPECIFIC, t, s) for t in TARGETS for s in SYMBOLS]
    return cohorts


def _is(cohort: _Cohort, view: str, target: str, symbol: str | None = None) -> bool:
    return (cohort.view, cohort.target, cohort.symbol) == (view, target, symbol)


def _cohort_run(cohort: _Cohort, seed: int, run: int, runs: int) -> tuple[dict, dict]:
    """`(metrics, samples)` of one cohort in run `run` (1-based) of `runs`."""
    import numpy as np

    rng = _rng(seed, "run", run, cohort.key)
    limit = NOISE_CLIP * NOISE_SD
    noise = np.clip(rng.normal(0.0, NOISE_SD, len(FLOAT_METRICS)), -limit, limit)
    values = {name: cohort.base[name] * (1.0 + e) for name, e in zip(FLOAT_METRICS, noise, strict=True)}
    fold_scores = cohort.fold_scores.copy()  # deterministic CV: identical every run
    oof = cohort.oof_base + rng.normal(0.0, JITTER * float(np.std(cohort.oof_base)), N_OOF)
    importance = cohort.importance_base * (1.0 + rng.normal(0.0, JITTER, cohort.n_features_post_prune))

    last = run == runs
    if last and _is(cohort, CROSS_SECTIONAL, COLLAPSE_TARGET):
        values["mean_score"] *= COLLAPSE_FACTOR
        values["composite_score"] *= COLLAPSE_FACTOR
        fold_scores = fold_scores - cohort.base["mean_score"] * (1.0 - COLLAPSE_FACTOR)
    if last and _is(cohort, CROSS_SECTIONAL, IMPROVE_TARGET):
        values["mean_score"] *= IMPROVE_FACTOR
        values["composite_score"] *= IMPROVE_FACTOR
    if last and _is(cohort, SYMBOL_SPECIFIC, SHIFT_TARGET, SHIFT_SYMBOL):
        oof = oof + SHIFT_AMOUNT
    regime = cohort.regime_base.copy()
    if last and _is(cohort, CROSS_SECTIONAL, REGIME_TARGET):
        calm = np.flatnonzero(regime == "calm")
        regime[calm[: calm.size // 2]] = "volatile"
        regime[: N_OOF // 20] = REGIME_NEW
    if _is(cohort, CROSS_SECTIONAL, TREND_TARGET):
        # Geometric, so every step is 1.5% of the previous value (below the 5% WARN tier)
        # however many runs there are, and the value never turns negative.
        values["composite_score"] *= (1.0 - TREND_STEP) ** (run - 1)

    metrics = {
        **{name: round(v, 6) for name, v in values.items()},
        "n_models": N_MODELS,
        "leakage_flag": False,
        "n_features_pre": cohort.n_features_pre,
        "n_features_post_prune": cohort.n_features_post_prune,
        "N_effective_cs": cohort.n_effective,
        "metric_name": "roc_auc",
        "task_type": "binary_classification",
    }
    samples = {
        "fold_scores": fold_scores,
        "oof_predictions": np.clip(oof, 0.0, 1.0),  # they are probabilities
        "feature_importance": importance,
        "regime": regime.tolist(),
    }
    return metrics, samples


def _metadata(cohort: _Cohort, run: int, bad: bool) -> dict[str, Any]:
    return {
        "date_start": "2025-01-02",
        "date_end": "2025-12-31",
        "N_effective": cohort.n_effective,
        "n_symbols": 5 if cohort.symbol is None else 1,
        # Constant per cohort, so the derived cohort id is the same in every run.
        "cohort_config": {"min_samples": cohort.min_samples, "view": cohort.view},
        "git_commit": GIT_COMMITS[run >= FINGERPRINT_RUN],
        "config_hash": CONFIG_HASH,
        "data_fingerprint": hashlib.sha256(f"data\0{cohort.key}".encode()).hexdigest()[:16],
        "seed": PIPELINE_SEED,
        "good": not bad,
    }


def _has_bad_run(runs: int) -> bool:
    return runs > BAD_RUN  # a later run must exist to be compared with it


def write_demo(
    root: str | Path,
    *,
    runs: int = 8,
    seed: int = 0,
    config: Config | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Injection]:
    """Write `runs` demo runs under `root/run_NN/` and return the drift planted in them.

    Each run has 10 CROSS_SECTIONAL and 50 SYMBOL_SPECIFIC (10 targets x 5 symbols)
    TARGET_RANKING cohorts. `progress(done, total)` is called after every cohort. Files of
    an earlier demo with more runs are left in place; use an empty root for a clean tree.
    """
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 2:
        raise InputError(
            f"runs must be a whole number of at least 2 (drift needs a previous run), got {runs!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be a whole number, got {seed!r}")
    root = Path(root)
    cohorts = _cohorts(seed)
    total, done = runs * len(cohorts), 0
    # What was written, so the injections are described with the real numbers.
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for run in range(1, runs + 1):
        started = FIRST_RUN_STARTED_AT + (run - 1) * RUN_SPACING
        tracker = ReproducibilityTracker(
            root / f"run_{run:02d}", run_id=run_id_of(run), run_started_at=started, config=config
        )
        bad = _has_bad_run(runs) and run == BAD_RUN
        for cohort in cohorts:
            metrics, samples = _cohort_run(cohort, seed, run, runs)
            seen[(cohort.key, run)] = {**metrics, "oof_mean": float(samples["oof_predictions"].mean()),
                                       "volatile": samples["regime"].count("volatile") / N_OOF}
            tracker.save_cohort(
                STAGE, cohort.view, cohort.target, metrics,
                symbol=cohort.symbol,
                cohort_metadata=_metadata(cohort, run, bad),
                samples=samples,
                audit_report={"is_valid": not bad},
                written_at=started + WRITE_DELAY,
            )
            done += 1
            if progress is not None:
                progress(done, total)
    return _injections(runs, seen, config)


def _injections(runs: int, seen: dict[tuple[str, int], dict[str, Any]],
                config: Config | None) -> list[Injection]:
    """The planted drift in the order it happens, described with the values written."""
    last, before = run_id_of(runs), runs - 1
    out = []
    if _has_bad_run(runs):
        out.append(Injection(
            "bad_run", run_id_of(BAD_RUN), STAGE, None, None, None, (),
            f"{run_id_of(BAD_RUN)} {STAGE} (every cohort): marked good=False and audit "
            "is_valid=False, values normal; last_good_run baselines skip it",
        ))
    if runs >= FINGERPRINT_RUN:
        out.append(Injection(
            "fingerprint", run_id_of(FINGERPRINT_RUN), STAGE, None, None, None, (),
            f"{run_id_of(FINGERPRINT_RUN)} {STAGE} (every cohort): git_commit changes "
            f"{GIT_COMMITS[0]} -> {GIT_COMMITS[1]} (FINGERPRINT_MISMATCH against earlier runs)",
        ))

    key = baseline_key(STAGE, CROSS_SECTIONAL, COLLAPSE_TARGET, None)
    old, new = seen[(key, before)]["mean_score"], seen[(key, runs)]["mean_score"]
    out.append(Injection(
        "collapse", last, STAGE, CROSS_SECTIONAL, COLLAPSE_TARGET, None,
        ("mean_score", "composite_score"),
        f"{last} {STAGE}/{CROSS_SECTIONAL}/{COLLAPSE_TARGET}: mean_score collapses "
        f"{old:.2f} -> {new:.2f} (composite_score follows; its {N_FOLDS} fold_scores are too few "
        "to tier: LOW_N)",
    ))

    key = baseline_key(STAGE, CROSS_SECTIONAL, IMPROVE_TARGET, None)
    old, new = seen[(key, before)]["mean_score"], seen[(key, runs)]["mean_score"]
    out.append(Injection(
        "improvement", last, STAGE, CROSS_SECTIONAL, IMPROVE_TARGET, None, ("mean_score", "composite_score"),
        f"{last} {STAGE}/{CROSS_SECTIONAL}/{IMPROVE_TARGET}: mean_score improves {old:.2f} -> "
        f"{new:.2f} (composite_score too): IMPROVED, tier OK, since higher is better",
    ))

    key = baseline_key(STAGE, SYMBOL_SPECIFIC, SHIFT_TARGET, SHIFT_SYMBOL)
    old, new = seen[(key, before)]["oof_mean"], seen[(key, runs)]["oof_mean"]
    out.append(Injection(
        "shift", last, STAGE, SYMBOL_SPECIFIC, SHIFT_TARGET, SHIFT_SYMBOL, ("oof_predictions",),
        f"{last} {STAGE}/{SYMBOL_SPECIFIC}/{SHIFT_TARGET}/{SHIFT_SYMBOL}: oof_predictions "
        f"shift +{SHIFT_AMOUNT:.2f} (mean {old:.2f} -> {new:.2f}; scalar metrics unchanged)",
    ))

    key = baseline_key(STAGE, CROSS_SECTIONAL, REGIME_TARGET, None)
    old, new = seen[(key, before)]["volatile"], seen[(key, runs)]["volatile"]
    out.append(Injection(
        "categorical_shift", last, STAGE, CROSS_SECTIONAL, REGIME_TARGET, None, ("regime",),
        f"{last} {STAGE}/{CROSS_SECTIONAL}/{REGIME_TARGET}: the regime of the rows shifts "
        f"(volatile {old:.0%} -> {new:.0%}) and a new regime '{REGIME_NEW}' appears "
        f"({1 / 20:.0%} of rows): a categorical sample, compared by category",
    ))

    key = baseline_key(STAGE, CROSS_SECTIONAL, TREND_TARGET, None)
    first, final = seen[(key, 1)]["composite_score"], seen[(key, runs)]["composite_score"]
    config = config or load_config()
    min_runs, warn = config.get("trend.min_runs"), config.get("drift.tiers.relative")[0]
    note = "" if runs >= min_runs else f"; the trend view needs {min_runs} runs to report it"
    out.append(Injection(
        "trend", None, STAGE, CROSS_SECTIONAL, TREND_TARGET, None, ("composite_score",),
        f"all runs {STAGE}/{CROSS_SECTIONAL}/{TREND_TARGET}: composite_score declines "
        f"{TREND_STEP:.1%} per run ({first:.3f} -> {final:.3f} over {runs} runs, each step "
        f"below the {warn:.0%} WARN tier{note})",
    ))
    return out


def describe(injections: list[Injection]) -> list[str]:
    """The description lines of `injections`, in order (what `metricsduck demo` prints)."""
    return [injection.description for injection in injections]
