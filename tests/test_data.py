import numpy as np
import pytest

from gru_edge import data
from gru_edge.errors import DataError


def test_airline_ships_inside_the_package():
    s = data.load_series("airline")
    assert len(s) == 144 and s.column == "passengers"
    assert s.values[0] == 112 and s.values[-1] == 432
    assert s.source.startswith("builtin:airline")


def test_csv_with_features(synthetic_csv):
    s = data.load_series(synthetic_csv, "y", ("a", "b"))
    assert s.values.shape == (300,) and s.features.shape == (300, 2)
    assert s.feature_names == ("a", "b")


def test_csv_defaults_to_last_column(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("t,u,v\n1,2,3\n4,5,6\n")
    assert data.load_series(p).column == "v"


@pytest.mark.parametrize("body, message", [
    ("t,v\n1,2\n2,abc\n", "Line 3, column 'v': 'abc' is not a number"),
    ("t,v\n1,2\n2,nan\n", "Line 3, column 'v': 'nan' is not a finite number"),
    ("t,v\n1,2\n2,\n", "Line 3, column 'v': '' is not a number"),
    ("t,v\n", "has no data rows"),
])
def test_bad_csv_is_named(tmp_path, body, message):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(DataError, match=message):
        data.load_series(p, "v")


def test_unknown_column_lists_columns(synthetic_csv):
    with pytest.raises(DataError, match=r"Column 'zz' not in synthetic.csv. Columns: step, y, a, b, c"):
        data.load_series(synthetic_csv, "zz")


def test_missing_file():
    with pytest.raises(DataError, match="Data file not found: nope.csv"):
        data.load_series("nope.csv")


@pytest.mark.parametrize("spec, expected", [("none", (False, ())), ("log", (True, ())), ("diff", (False, (1,))),
                                            ("log,diff12", (True, (12,))),
                                            ("diff12,log,diff1", (True, (1, 12)))])
def test_parse_transform(spec, expected):
    assert data.parse_transform(spec) == expected


def test_unknown_transform_step():
    with pytest.raises(DataError, match="Unknown transform step 'sqrt'. Allowed: auto, or none, log, diff"):
        data.parse_transform("log,sqrt")


def test_scaling_is_fitted_on_the_training_part_only():
    s = data.load_series("airline")
    tr = data.fit_transform(s, 120, "none")
    assert tr.mean == pytest.approx(s.values[:120].mean())
    assert tr.mean != pytest.approx(s.values.mean())


@pytest.mark.parametrize("spec", ["none", "log", "diff", "log,diff12"])
def test_the_held_out_tail_never_shapes_any_scaling(synthetic_csv, spec):
    """Poison the held-out tail (target and features x10): every fitted number, the log's and the features'
    included, stays exactly the same."""
    import dataclasses

    s = data.load_series(synthetic_csv, "y", ("a", "b", "c"))
    s = dataclasses.replace(s, values=s.values + 5.0)  # positive, for the log
    n_train = 240
    poisoned = dataclasses.replace(s, values=np.concatenate([s.values[:n_train], s.values[n_train:] * 10]),
                                   features=np.concatenate([s.features[:n_train], s.features[n_train:] * 10]))
    clean, dirty = data.fit_transform(s, n_train, spec), data.fit_transform(poisoned, n_train, spec)
    assert clean == dirty
    assert len(clean.feature_mean) == 3


@pytest.mark.parametrize("spec", ["none", "log", "diff", "log,diff12", "diff3", "log,diff1,diff12", "diff1,diff1"])
@pytest.mark.parametrize("horizon", [1, 3, 14])
def test_inverse_transform_recovers_the_truth(spec, horizon):
    """Feeding the true scaled targets through to_original gives back the original values exactly."""
    s = data.load_series("airline")
    tr = data.fit_transform(s, 120, spec)
    w = data.make_windows(s, tr, 12, horizon, 24)
    back = tr.to_original(w.test_y, s, w.test_first_target)
    np.testing.assert_allclose(back, data.truth(s, w.test_first_target, horizon), rtol=1e-5)


def test_split_is_chronological_and_heldout_is_never_trained_on():
    s = data.load_series("airline")
    tr = data.fit_transform(s, 120, "log,diff12")
    w = data.make_windows(s, tr, 12, 1, 24)
    assert len(w.test_x) == 24 and w.test_first_target[0] == 120
    # The last training target is the value just before the held-out tail.
    table = tr.model_inputs(s)
    assert w.train_y[-1, 0] == pytest.approx(table[119, 0])
    assert not np.isin(w.test_y, w.train_y).all()


def test_too_few_rows(tmp_path):
    p = tmp_path / "short.csv"
    p.write_text("v\n" + "\n".join(str(i) for i in range(10)) + "\n")
    s = data.load_series(p)
    tr = data.fit_transform(s, 8, "none")
    with pytest.raises(DataError, match="Too few rows: 10 values give"):
        data.make_windows(s, tr, 12, 1, 2)


def test_log_needs_positive_values(tmp_path):
    p = tmp_path / "neg.csv"
    p.write_text("v\n1\n-2\n3\n4\n")
    with pytest.raises(DataError, match="Transform 'log' needs positive values"):
        data.fit_transform(data.load_series(p), 3, "log")


def test_baselines_on_airline():
    s = data.load_series("airline")
    first = np.arange(120, 144)
    truth = data.truth(s, first, 1)
    assert data.rmse(data.seasonal_naive_forecast(s, first, 1, 12), truth) == pytest.approx(49.9867, abs=1e-3)
    assert data.rmse(data.naive_forecast(s, first, 1), truth) == pytest.approx(51.782, abs=1e-3)


def test_edge_cases_shape_and_order():
    e = data.edge_cases(6, 2, -1.5, 2.0)
    assert e.shape == (4, 6, 2)
    assert (e[0] == -1.5).all() and (e[1] == 2.0).all()
    assert (e[2, :3] == -1.5).all() and (e[2, 3:] == 2.0).all() and (e[3, :3] == 2.0).all() and (e[3, 3:] == -1.5).all()
    per_column = data.edge_cases(4, 2, [0.0, 10.0], [1.0, 20.0])
    assert (per_column[1, :, 0] == 1.0).all() and (per_column[1, :, 1] == 20.0).all()
