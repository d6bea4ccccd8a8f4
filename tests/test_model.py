import json

import numpy as np
import pytest

from gru_edge import model, runs
from gru_edge.errors import DataError, ModelError
from gru_edge.io import quiet_tensorflow


def _weights(path):
    return [np.asarray(w) for w in runs.load_model(path).get_weights()]


def test_same_seed_same_weights_and_other_seed_other_weights(tmp_path):
    cfg = model.TrainConfig(units=8, epochs=3, seed=3)
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        model.train(model.TrainConfig(**{**cfg.__dict__, "seed": seed}), tmp_path / name)
    a, b, c = (_weights(tmp_path / n / "model.keras") for n in "abc")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_training_card(r1_run):
    card = json.loads((r1_run / "training.json").read_text())
    assert card["data"]["source"].startswith("builtin:airline") and len(card["data"]["sha256"]) == 64
    assert card["split"] == {"kind": "chronological", "train_rows": 120, "heldout_rows": 24, "validation_rows": 24,
                             "train_windows": 96, "heldout_windows": 24, "heldout_first_target": 120}
    assert card["transform"]["spec"] == "log,diff12" and card["window"] == 12 and card["seed"] == 0
    assert card["input_steps"] == 24 and card["framing"]["lag"] == 12 and card["framing"]["log"]
    assert card["framing"]["diffs"] == [12] and card["transform"]["diffs"] == [12]
    assert 0.0 <= card["model"]["shrink"] <= 1.0
    m = card["metrics"]
    assert m["units"] == "passengers" and m["seasonal_naive_rmse"] == pytest.approx(49.9867, abs=1e-3)
    assert card["model"]["epochs"] <= card["model"]["max_epochs"] == 5
    assert {"keras", "tensorflow", "numpy", "python", "gru-edge"} <= set(card["versions"])
    win = np.load(r1_run / "windows.npz")
    assert win["train_x"].shape == (96, 24, 1) and win["test_x"].shape == (24, 24, 1)
    # Raw units: the windows are the series' own values, the targets too.
    from gru_edge import data
    values = data.load_series("airline").values
    assert np.array_equal(win["test_x"][0, :, 0], values[120 - 24: 120].astype(np.float32))
    assert np.array_equal(win["test_y"][:, 0], values[120:].astype(np.float32))


def test_shrink_scales_the_predicted_change_by_its_validation_fit():
    """The head is scaled by the least-squares factor of the core's output on the validation targets, kept in
    [0, 1]: half the signal gives 0.5, an anti-correlated core 0 (the mean change, naive with drift), a timid one 1."""
    core = model.build_model(4, 1, 3, 1, 1)
    x = np.random.default_rng(0).normal(size=(32, 4, 1)).astype(np.float32)
    p = np.asarray(core(x))
    assert model._shrink(core, x, 0.5 * p) == pytest.approx(0.5, rel=1e-4)
    assert model._shrink(core, x, -p) == 0.0 and model._shrink(core, x, 3 * p) == 1.0
    model._shrink_head(core, 0.25)
    np.testing.assert_allclose(np.asarray(core(x)), 0.25 * p, rtol=1e-4, atol=1e-6)


def test_r2_shape_from_a_csv_with_features(r2_run):
    m = runs.load_model(r2_run / "model.keras")
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds == ["InputLayer", "Frame", "GRU", "GRU", "Dense", "Unframe"]
    assert tuple(m.inputs[0].shape) == (None, 24, 4) and tuple(m.outputs[0].shape) == (None, 3)


def test_bad_window_settings(tmp_path):
    with pytest.raises(DataError, match="--test-size 200 leaves no training data"):
        model.train(model.TrainConfig(test_size=200, epochs=1), tmp_path)
    assert not list(tmp_path.iterdir())


def test_load_errors(tmp_path):
    with pytest.raises(ModelError, match="Model file not found"):
        runs.load_model(tmp_path / "x.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="Cannot load junk.keras as a Keras model"):
        runs.load_model(tmp_path / "junk.keras")


def test_safe_mode_refuses_lambda_layers(tmp_path):
    with quiet_tensorflow():
        import keras
    inputs = keras.Input((4, 1))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    m = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GRU(2)(x)))
    m.save(tmp_path / "lam.keras")
    with pytest.raises(ModelError, match="Cannot load lam.keras as a Keras model"):
        runs.load_model(tmp_path / "lam.keras")
