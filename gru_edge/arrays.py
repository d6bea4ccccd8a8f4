"""Your data for calibration and checking: windows and targets from numpy arrays or .npy / .npz / .csv files, checked
against the model's input. No TensorFlow.

File forms:
- ``.npy``: one array; ``.npz``: the array named ``x`` (windows) or ``y`` (targets), else its only array (a
  gru-edge windows.npz gives ``train_x`` / ``test_x``);
- ``.csv``: one window per row, its T x F values time-major (t0f0, t0f1, ..., t1f0, ...); one header row of names is
  skipped. Targets: one row per window.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gru_edge.errors import DataError

SUFFIXES = (".npy", ".npz", ".csv")


class Loaded(NamedTuple):
    values: np.ndarray  # float32
    where: str  # the file, or "the array given": what error messages name
    source: str  # what reports and sidecars say, e.g. "samples: 50 from tok.csv"


def load(source, what: str, key: str = "x", prefer: str = "train") -> Loaded:
    """``source`` (an array-like or a path) read as float32; from an .npz the array ``key``, else ``{prefer}_{key}``
    (a gru-edge windows.npz: train for calibration, test for samples)."""
    if not isinstance(source, (str, Path)):
        try:
            arr = np.asarray(source)
        except (ValueError, TypeError) as e:
            raise DataError(f"The {what} are not an array of numbers ({e}).") from None
        where = "the array given"
        return Loaded(_numeric(arr, what, where), where, f"{what}: an array of {len(arr)} given by the caller")
    path = Path(source)
    if not path.is_file():
        raise DataError(f"{what.capitalize()} file not found: {path}. Give a .npy, .npz or .csv file.")
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path.name}: {what} are read from {', '.join(SUFFIXES)} files, not '{path.suffix}'.")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if not isinstance(arr, np.ndarray):
                arr.close()
                raise DataError(f"{path.name} is an .npz archive named .npy; rename it to .npz.")
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                other = "test" if prefer == "train" else "train"
                names = [n for n in (key, f"{prefer}_{key}", f"{other}_{key}") if n in z.files] or (
                    z.files if len(z.files) == 1 else [])
                if not names:
                    raise DataError(f"{path.name} holds {', '.join(z.files) or 'no arrays'}; name the {what} "
                                    f"'{key}' (or save one array only).")
                arr = z[names[0]]
        else:
            arr = _csv(path, what)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path.name} is not a readable {path.suffix} file ({str(e)[:120]}).") from None
    arr = _numeric(arr, what, path.name)
    return Loaded(arr, str(path), f"{what}: {len(arr)} from {path}")


def _csv(path: Path, what: str) -> np.ndarray:
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append([float(v) for v in line.split(",")])
        except ValueError:
            if i == 0:
                continue  # a header row
            raise DataError(f"{path.name} line {i + 1}: not a row of numbers ({line[:60]!r}).") from None
    if not rows:
        raise DataError(f"{path.name} holds no rows of numbers; give one {what[:-1]} per row.")
    if len({len(r) for r in rows}) != 1:
        raise DataError(f"{path.name}: rows have different numbers of values ({sorted({len(r) for r in rows})}); "
                        "every row is one window of the same length.")
    return np.array(rows)


def _numeric(arr: np.ndarray, what: str, where: str) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where}: the {what} have dtype {arr.dtype}; give numbers (float or integer).")
    if arr.ndim == 0 or len(arr) == 0:
        raise DataError(f"{where}: no {what} in it (shape {list(arr.shape)}).")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise DataError(f"{where}: the {what} hold NaN or infinite values; give finite numbers.")
    return arr


def value_range(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (min, max) of windows [N, T, F] (or [N, T] token ids)."""
    flat = windows.reshape(len(windows), windows.shape[1], -1)
    return flat.min(axis=(0, 1)), flat.max(axis=(0, 1))


def as_windows(arr: np.ndarray, input_shape: tuple, what: str, where: str) -> np.ndarray:
    """``arr`` as [N, *input_shape]: exact, or one flat row per window (CSV), or [N, T, 1] for a [T] input."""
    shape = tuple(int(d) for d in input_shape)
    if tuple(arr.shape[1:]) == shape:
        return np.ascontiguousarray(arr, np.float32)
    if arr.ndim == 2 and arr.shape[1] == math.prod(shape) or arr.ndim == len(shape) + 2 and arr.shape[-1] == 1 \
            and tuple(arr.shape[1:-1]) == shape:
        return np.ascontiguousarray(arr.reshape(len(arr), *shape), np.float32)
    raise DataError(f"{where}: the {what} are shaped {list(arr.shape)}; the model takes [N, "
                    f"{', '.join(map(str, shape))}] (or one row of {math.prod(shape)} values per window).")


def check_tokens(windows: np.ndarray, vocabulary: int | None, what: str, where: str) -> None:
    """DataError unless every value is a token id in [0, vocabulary) (models whose input feeds an Embedding)."""
    if vocabulary is None:
        return
    bad = (windows < 0) | (windows >= vocabulary) | (windows != np.round(windows))
    if bad.any():
        raise DataError(f"{where}: the {what} feed an Embedding of {vocabulary} tokens, so every value must be a whole "
                        f"number from 0 to {vocabulary - 1}; {int(bad.sum())} are not (e.g. {windows[bad][0]:g}).")


def as_targets(arr: np.ndarray, n: int, width: int, classes: bool, where: str) -> np.ndarray:
    """Targets as [N, width]: the same shape as the outputs, or class indices [N] / [N, 1] one-hot encoded."""
    if len(arr) != n:
        raise DataError(f"{where}: {len(arr)} targets for {n} samples; give one target row per sample.")
    flat = arr.reshape(n, -1)
    if flat.shape[1] == width:
        return flat.astype(np.float32)
    if classes and flat.shape[1] == 1 and np.all(flat == np.round(flat)) and flat.min() >= 0 and flat.max() < width:
        return np.eye(width, dtype=np.float32)[flat[:, 0].astype(np.int64)]
    raise DataError(f"{where}: targets shaped {list(arr.shape)}; the model's outputs are [N, {width}]"
                    f"{' (or class indices [N])' if classes else ''}.")
