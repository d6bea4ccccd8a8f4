"""Raw units in, raw units out: the framing layers, their lowering, early stopping, 'auto', and int8 on a trend."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from gru_edge import data, framing, lowering, model, runs
from gru_edge.cli import cli
from gru_edge.io import quiet_tensorflow


def _trend_csv(path, rows=180, seed=0):
    """Monthly-like series: a trend that leaves the training range, a season of 12, noise; one noisy feature."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    y = 50 + 0.8 * t + 8 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1.0, rows)
    u = np.cos(t / 5) + rng.normal(0, 0.1, rows)
    path.write_text("y,u\n" + "\n".join(f"{a:.4f},{b:.4f}" for a, b in zip(y, u)) + "\n")
    return path


@pytest.mark.parametrize("spec,features,horizon", [("log,diff3", (), 7), ("diff1", ("u",), 3), ("log", ("u",), 2),
                                                   ("none", (), 1), ("diff1,diff3", ("u",), 5)])
def test_frame_and_unframe_are_the_transform_and_its_inverse(tmp_path, spec, features, horizon):
    series = data.load_series(_trend_csv(tmp_path / "s.csv"), "y", features)
    tr = data.fit_transform(series, 140, spec)
    win = data.make_windows(series, tr, 6, horizon, 40)
    fr = framing.from_transform(tr, 6, 1 + len(features), horizon)
    frame, unframe = (cls(fr.to_dict()) for cls in framing.layers())
    assert win.train_raw.shape[1] == 6 + tr.lag
    np.testing.assert_allclose(np.asarray(frame(win.train_raw)), win.train_x, rtol=1e-4, atol=1e-4)
    # The targets the core learns, unframed, are the data's own values (horizon > lag chains the differences).
    back = np.asarray(unframe([win.test_y, win.test_raw]))
    np.testing.assert_allclose(back, win.test_truth, rtol=1e-5)
    np.testing.assert_allclose(back, tr.to_original(win.test_y, series, win.test_first_target), rtol=1e-5)


@pytest.mark.parametrize("spec", ["log,diff4", "log,diff1,diff4", "log"])
def test_lowered_framing_full_and_step_match_keras(tmp_path, spec):
    """gru-edge's graph computes what the Keras layers compute, and the step signature (ring of lagged frames)
    fed one raw frame at a time ends where the full sequence does (one difference, and two in turn)."""
    with quiet_tensorflow():
        import tensorflow as tf
    series = data.load_series(_trend_csv(tmp_path / "s.csv"), "y", ("u",))
    tr = data.fit_transform(series, 140, spec)
    win = data.make_windows(series, tr, 5, 6, 30)
    fr = framing.from_transform(tr, 5, 2, 6)
    import keras

    keras.utils.set_random_seed(1)
    full = framing.wrap(model.build_model(5, 2, 8, 2, 6), fr, "m")
    x = win.test_raw[:4]
    want = np.asarray(full(x))
    lowered = lowering.read_model(full)
    assert (fr.centre() is not None) == (spec == "log")  # a level 4-5 on the log, spread 0.3: centred in float
    assert lowered.time_steps == 5 + tr.lag and lowered.steps == 5 and lowered.framing == fr
    fns = lowering.build_functions(lowered, 4, streaming=True)
    got = fns[lowering.SERVE](tf.constant(x))[lowered.output_name].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    specs = fns[lowering.STEP].input_signature[1:]
    assert {s.name for s in specs} == {"state_0", "state_1"} | ({lowering.RING, lowering.COUNT} if tr.lag else set())
    states = {s.name: np.zeros(s.shape, np.float32) for s in specs}
    for t in range(x.shape[1]):
        out = fns[lowering.STEP](tf.constant(x[:, t]), *[tf.constant(states[s.name]) for s in specs])
        states = {n: out[f"{n}_out"].numpy() for n in states}
    np.testing.assert_allclose(out[lowered.output_name].numpy(), want, rtol=1e-5)


def test_auto_transform_and_int8_on_a_series_that_leaves_its_training_range(tmp_path):
    """The held-out values lie above everything trained on: 'auto' picks a differenced transform, the model beats
    naive and seasonal-naive, and the int8 model (raw ops in float, the core on differences) stays within its
    limits."""
    from gru_edge import conversion, verification

    csv = _trend_csv(tmp_path / "trend.csv")
    run = model.train(model.TrainConfig(data=str(csv), column="y", units=16, epochs=40, season=12, patience=8),
                      tmp_path / "run")
    card = run.card
    assert card.transform["requested"] == "auto" and "diff" in card.transform["spec"]
    assert card.transform_trials and card.model["epochs"] <= 40
    win = np.load(run.run_dir / "windows.npz")
    assert win["test_x"][:, :, 0].max() > win["train_x"][:, :, 0].max() + 10  # beyond the training range
    assert run.warnings == [] and card.metrics["not_beaten_baselines"] == []
    # int8 with a step signature too (a ring of lagged frames, calibrated step by step).
    from test_streaming import STREAMING

    (tmp_path / "int8-stream.toml").write_text(STREAMING.format(q="int8", atol=0.2))
    out = conversion.convert(run.model_path, ["int8", str(tmp_path / "int8-stream.toml")], tmp_path / "out")
    for m in out.models:
        rep = verification.verify(run.model_path, m.path).report
        assert rep.passed, (m.recipe, rep.failures)
        assert abs(rep.task.relative_delta) <= 0.05 and rep.task.units == "data units: y"
    assert rep.streaming["passed"] and rep.streaming["max_abs_error"] <= 0.2 * rep.outputs[0].scale


def test_train_warns_when_the_baselines_win_and_checks_its_flags(tmp_path):
    csv = _trend_csv(tmp_path / "trend.csv")
    runner = CliRunner()
    res = runner.invoke(cli, ["train", "--data", str(csv), "--column", "y", "--transform", "none", "--epochs", "1",
                              "--patience", "0", "--units", "2", "--season", "12", "-o", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "WARNING: the model does not beat the naive forecast" in res.output
    assert "held-out RMSE (36 windows, y)" in res.output  # 20% of 180 held out, in the data's units
    assert "window:    12 steps; head shrink" in res.output
    res = runner.invoke(cli, ["train", "--data", str(csv), "--column", "y", "--transform", "none", "--epochs", "1",
                              "--patience", "0", "--units", "2", "--json", "-o", str(tmp_path / "r2")])
    doc = json.loads(res.output)
    assert doc["ok"] and any("naive forecast" in w for w in doc["result"]["warnings"])
    for flag, value in (("--batch-size", "0"), ("--learning-rate", "2"), ("--patience", "-1")):
        res = runner.invoke(cli, ["train", flag, value, "-o", str(tmp_path / "r3")])
        assert res.exit_code == 2 and flag in res.output
    assert not (tmp_path / "r3").exists()


def test_auto_candidates_are_valid_for_the_series():
    """'auto' never tries the log on a series with a value <= 0 anywhere (a held-out 0 included), treats a season
    of 1 as none, and does not call a series too short for four seasons strongly seasonal."""
    rng = np.random.default_rng(0)
    positive = 100 + np.cumsum(rng.normal(0, 1, 120)) + 20 * np.sin(np.arange(120) * 2 * np.pi / 12)
    s = data.Series("test", "0" * 64, "y", positive)
    # a random walk plus a season: its yearly changes are sums of 12 steps, so KPSS asks for a first difference too
    assert [c.removeprefix("log,") for c in data.candidate_transforms(s, 96, 12)] == ["diff1,diff12"]
    held_out_zero = positive.copy()
    held_out_zero[110] = 0.0
    assert not any("log" in c for c in data.candidate_transforms(data.Series("t", "0" * 64, "y", held_out_zero),
                                                                  96, 12))
    assert data.candidate_transforms(s, 96, 1) == data.candidate_transforms(s, 96, None)
    assert len(set(data.candidate_transforms(s, 96, 4))) == len(data.candidate_transforms(s, 96, 4))
    noise = 50 + rng.normal(0, 1, 38)
    assert data.seasonal_strength(noise, 12) == 0.0  # 38 values: fewer than four seasons of 12
    assert data.seasonal_strength(positive[:96], 12) > 0.64


def test_kpss_adds_a_first_difference_when_the_seasonal_differences_wander():
    """KPSS: white noise is level-stationary, a random walk is not. 'auto' differences a strongly seasonal series
    once more when its year-on-year changes wander (as USAccDeaths' do), and only seasonally when they do not."""
    rng = np.random.default_rng(1)
    assert data.kpss(rng.normal(size=200)) < data.KPSS_5PCT < data.kpss(np.cumsum(rng.normal(size=200)))
    season = 30 * np.sin(np.arange(120) * 2 * np.pi / 12)
    wandering = 500 + season + np.cumsum(np.cumsum(rng.normal(0, 0.5, 120)))  # the yearly changes drift
    steady = 500 + season + rng.normal(0, 2, 120)
    pick = lambda y: data.candidate_transforms(data.Series("t", "0" * 64, "y", y), 96, 12)  # noqa: E731
    assert [c.removeprefix("log,") for c in pick(wandering)] == ["diff1,diff12"]
    assert [c.removeprefix("log,") for c in pick(steady)] == ["diff12"]


def test_int16x8_keeps_the_widest_level_margin_that_holds(tmp_path):
    """int16x8 quantizes the raw ops too: on a series spanning a 150x range the int16 LOG loses its smallest
    values when calibrated over 4x or 2x the levels, so the converter keeps a narrower margin, and the model passes
    verify (the training range's edge cases included) and reads levels that far above the training maximum."""
    from gru_edge import conversion, runtime, verification

    rng = np.random.default_rng(0)
    t = np.arange(120)
    y = 100 * np.exp(2.2 * np.sin(2 * np.pi * t / 9.6) + 0.2 * rng.standard_normal(120))
    csv = tmp_path / "cycle.csv"
    csv.write_text("y\n" + "\n".join(f"{v:.3f}" for v in y) + "\n")
    run = model.train(model.TrainConfig(data=str(csv), column="y", transform="log,diff1", units=8, epochs=30,
                                        window=6, patience=5), tmp_path / "run")
    out = conversion.convert(run.model_path, ["int16x8"], tmp_path / "m").models[0]
    margin = json.loads(out.sidecar.read_text())["level_margin"]
    assert margin == 1.5
    rep = verification.verify(run.model_path, out.path).report
    assert rep.passed, rep.failures
    # A held-out window moved up to the margin: the same differences, so the forecast moves with it, unclipped.
    x = np.load(run.run_dir / "windows.npz")["test_x"][:4] * np.float32(margin)
    want = np.asarray(runs.load_model(run.model_path)(x))
    got = runtime.Runner(out.path).run(x)["forecast"]
    np.testing.assert_allclose(got, want, rtol=0.03, atol=0.03 * np.abs(want).max())


def test_auto_compares_a_short_window_on_a_series_without_a_season(tmp_path):
    """'auto' without a season trains each candidate transform with windows of 4 and 12 and keeps the pair with
    the lowest validation RMSE; a --window given, or a season, keeps that one window."""
    csv = _trend_csv(tmp_path / "s.csv")
    quick = dict(data=str(csv), column="y", units=4, epochs=3, patience=2)
    card = model.train(model.TrainConfig(**quick), tmp_path / "auto").card
    trials = card.transform_trials
    assert sorted(t["window"] for t in trials) == [4] * (len(trials) // 2) + [12] * (len(trials) // 2)
    best = min(trials, key=lambda t: t["validation_score"])
    assert (card.window, card.transform["spec"]) == (best["window"], best["transform"])
    assert card.input_steps == card.window + card.framing["lag"]
    for extra in ({"window": 6}, {"season": 12}):
        card = model.train(model.TrainConfig(**quick, **extra), tmp_path / str(extra)).card
        assert {t["window"] for t in card.transform_trials} == {extra.get("window", 12)}


def test_a_level_far_from_zero_survives_float16_and_int8(tmp_path):
    """A lake level of 579 +- 1 (LakeHuron-like) on its log, without a difference: folded into the input projection
    and the head's bias, the mean (6.36 +- 0.002) cancelled catastrophically in float16 (+115% RMSE) and int8
    (+289%). Centred in float first, every recipe keeps its limits."""
    from gru_edge import conversion, verification

    rng = np.random.default_rng(0)
    e = rng.normal(0, 0.6, 160)
    y = np.zeros(160)
    for t in range(2, 160):
        y[t] = 1.0 * y[t - 1] - 0.3 * y[t - 2] + e[t]
    csv = tmp_path / "lake.csv"
    csv.write_text("level\n" + "\n".join(f"{579 + v:.3f}" for v in y) + "\n")
    run = model.train(model.TrainConfig(data=str(csv), column="level", transform="log", window=4, units=8,
                                        epochs=20, patience=5), tmp_path / "run")
    assert framing.Framing.from_dict(run.card.framing).centre() is not None
    for m in conversion.convert(run.model_path, ["float16", "int8"], tmp_path / "m").models:
        rep = verification.verify(run.model_path, m.path).report
        assert rep.passed, (m.recipe, rep.failures)


def test_centre_is_float16_exact_when_it_can_be_and_never_overflows():
    """The centre is the mean rounded to float16 (float16 files store it exactly); a mean beyond float16's range
    stays in float32 instead of becoming inf, and the lowered graph matches Keras on such values."""
    with quiet_tensorflow():
        import keras
        import tensorflow as tf
    lake = framing.Framing(window=5, features=1, mean=579.3, std=1.3).centre()
    assert lake[0] == np.float16(579.3) == 579.5
    fr = framing.Framing(window=5, features=1, mean=120000.0, std=3000.0)
    assert fr.centre()[0] == np.float32(120000.0)
    assert framing.Framing(window=5, features=1, mean=0.5, std=1.0).centre() is None
    keras.utils.set_random_seed(0)
    full = framing.wrap(model.build_model(5, 1, 4, 1, 1), fr, "m")
    x = (120000 + 3000 * np.random.default_rng(0).normal(size=(4, 5, 1))).astype(np.float32)
    lowered = lowering.read_model(full)
    got = lowering.build_functions(lowered, 4)[lowering.SERVE](tf.constant(x))[lowered.output_name].numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, np.asarray(full(x)), rtol=1e-5)
