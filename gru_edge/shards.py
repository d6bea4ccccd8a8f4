"""Data bigger than memory: shards read as a stream of windows. No TensorFlow.

``gru-edge train --data 'logs/*.csv'`` names shards: CSV files with a header row, or Parquet files (through
pyarrow), each one series (one device's log). Windows never cross a shard's ends; each shard's last values are its
hold-out and the last values of its training part its validation part; the transform's statistics come from one
streaming pass over the training parts. Nothing holds a whole shard: files are read ``CHUNK`` rows at a time, and a
CSV shard keeps the byte offset of every chunk, so a pass over a shard's tail starts there instead of at its top.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from gru_edge import data
from gru_edge.errors import DataError

CHUNK = 8192  # rows read at a time
SAMPLE = 1024  # training windows kept for calibration, held-out windows kept for parity bundles
SUFFIXES = (".csv", ".parquet")
PARTS = ("fit", "validation", "heldout")


def is_shards(spec: str) -> bool:
    """Whether ``--data`` names shards (a pattern, a folder or a Parquet file) rather than one in-memory series."""
    return any(c in spec for c in "*?[") or Path(spec).is_dir() or Path(spec).suffix == ".parquet"


def find(spec: str) -> list[Path]:
    """The shard files ``spec`` names, sorted: a glob pattern ('logs/*.csv', 'logs/**/*.parquet'), a folder (its
    .csv and .parquet files) or one file."""
    path = Path(spec)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file()]
    elif path.is_file():
        files = [path]
    else:
        files = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    files = sorted(files)
    if not files:
        raise DataError(f"No data files match '{spec}'. Give a CSV file, a pattern such as 'logs/*.csv', or a "
                        "folder of .csv / .parquet files.")
    wrong = [p for p in files if p.suffix not in SUFFIXES]
    if wrong:
        raise DataError(f"{wrong[0]} is not a .csv or .parquet file; shards are CSV files with a header row or "
                        "Parquet files.")
    return files


@dataclass(frozen=True)
class Shard:
    path: Path
    rows: int
    offsets: tuple[int, ...]  # CSV: byte offset of rows 0, CHUNK, 2 * CHUNK, ...; Parquet: row group sizes

    def split(self, test_size: int | None, validation: float, horizon: int) -> tuple[int, int]:
        """(training rows, validation rows): the hold-out is ``test_size`` rows or 20% of the shard, the validation
        part the training part's last ``validation`` share."""
        test = test_size or max(1, int(round(self.rows * data.CSV_DEFAULTS["test_fraction"])))
        n_train = self.rows - test
        return n_train, max(horizon, int(round(validation * n_train)))


@dataclass(frozen=True)
class Shards:
    spec: str
    column: str
    features: tuple[str, ...]
    shards: tuple[Shard, ...]
    sha256: str  # of the shards' names and bytes, in order

    @property
    def wanted(self) -> tuple[str, ...]:
        return (self.column, *self.features)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)


def _numbers(cells: list[list[str]], index: list[int], names: tuple[str, ...], where: Path, lines: list[int]):
    """[m, len(index)] float64 of the rows ``cells`` (on file ``lines``); DataError naming the file, line and column
    of a bad cell."""
    try:
        table = np.array([[row[i] if i < len(row) else "" for i in index] for row in cells], dtype=np.float64)
        if (np.abs(table) <= data.LARGEST).all():
            return table
    except ValueError:
        pass
    for r, row in enumerate(cells):
        for j, i in enumerate(index):
            cell = row[i].strip() if i < len(row) else ""
            try:
                ok = abs(float(cell)) <= data.LARGEST
            except ValueError:
                ok = False
            if not ok:
                raise DataError(f"{where}, line {lines[r]}, column '{names[j]}': '{cell}' is not a finite number "
                                f"within ±{data.LARGEST:.0e} (float32); the target and feature columns must hold "
                                "numbers only (no NaN or inf).")
    raise AssertionError("unreachable")


def _csv_chunks(path: Path, column, features, offset: int = 0, on_line=None) -> Iterator[tuple[tuple, np.ndarray]]:
    """(wanted columns, chunk [m, columns]) of a CSV file, CHUNK rows at a time from byte ``offset`` (a row
    boundary; 0: the first data row); ``on_line(raw bytes, row index)`` sees every data line."""
    with open(path, "rb") as fh:
        head, number = b"", 0
        while not head.removeprefix(b"\xef\xbb\xbf").strip():
            head, number = fh.readline(), number + 1
            if not head:
                raise DataError(f"{path} is empty: a CSV shard needs a header row and one row per time step.")
        try:
            if b"\r" in head.rstrip(b"\r\n"):
                raise csv.Error("a line ends in CR alone")
            header = [h.strip() for h in next(csv.reader([head.decode("utf-8-sig")]))]
        except (UnicodeDecodeError, csv.Error):
            raise DataError(f"{path} does not start with a header row of UTF-8 CSV text (lines ending in LF or "
                            "CRLF).") from None
        wanted = data.columns(header, column, features, path)
        index = [header.index(w) for w in wanted]
        if offset:
            fh.seek(offset)
        lines, numbers, row = [], [], 0
        for raw in fh:
            number += 1
            if not raw.strip():
                continue
            if on_line:
                on_line(raw, row, fh)
            lines.append(raw)
            numbers.append(number)
            row += 1
            if len(lines) == CHUNK:
                yield wanted, _parse(lines, index, wanted, path, numbers)
                lines, numbers = [], []
        if lines:
            yield wanted, _parse(lines, index, wanted, path, numbers)


def _parse(lines, index, wanted, path, numbers):
    try:
        cells = list(csv.reader(line.decode("utf-8") for line in lines))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path} is not a UTF-8 text CSV file with one row per line ({e}).") from None
    return _numbers(cells, index, wanted, path, numbers)


def _parquet_chunks(path: Path, column, features, groups: int = 0) -> Iterator[tuple[tuple, np.ndarray]]:
    """As _csv_chunks for a Parquet file, from row group ``groups`` on."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"Reading {path.name} needs pyarrow: pip install 'gru-edge[parquet]'.") from None
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        # pandas writes its index as a last column; it is no series
        wanted = data.columns([n for n in schema.names if not n.startswith("__index_level_")], column, features, path)
        for w in wanted:
            kind = schema.field(w).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
                raise DataError(f"{path}: column '{w}' holds {kind}, not numbers; the target and feature columns "
                                "must be integer, floating-point or decimal.")
        row = sum(pf.metadata.row_group(g).num_rows for g in range(groups))
        for batch in pf.iter_batches(batch_size=CHUNK, columns=list(wanted),
                                     row_groups=range(groups, pf.num_row_groups)):
            table = np.stack([batch.column(w).to_numpy(zero_copy_only=False).astype(np.float64) for w in wanted],
                             1)
            bad = ~(np.abs(table) <= data.LARGEST)
            if bad.any():
                r, j = np.argwhere(bad)[0]
                raise DataError(f"{path}, row {row + r + 1}, column '{wanted[j]}': not a finite number within "
                                f"±{data.LARGEST:.0e} (float32; null, NaN and inf are not allowed).")
            row += len(table)
            yield wanted, table
    except DataError:
        raise
    except Exception as e:  # pyarrow raises several types for a damaged file
        first = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise DataError(f"{path} is not a readable Parquet file: {first}") from None


def _row_groups(path: Path) -> list[int]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]


def scan(spec: str, column: str | None = None, features: tuple[str, ...] = ()) -> Shards:
    """Read every shard once: check its columns and numbers, count its rows, note its chunks' offsets and hash it."""
    digest, shards, names = hashlib.sha256(), [], None
    for path in find(spec):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        offsets: list[int] = []
        if path.suffix == ".parquet":
            chunks = _parquet_chunks(path, column, features)
        else:
            def on_line(raw, row, fh):
                if row % CHUNK == 0:
                    offsets.append(fh.tell() - len(raw))
            chunks = _csv_chunks(path, column, features, on_line=on_line)
        rows = 0
        for wanted, chunk in chunks:
            rows += len(chunk)
        if path.suffix == ".parquet":
            offsets = _row_groups(path)
        if rows == 0:
            wanted = None
        if wanted is not None:
            if names is not None and wanted != names:
                raise DataError(f"{path} reads columns {', '.join(wanted)} but the first shard "
                                f"{', '.join(names)}; name them with --column and --features.")
            names = wanted
        shards.append(Shard(path, rows, tuple(offsets)))
    if names is None:
        raise DataError(f"The files matching '{spec}' have no data rows.")
    return Shards(spec, names[0], tuple(names[1:]), tuple(shards), digest.hexdigest())


def read(shards: Shards, shard: Shard, start: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """(index of the first row, chunk [m, 1 + features]) of ``shard`` from the chunk holding row ``start``."""
    if shard.path.suffix == ".parquet":
        groups, row = 0, 0
        while groups < len(shard.offsets) and row + shard.offsets[groups] <= start:
            row, groups = row + shard.offsets[groups], groups + 1
        chunks = _parquet_chunks(shard.path, shards.column, shards.features, groups)
    else:
        k = min(start // CHUNK, len(shard.offsets) - 1) if shard.offsets else 0
        chunks, row = _csv_chunks(shard.path, shards.column, shards.features, shard.offsets[k] if k else 0), k * CHUNK
    for _, chunk in chunks:
        if row + len(chunk) > start:
            yield row, chunk
        row += len(chunk)


class _Moments:
    """Count, mean and sum of squared deviations per column, merged chunk by chunk (Chan et al.), NaN skipped."""

    def __init__(self, columns: int):
        self.n, self.mean, self.m2 = np.zeros(columns), np.zeros(columns), np.zeros(columns)

    def add(self, x: np.ndarray) -> None:
        ok = np.isfinite(x)
        n = ok.sum(axis=0)
        if not n.any():
            return
        mean = np.where(n > 0, np.nansum(x, axis=0) / np.maximum(n, 1), 0.0)
        m2 = np.nansum((x - mean) ** 2, axis=0)
        total = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * np.where(total > 0, n / np.maximum(total, 1), 0)
        self.m2 = self.m2 + m2 + delta ** 2 * np.where(total > 0, self.n * n / np.maximum(total, 1), 0)
        self.n = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / np.maximum(self.n, 1))


@dataclass(frozen=True)
class Fitted:
    transform: data.Transform
    low: list[float]  # per column, the training parts' raw minimum
    high: list[float]
    train_rows: int


def fit_transform(shards: Shards, spec: str, test_size: int | None, validation: float, horizon: int) -> Fitted:
    """The transform's scaling fitted in one streaming pass over every shard's training part."""
    log, diffs = data.parse_transform(spec)
    lag = sum(diffs)
    moments = _Moments(1 + len(shards.features))
    low = np.full(1 + len(shards.features), np.inf)
    high = -low
    train_rows = 0
    for shard in shards.shards:
        n_train, _ = shard.split(test_size, validation, horizon)
        train_rows += max(n_train, 0)
        carry = np.zeros(0)
        for row, chunk in read(shards, shard):
            if log and np.any(chunk[:, 0] <= 0):  # held-out values too: the model takes their log
                raise DataError(f"Transform 'log' needs positive values; {shard.path} has values <= 0 in column "
                                f"'{shards.column}'. Use --transform none or diff.")
            part = chunk[: max(0, n_train - row)]
            if not len(part):
                if log:
                    continue
                break
            level = np.r_[carry, np.log(part[:, 0]) if log else part[:, 0]]
            z = data.difference(level, diffs)[len(carry):]
            carry = level[-lag:] if lag else carry
            moments.add(np.c_[z, part[:, 1:]])
            low, high = np.minimum(low, part.min(axis=0)), np.maximum(high, part.max(axis=0))
    if moments.n[0] < 2:
        sizes = [s.rows for s in shards.shards]
        raise DataError(f"Too few training values ({int(moments.n[0])}) in {len(sizes)} shards of {min(sizes)} to "
                        f"{max(sizes)} rows for transform '{spec}' after holding out "
                        f"{test_size or '20% of each shard'}; give a smaller --test-size or longer shards.")
    std = np.where(moments.std > 0, moments.std, 1.0)
    transform = data.Transform(log=log, diffs=diffs, mean=float(moments.mean[0]), std=float(std[0]),
                               feature_mean=tuple(float(v) for v in moments.mean[1:]),
                               feature_std=tuple(float(v) for v in std[1:]))
    return Fitted(transform, [float(v) for v in low], [float(v) for v in high], train_rows)


@dataclass(frozen=True)
class Block:
    """Consecutive windows of one shard: ``x`` [m, window, F] and ``y`` [m, horizon] scaled for the GRU core,
    ``raw`` [m, window + lag, F] and ``truth`` [m, horizon] in the data's units, ``first`` [m] each window's first
    target's row in the shard, ``naive`` and ``seasonal`` [m, horizon] the baselines (NaN where no value)."""

    x: np.ndarray
    y: np.ndarray
    raw: np.ndarray
    truth: np.ndarray
    first: np.ndarray
    naive: np.ndarray
    seasonal: np.ndarray


@dataclass(frozen=True)
class Plan:
    """How windows are cut from the shards."""

    shards: Shards
    transform: data.Transform
    window: int
    horizon: int
    test_size: int | None
    validation: float
    season: int | None = None

    def span(self, shard: Shard, part: str) -> tuple[int, int]:
        """The first and last first-target row of ``part``'s windows in ``shard`` (empty when first > last)."""
        n_train, v = shard.split(self.test_size, self.validation, self.horizon)
        lo = self.transform.lag + self.window
        if part == "fit":
            return lo, n_train - v - self.horizon
        if part == "validation":
            return max(lo, n_train - v), n_train - self.horizon
        return max(lo, n_train), shard.rows - self.horizon

    def count(self, part: str) -> int:
        return sum(max(0, b - a + 1) for a, b in (self.span(s, part) for s in self.shards.shards))

    def kept(self, part: str) -> Iterator[tuple[int, Block, np.ndarray]]:
        """(shard index, block, mask) for every block of ``part`` in every shard; the masks keep every k-th window,
        at most SAMPLE in all (what the run folder keeps)."""
        stride, seen = every(self.count(part)), 0
        for s, shard in enumerate(self.shards.shards):
            for b in self.blocks(shard, part):
                yield s, b, (np.arange(seen, seen + len(b.first)) % stride) == 0
                seen += len(b.first)

    def blocks(self, shard: Shard, part: str) -> Iterator[Block]:
        """``part``'s windows of ``shard``, in order, a chunk at a time."""
        first, last = self.span(shard, part)
        if first > last:
            return
        lag, w, h, season = self.transform.lag, self.window, self.horizon, self.season or 0
        before = max(lag + w, season)  # rows a window (and its seasonal-naive baseline) reads before its target
        keep = before + h - 1
        buf, buf_start, t = np.zeros((0, 1 + len(self.shards.features))), max(0, first - before), first
        for row, chunk in read(self.shards, shard, buf_start):
            if row < buf_start:
                chunk = chunk[buf_start - row:]
            block = np.concatenate([buf, chunk]) if len(buf) else chunk
            end = buf_start + len(block)
            top = min(last, end - h)
            if top >= t:
                yield self._cut(block, buf_start, t, top)
                t = top + 1
            if t > last:
                return
            buf, buf_start = block[-keep:], end - min(keep, len(block))

    def _cut(self, block: np.ndarray, start: int, t0: int, t1: int) -> Block:
        lag, w, h = self.transform.lag, self.window, self.horizon
        series = data.Series("", "", self.shards.column, block[:, 0], self.shards.features, block[:, 1:])
        z = self.transform.model_inputs(series).astype(np.float32)
        t = np.arange(t0, t1 + 1)
        local = t - start
        steps = np.arange(-w, 0)
        x = z[local[:, None] + steps]
        y = z[local[:, None] + np.arange(h), 0]
        raw = block[local[:, None] + np.arange(-w - lag, 0)].astype(np.float32)
        truth = block[local[:, None] + np.arange(h), 0]
        naive = np.repeat(block[local - 1, 0][:, None], h, axis=1)
        seasonal = np.full((len(t), h), np.nan)
        if self.season:
            for k in range(h):
                back = local + k - self.season * math.ceil((k + 1) / self.season)
                ok = back >= 0
                seasonal[ok, k] = block[back[ok], 0]
        return Block(x, y.astype(np.float32), raw, truth, t, naive, seasonal)


def every(total: int, n: int = SAMPLE) -> int:
    """The stride that keeps at most ``n`` of ``total`` windows."""
    return max(1, math.ceil(total / n))
