"""Series loading, transforms fitted on the training part, chronological windowing, baselines. No TensorFlow."""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from gru_edge.errors import DataError
from gru_edge.framing import difference_terms

AIRLINE = "airline"
# What gru-edge does with the built-in series unless told otherwise (see gru_edge/datasets/README.md).
BUILTIN_DEFAULTS = {AIRLINE: {"column": "passengers", "transform": "log,diff12", "test_size": 24, "season": 12}}
CSV_DEFAULTS = {"transform": "auto", "test_fraction": 0.2, "season": None}
AUTO = "auto"
LARGEST = 1e38  # magnitude a value may have: models compute in float32 (largest 3.4e38)


@dataclass(frozen=True)
class Series:
    """A target column (and optional feature columns) read from the built-in data or a CSV file."""

    source: str
    sha256: str
    column: str
    values: np.ndarray  # [n] float64
    feature_names: tuple[str, ...] = ()
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # [n, k] float64

    def __len__(self) -> int:
        return len(self.values)


def _airline_bytes() -> bytes:
    return (Path(__file__).resolve().parent / "datasets" / "airline-passengers.csv").read_bytes()


def load_series(data: str | Path, column: str | None = None, features: tuple[str, ...] = ()) -> Series:
    """Return the series named by ``data``: ``airline`` (built in) or a CSV path with a header row."""
    if str(data) == AIRLINE:
        raw, source = _airline_bytes(), "builtin:airline (Box & Jenkins Series G, 1949-1960)"
        column = column or BUILTIN_DEFAULTS[AIRLINE]["column"]
    else:
        path = Path(data)
        if not path.is_file():
            raise DataError(f"Data file not found: {path}. Give a CSV file with a header row, or 'airline'.")
        raw, source = path.read_bytes(), str(path.resolve())
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{source} is not a UTF-8 text CSV file.") from None
    rows = list(csv.reader(text.splitlines()))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise DataError(f"{source} has no data rows: a CSV needs a header row and one row per time step.")
    header = [h.strip() for h in rows[0]]
    wanted = columns(header, column, features, Path(source).name)
    column = wanted[0]
    table = np.empty((len(rows) - 1, len(wanted)))
    for i, row in enumerate(rows[1:], start=2):
        for j, name in enumerate(wanted):
            cell = row[header.index(name)].strip() if header.index(name) < len(row) else ""
            try:
                value = float(cell)
            except ValueError:
                raise DataError(f"Line {i}, column '{name}': '{cell}' is not a number; the target and feature "
                                "columns must hold numbers only.") from None
            if not abs(value) <= LARGEST:
                raise DataError(f"Line {i}, column '{name}': '{cell}' is not a finite number within "
                                f"±{LARGEST:.0e} (float32; NaN and inf are not allowed); fill or drop missing values "
                                "first.")
            table[i - 2, j] = value
    return Series(source=source, sha256=hashlib.sha256(raw).hexdigest(), column=column, values=table[:, 0],
                  feature_names=tuple(features), features=table[:, 1:])


def columns(header: list[str], column: str | None, features: tuple[str, ...], where) -> tuple[str, ...]:
    """(target, *features) named in ``header`` (the target: the last column unless named); DataError otherwise."""
    column = column or header[-1]
    wanted = (column, *features)
    for name in wanted:
        if header.count(name) > 1:
            raise DataError(f"Column '{name}' appears {header.count(name)} times in the header of {where}; name "
                            "each column once.")
        if name not in header:
            raise DataError(f"Column '{name}' not in {where}. Columns: {', '.join(header)}.")
    if len(set(wanted)) != len(wanted):
        raise DataError(f"Columns must be distinct; got target '{column}' and features {', '.join(features)}.")
    return wanted


def parse_transform(text: str) -> tuple[bool, tuple[int, ...]]:
    """Return (log, differences) from a spec such as ``none``, ``log``, ``diff``, ``diff12``, ``log,diff12`` or
    ``log,diff1,diff12`` (differences applied in turn)."""
    if text.strip() == AUTO:
        raise DataError("'auto' chooses a transform while training; it cannot be fitted as one.")
    log, diffs = False, []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        if part == "none":
            continue
        if part == "log":
            log = True
        elif part.startswith("diff") and (part == "diff" or part[4:].isdigit()) and part != "diff0":
            diffs.append(int(part[4:] or 1))
        else:
            raise DataError(f"Unknown transform step '{part}'. Allowed: auto, or none, log, diff (lag 1), diffN "
                            "(lag N), comma-separated, e.g. 'log,diff12' or 'diff1,diff12'.")
    return log, tuple(sorted(diffs))


def difference(values: np.ndarray, diffs) -> np.ndarray:
    """``values`` differenced by each lag in turn; the first sum(diffs) entries are NaN (no earlier value)."""
    z = np.asarray(values, dtype=float)
    for d in diffs:
        z = np.r_[np.full(min(d, len(z)), np.nan), z[d:] - z[:-d]]
    return z


@dataclass(frozen=True)
class Transform:
    """Target transform (log, lagged differences) and standard scaling, fitted on the training part only."""

    log: bool
    diffs: tuple[int, ...]
    mean: float
    std: float
    feature_mean: tuple[float, ...] = ()
    feature_std: tuple[float, ...] = ()

    @property
    def lag(self) -> int:
        return sum(self.diffs)

    @property
    def spec(self) -> str:
        parts = (["log"] if self.log else []) + [f"diff{d}" for d in self.diffs]
        return ",".join(parts) or "none"

    def to_dict(self) -> dict:
        return asdict(self) | {"diffs": list(self.diffs), "spec": self.spec}

    @classmethod
    def from_dict(cls, d: dict) -> "Transform":
        diffs = d.get("diffs", [d["diff"]] if d.get("diff") else [])  # one 'diff' before several differences
        return cls(log=d["log"], diffs=tuple(diffs), mean=d["mean"], std=d["std"],
                   feature_mean=tuple(d.get("feature_mean", ())), feature_std=tuple(d.get("feature_std", ())))

    def level(self, values: np.ndarray) -> np.ndarray:
        return np.log(values) if self.log else np.asarray(values, dtype=float)

    def model_inputs(self, series: Series) -> np.ndarray:
        """Return the scaled model-input table [n, 1 + k]; the first ``lag`` rows are NaN (no lagged value)."""
        z = difference(self.level(series.values), self.diffs)
        cols = [(z - self.mean) / self.std]
        if series.features.size:
            cols += list(((series.features - self.feature_mean) / self.feature_std).T)
        return np.stack(cols, axis=1)

    def to_original(self, scaled: np.ndarray, series: Series, first_target: np.ndarray) -> np.ndarray:
        """Map scaled predictions [N, h] for targets starting at ``first_target`` [N] back to original units."""
        z = np.asarray(scaled, dtype=float) * self.std + self.mean
        lv = self.level(series.values)
        out = np.empty_like(z)
        for i, t in enumerate(first_target):
            for k in range(z.shape[1]):
                # undo the differences: each earlier level is known data or an earlier step's forecast
                out[i, k] = z[i, k] - sum(p * (lv[t + k - j] if k < j else out[i, k - j])
                                          for j, p in difference_terms(self.diffs))
        return np.exp(out) if self.log else out


def fit_transform(series: Series, n_train: int, spec: str) -> Transform:
    """Fit the transform on the first ``n_train`` values only, so the held-out tail never shapes the scaling."""
    log, diffs = parse_transform(spec)
    if log and np.any(series.values <= 0):
        raise DataError(f"Transform 'log' needs positive values; column '{series.column}' has values <= 0. "
                        "Use --transform none or diff.")
    lv = np.log(series.values[:n_train]) if log else series.values[:n_train]
    z = difference(lv, diffs)[sum(diffs):]
    if len(z) < 2:
        raise DataError(f"Too few training values ({n_train}) for transform '{spec}'.")
    feats = series.features[:n_train]
    return Transform(log=log, diffs=diffs, mean=float(z.mean()), std=float(z.std() or 1.0),
                     feature_mean=tuple(float(v) for v in feats.mean(axis=0)) if feats.size else (),
                     feature_std=tuple(float(v or 1.0) for v in feats.std(axis=0)) if feats.size else ())


def prefers_log(values: np.ndarray, season: int | None) -> bool:
    """Guerrero's choice between the log (Box-Cox lambda 0) and no transform (lambda 1): cut the series into
    subseries of one season (or 2 values), and keep the lambda under which sd / mean ** (1 - lambda) varies least
    across them (its coefficient of variation). Only for positive series."""
    if np.any(values <= 0):
        return False
    p = max(2, season or 2)
    chunks = np.asarray(values[len(values) % p:], float).reshape(-1, p)
    if len(chunks) < 2:
        return False
    sd, mean = chunks.std(axis=1, ddof=1), chunks.mean(axis=1)
    cv = lambda r: float(r.std(ddof=1) / r.mean()) if r.mean() > 0 else math.inf  # noqa: E731
    return cv(sd / mean) < cv(sd)


def seasonal_strength(values: np.ndarray, season: int) -> float:
    """1 - var(remainder) / var(seasonal + remainder) of a classical decomposition (centred moving-average trend,
    mean seasonal profile); 0 when the series is too short for four seasons (with fewer, each season position has one
    or two values and white noise scores above 0.64 more often than not). Above 0.64 a seasonal difference is
    advised (the threshold of Hyndman's nsdiffs)."""
    x = np.asarray(values, float)
    if len(x) < 4 * season + 1:
        return 0.0
    kernel = np.ones(season) / season if season % 2 else np.r_[0.5, np.ones(season - 1), 0.5] / season
    half = len(kernel) // 2
    trend = np.convolve(x, kernel, mode="valid")
    detrended = x[half: half + len(trend)] - trend
    position = (np.arange(len(detrended)) + half) % season
    profile = np.array([detrended[position == k].mean() for k in range(season)])
    seasonal = profile[position] - profile.mean()
    remainder = detrended - seasonal
    total = np.var(seasonal + remainder)
    return float(max(0.0, 1 - np.var(remainder) / total)) if total > 0 else 0.0


KPSS_5PCT = 0.463  # the KPSS level-stationarity test's 5% critical value (Kwiatkowski et al. 1992, table 1)


def kpss(x: np.ndarray) -> float:
    """The KPSS statistic for level stationarity, with the lag truncation 3 * sqrt(n) / 13 (Hobijn et al. 1998;
    what the forecast package's ndiffs uses): above KPSS_5PCT, ``x`` wanders and wants one more difference."""
    e = np.asarray(x, float) - np.mean(x)
    n = len(e)
    s = np.cumsum(e)
    lags = int(3 * math.sqrt(n) / 13)
    long_run = e @ e / n + sum(2 * (1 - k / (lags + 1)) * (e[k:] @ e[:-k]) / n for k in range(1, lags + 1))
    return float(s @ s / (n * n * long_run)) if long_run > 0 else 0.0


def candidate_transforms(series: Series, n_train: int, season: int | None) -> list[str]:
    """What 'auto' trains and compares on the validation split. The log is decided up front (prefers_log: does
    the spread grow with the level?), and so is seasonal differencing for a strongly seasonal series
    (seasonal_strength > 0.64); otherwise no difference, first differences and (with a season) the seasonal
    difference compete. Measured on the forecasting benchmark: letting the validation split pick among all six
    combinations chose first differences or no log for three strongly seasonal series (12-17 validation values:
    UKgas, USAccDeaths, JohnsonJohnson), which then lost to seasonal-naive by 1.1-1.7x."""
    train, season = series.values[:n_train], season if season and season > 1 else None
    # The log must be valid on the whole series (a held-out value <= 0 would make the model return nonsense);
    # whether it helps is judged on the training part only.
    log = bool(np.all(series.values > 0)) and prefers_log(train, season)
    level = np.log(train) if log else train
    if season and seasonal_strength(level, season) > 0.64:
        # and a first difference on top when the seasonal differences still wander (KPSS, as ndiffs does)
        lags = [f"diff1,diff{season}" if kpss(difference(level, [season])[season:]) > KPSS_5PCT else f"diff{season}"]
    elif not season:
        lags = ["none", "diff1"]
    else:
        lags = ["none", "diff1", f"diff{season}"]
    return [",".join(["log"] * log + [lag]).replace("log,none", "log") for lag in lags]


@dataclass(frozen=True)
class Windows:
    """Chronologically split windows. ``*_x`` [N, window, F] and ``*_y`` [N, horizon] are what the GRU core reads
    and predicts (transformed and scaled); ``*_raw`` [N, window + lag, F] are the same windows in the data's units,
    what the exported model reads, and ``*_truth`` [N, horizon] the targets in the data's units."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_first_target: np.ndarray  # [N_test] index in the series of each window's first target
    train_first_target: np.ndarray
    train_raw: np.ndarray
    test_raw: np.ndarray
    train_truth: np.ndarray
    test_truth: np.ndarray


def make_windows(series: Series, transform: Transform, window: int, horizon: int, test_size: int) -> Windows:
    """Cut windows; a window is held out when its first target lies in the last ``test_size`` values."""
    n = len(series)
    n_train = n - test_size
    table = transform.model_inputs(series).astype(np.float32)
    first = transform.lag  # earliest index with a defined transformed value
    raw = raw_table(series)
    xs, ys, rs, starts = [], [], [], []
    for t in range(first + window, n - horizon + 1):
        xs.append(table[t - window: t])
        ys.append(table[t: t + horizon, 0])
        rs.append(raw[t - window - transform.lag: t])
        starts.append(t)
    starts = np.array(starts, dtype=np.int64)
    x = np.array(xs, dtype=np.float32).reshape(-1, window, table.shape[1])
    y = np.array(ys, dtype=np.float32).reshape(-1, horizon)
    r = np.array(rs, dtype=np.float32).reshape(-1, window + transform.lag, table.shape[1])
    tr = truth(series, starts, horizon).astype(np.float32)
    train = starts + horizon <= n_train
    test = starts >= n_train
    if train.sum() < 2 or test.sum() < 1:
        raise DataError(
            f"Too few rows: {n} values give {int(train.sum())} training and {int(test.sum())} held-out windows "
            f"for window {window}, horizon {horizon}, {test_size} held out and transform '{transform.spec}'. "
            f"Need at least {first + window + horizon + test_size + 1} rows, or a smaller --window/--test-size.")
    return Windows(x[train], y[train], x[test], y[test], starts[test], starts[train], r[train], r[test], tr[train],
                   tr[test])


def raw_table(series: Series) -> np.ndarray:
    """[n, 1 + k]: the target and feature columns in the data's units."""
    return np.concatenate([series.values[:, None], series.features.reshape(len(series), -1)], axis=1)


def class_labels(series: Series) -> np.ndarray:
    """The target column as class indices 0..K-1; DataError unless it holds whole numbers >= 0."""
    labels = series.values
    if np.any(labels < 0) or np.any(labels != np.round(labels)):
        bad = labels[(labels < 0) | (labels != np.round(labels))][0]
        raise DataError(f"Column '{series.column}' holds {bad:g}; a classification target must hold class indices "
                        "0, 1, 2, ...")
    if len(np.unique(labels)) < 2:
        raise DataError(f"Column '{series.column}' has a single class; classification needs at least two.")
    return labels.astype(np.int64)


def make_class_windows(series: Series, transform: Transform, window: int, test_size: int) -> Windows:
    """Feature windows labelled with the class at their last step; held out when that step is in the tail."""
    if not series.feature_names:
        raise DataError("Classification needs --features: the input columns (the target column is the label).")
    labels = class_labels(series)
    table = ((series.features - transform.feature_mean) / transform.feature_std).astype(np.float32)
    n, n_train = len(series), len(series) - test_size
    ends = np.arange(window, n + 1)  # window covers [end - window, end), labelled at end - 1
    x = np.stack([table[e - window: e] for e in ends]).astype(np.float32)
    r = np.stack([series.features[e - window: e] for e in ends]).astype(np.float32)
    y = labels[ends - 1]
    train, test = ends - 1 < n_train, ends - 1 >= n_train
    if train.sum() < 2 or test.sum() < 1:
        raise DataError(f"Too few rows: {n} values give {int(train.sum())} training and {int(test.sum())} held-out "
                        f"windows for window {window} and {test_size} held out.")
    y = y.astype(np.float32)[:, None]
    return Windows(x[train], y[train], x[test], y[test], ends[test] - 1, ends[train] - 1, r[train], r[test], y[train],
                   y[test])


def write_classification_csv(path: Path, rows: int = 600, seed: int = 0) -> Path:
    """A generated sequence-classification task with a known answer: the label says whether the mean of feature
    ``a`` over the last 6 steps is below -0.25 (0), between (1) or above 0.25 (2); ``b`` is noise."""
    rng = np.random.default_rng(seed)
    a = np.convolve(rng.normal(size=rows + 5), np.ones(3) / 3, mode="same")[:rows]
    b = rng.normal(size=rows)
    mean6 = np.array([a[max(0, i - 5): i + 1].mean() for i in range(rows)])
    label = np.where(mean6 < -0.25, 0, np.where(mean6 > 0.25, 2, 1))
    lines = ["step,a,b,label"] + [f"{i},{a[i]:.5f},{b[i]:.5f},{label[i]}" for i in range(rows)]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


EDGE_CASES = ("train_min", "train_max", "step_min_to_max", "step_max_to_min")


def edge_cases(time_steps: int, features: int, lo, hi) -> np.ndarray:
    """Return the four edge-case sequences [4, T, F], in EDGE_CASES order, for an input range [lo, hi] (numbers, or
    one per column): the range's ends held for the whole window, and a step from one end to the other half way.
    (Models read raw values, so an all-zero window is no edge of their range: for a series near 600 it is a
    level never seen, and for a log transform not even a valid one.)"""
    shape = (time_steps, features)
    lo_w, hi_w = np.full(shape, lo, np.float32), np.full(shape, hi, np.float32)
    up, down = lo_w.copy(), hi_w.copy()
    up[time_steps // 2:], down[time_steps // 2:] = hi_w[time_steps // 2:], lo_w[time_steps // 2:]
    return np.stack([lo_w, hi_w, up, down])


def edge_windows(shape: tuple, lo, hi) -> np.ndarray:
    """``edge_cases`` shaped like windows of ``shape`` (T, F), or (T,) for token ids: [4, *shape]."""
    return edge_cases(shape[0], shape[1] if len(shape) > 1 else 1, lo, hi).reshape(-1, *shape)


def write_synthetic_csv(path: Path, rows: int = 300, seed: int = 0) -> Path:
    """Write a generated multivariate series (target y, features a, b, c) for tests and benchmarks."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    a, b, c = np.sin(t / 7), np.cos(t / 11), rng.normal(size=rows) * 0.3
    y = np.sin(t / 5) + 0.5 * a + 0.2 * np.roll(c, 2) + 0.01 * t
    lines = ["step,y,a,b,c"] + [f"{i},{y[i]:.5f},{a[i]:.5f},{b[i]:.5f},{c[i]:.5f}" for i in range(rows)]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def naive_forecast(series: Series, first_target: np.ndarray, horizon: int) -> np.ndarray:
    """Last observed value, repeated for every step ahead."""
    return np.repeat(series.values[first_target - 1][:, None], horizon, axis=1)


def seasonal_naive_forecast(series: Series, first_target: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The value one (or more) seasons before each target, using observed values only."""
    out = np.empty((len(first_target), horizon))
    for i, t in enumerate(first_target):
        for k in range(horizon):
            out[i, k] = series.values[t + k - season * math.ceil((k + 1) / season)]
    return out


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, float) - np.asarray(truth, float)) ** 2)))


def truth(series: Series, first_target: np.ndarray, horizon: int) -> np.ndarray:
    return np.stack([series.values[first_target + k] for k in range(horizon)], axis=1)
