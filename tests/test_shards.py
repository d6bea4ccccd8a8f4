"""Shards streamed as windows (gru_edge.shards), checked against the in-memory path. No TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest

from gru_edge import data, shards
from gru_edge.errors import DataError


def _shard(path, rows: int, shard: int, seed: int = 0):
    """A positive series whose values say which shard and row they come from: 1000 * (shard + 1) + row (+ noise in
    the features)."""
    rng = np.random.default_rng(seed + shard)
    t = np.arange(rows)
    y = 1000.0 * (shard + 1) + t + 0.5 + 0.4 * np.sin(t / 3)
    lines = ["step,y,a"] + [f"{i},{y[i]:.4f},{v:.4f}" for i, v in zip(t, rng.normal(size=rows))]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def three(tmp_path):
    for s, rows in enumerate((90, 61, 120)):
        _shard(tmp_path / f"dev{s}.csv", rows, s)
    return tmp_path


@pytest.fixture(params=[5, 64], ids=["chunk5", "chunk64"])
def chunk(request, monkeypatch):
    """Small chunks make every pass cross chunk boundaries and seek to a chunk's byte offset."""
    monkeypatch.setattr(shards, "CHUNK", request.param)
    return request.param


def _plan(found, spec="log,diff1", window=6, horizon=2, test_size=10, season=None):
    fitted = shards.fit_transform(found, spec, test_size, 0.2, horizon)
    return shards.Plan(found, fitted.transform, window, horizon, test_size, 0.2, season), fitted


def test_windows_never_cross_a_shard_and_the_hold_out_is_each_shards_tail(three, chunk):
    found = shards.scan(str(three / "*.csv"), "y", ("a",))
    assert [s.rows for s in found.shards] == [90, 61, 120] and found.rows == 271
    plan, _ = _plan(found)
    counted = dict.fromkeys(shards.PARTS, 0)
    for s, shard in enumerate(found.shards):
        n_train, v = shard.split(10, 0.2, 2)
        firsts = {}
        for part in shards.PARTS:
            blocks = list(plan.blocks(shard, part))
            first = np.concatenate([b.first for b in blocks])
            raw = np.concatenate([b.raw for b in blocks])[:, :, 0]
            truth = np.concatenate([b.truth for b in blocks])
            # every value of a window and its targets comes from this shard, in consecutive rows
            rows = np.floor(np.c_[raw, truth] - 1000.0 * (s + 1)).astype(int)
            assert (rows == first[:, None] + np.arange(-7, 2)).all()
            firsts[part] = first
            counted[part] += len(first)
        assert firsts["fit"].max() + 2 <= n_train - v <= firsts["validation"].min()
        assert firsts["validation"].max() + 2 <= n_train <= firsts["heldout"].min()
        assert firsts["heldout"].max() == shard.rows - 2
        # no window lost: only those whose targets straddle two parts (horizon 2: one at each border) are in none
        assert sorted(np.diff(np.concatenate([firsts[p] for p in shards.PARTS])))[-3:] == [1, 2, 2]
    assert counted == {p: plan.count(p) for p in shards.PARTS}


def test_one_shard_gives_what_the_in_memory_path_gives(three, chunk):
    """Statistics from the streaming pass, windows, targets and baselines equal data.fit_transform/make_windows."""
    path = three / "dev2.csv"
    found = shards.scan(str(path), "y", ("a",))
    plan, fitted = _plan(found, season=4)
    series = data.load_series(path, "y", ("a",))
    transform = data.fit_transform(series, 110, "log,diff1")
    for name in ("mean", "std", "feature_mean", "feature_std"):
        assert np.allclose(getattr(fitted.transform, name), getattr(transform, name), rtol=1e-10), name
    win = data.make_windows(series, transform, 6, 2, 10)
    got = {p: list(plan.blocks(found.shards[0], p)) for p in shards.PARTS}
    n_train, v = found.shards[0].split(10, 0.2, 2)
    masks = {"fit": win.train_first_target + 2 <= n_train - v, "validation": win.train_first_target >= n_train - v}
    for part, mask in masks.items():  # the windows the in-memory path fits on and validates on
        assert np.allclose(np.concatenate([b.x for b in got[part]]), win.train_x[mask], atol=1e-5)
        assert np.allclose(np.concatenate([b.y for b in got[part]]), win.train_y[mask], atol=1e-5)
    assert np.array_equal(np.concatenate([b.raw for b in got["heldout"]]), win.test_raw)
    assert np.allclose(np.concatenate([b.truth for b in got["heldout"]]), win.test_truth)
    first = np.concatenate([b.first for b in got["heldout"]])
    assert np.array_equal(first, win.test_first_target)
    assert np.allclose(np.concatenate([b.naive for b in got["heldout"]]), data.naive_forecast(series, first, 2))
    assert np.allclose(np.concatenate([b.seasonal for b in got["heldout"]]),
                       data.seasonal_naive_forecast(series, first, 2, 4))
    assert fitted.low == data.raw_table(series)[:110].min(axis=0).tolist()


def test_statistics_pool_every_shards_training_part_only(three, chunk):
    found = shards.scan(str(three), "y", ("a",))  # a folder names its .csv files
    _, fitted = _plan(found, spec="diff1")
    z, feats = [], []
    for shard in found.shards:
        series = data.load_series(shard.path, "y", ("a",))
        n_train, _ = shard.split(10, 0.2, 2)
        z.append(np.diff(series.values[:n_train]))
        feats.append(series.features[:n_train, 0])
    z, feats = np.concatenate(z), np.concatenate(feats)
    t = fitted.transform
    assert np.isclose(t.mean, z.mean()) and np.isclose(t.std, z.std())
    assert np.isclose(t.feature_mean[0], feats.mean()) and np.isclose(t.feature_std[0], feats.std())
    assert fitted.train_rows == 271 - 30


def test_parquet_shards_read_as_the_csv_ones(three, tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet shards need the parquet extra (in the test extra)")
    import pyarrow.parquet as pq

    out = tmp_path / "pq"
    out.mkdir()
    for path in sorted(three.glob("*.csv")):
        series = data.load_series(path, "y", ("a",))
        pq.write_table(pa.table({"a": series.features[:, 0], "y": series.values}), out / f"{path.stem}.parquet",
                       row_group_size=16)
    a = shards.scan(str(three / "*.csv"), "y", ("a",))
    b = shards.scan(str(out / "*.parquet"), "y", ("a",))
    assert [s.rows for s in a.shards] == [s.rows for s in b.shards]
    pa_, pb = _plan(a)[0], _plan(b)[0]
    for sa, sb in zip(a.shards, b.shards):
        xa = np.concatenate([blk.raw for blk in pa_.blocks(sa, "heldout")])
        xb = np.concatenate([blk.raw for blk in pb.blocks(sb, "heldout")])
        assert np.allclose(xa, xb)


@pytest.mark.parametrize("setup, spec, message", [
    (lambda d: None, "*.csv", "No data files match"),
    (lambda d: (d / "x.txt").write_text("a\n1\n"), "*", "is not a .csv or .parquet file"),
    (lambda d: (d / "x.csv").write_text("y,a\n1,2\n3,oops\n"), "*.csv", "x.csv, line 3, column 'a': 'oops'"),
    (lambda d: (d / "x.csv").write_text("y,a\n1,nan\n"), "*.csv", "not a finite number"),
    (lambda d: ((d / "x.csv").write_text("y,a\n1,2\n"), (d / "z.csv").write_text("y,b\n1,2\n")), "*.csv",
     "Column 'a' not in"),
    (lambda d: (d / "x.csv").write_text("y,a\n"), "*.csv", "have no data rows"),
    (lambda d: (d / "x.csv").write_text(""), "*.csv", "x.csv is empty"),
    (lambda d: (d / "x.csv").write_text("y,a,y\n1,2,3\n"), "*.csv", "Column 'y' appears 2 times in the header"),
    (lambda d: (d / "x.csv").write_text("y,a\n1,2\n1e300,2\n"), "*.csv",
     "line 3, column 'y': '1e300' is not a finite number within"),
    (lambda d: (d / "x.csv").write_text("\n\ny,a\n1,2\n\n\n3,x\n"), "*.csv", "line 7, column 'a': 'x'"),
    (lambda d: (d / "x.csv").write_bytes(b"y,a\r1,2\r3,4\r"), "*.csv", "lines ending in LF or CRLF"),
    (lambda d: (d / "x.parquet").write_bytes(b"PAR1 not really"), "*.parquet", "not a readable Parquet file"),
])
def test_bad_shards_are_one_line_naming_the_file(tmp_path, setup, spec, message):
    setup(tmp_path)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(".", r"\.")) as e:
        shards.scan(str(tmp_path / spec), "y", ("a",))
    assert "\n" not in str(e.value)


def test_crlf_a_bom_and_blank_lines_read_as_plain_lines(three, tmp_path, chunk):
    plain = shards.scan(str(three / "dev0.csv"), "y", ("a",))
    text = (three / "dev0.csv").read_text().splitlines()
    odd = tmp_path / "odd" / "dev0.csv"
    odd.parent.mkdir()
    odd.write_bytes(b"\xef\xbb\xbf\r\n" + "\r\n".join(text[:30] + [""] + text[30:]).encode() + b"\r\n")
    other = shards.scan(str(odd), "y", ("a",))
    assert other.shards[0].rows == plain.shards[0].rows == 90
    a, b = _plan(plain)[0], _plan(other)[0]
    for part in shards.PARTS:
        xa = np.concatenate([blk.raw for blk in a.blocks(plain.shards[0], part)])
        assert np.array_equal(xa, np.concatenate([blk.raw for blk in b.blocks(other.shards[0], part)]))


def test_log_refuses_a_non_positive_value_anywhere_naming_the_shard(three):
    lines = (three / "dev1.csv").read_text().splitlines()
    lines[-1] = "60,-1.0,0.5"  # in the held-out part
    (three / "dev1.csv").write_text("\n".join(lines) + "\n")
    found = shards.scan(str(three / "*.csv"), "y", ("a",))
    with pytest.raises(DataError, match="dev1.csv has values <= 0"):
        shards.fit_transform(found, "log", 10, 0.2, 1)
    shards.fit_transform(found, "diff1", 10, 0.2, 1)  # no log: fine


def test_a_shard_shorter_than_the_lag_gives_no_window_and_no_error(three):
    (three / "short.csv").write_text("step,y,a\n0,5,1\n1,6,2\n2,7,3\n")
    found = shards.scan(str(three / "*.csv"), "y", ("a",))
    plan, _ = _plan(found, spec="diff12", window=3, horizon=1, test_size=1)
    short = [s for s in found.shards if s.path.name == "short.csv"][0]
    assert all(not list(plan.blocks(short, part)) for part in shards.PARTS)
    assert plan.count("heldout") == 3  # one window for each long shard's last value


def test_parquet_columns_that_are_not_numbers_are_refused(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="Parquet shards need the parquet extra (in the test extra)")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"when": ["a", "b"], "y": [1.0, 2.0]}), tmp_path / "x.parquet")
    with pytest.raises(DataError, match="column 'when' holds string, not numbers"):
        shards.scan(str(tmp_path / "x.parquet"), "when")
    assert shards.scan(str(tmp_path / "x.parquet")).column == "y"  # the last column by default


def test_kept_windows_are_bounded():
    assert shards.every(100) == 1 and shards.every(10 * shards.SAMPLE) == 10
    assert 10 * shards.SAMPLE // shards.every(10 * shards.SAMPLE + 1) <= shards.SAMPLE
