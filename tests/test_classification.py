import json

import numpy as np
import pytest

from gru_edge import conversion, data, model, runs
from gru_edge.errors import DataError
from gru_edge.verification import verify


def test_classifier_learns_the_known_answer(cls_run):
    card = json.loads((cls_run / "training.json").read_text())
    assert card["task"] == {"kind": "classification", "metric": "accuracy", "classes": 3}
    m = card["metrics"]
    assert m["heldout_accuracy"] > m["majority_class_accuracy"] + 0.2
    keras_model = runs.load_model(cls_run / "model.keras")
    assert keras_model.layers[-1].get_config()["activation"] == "softmax"


def test_int8_loses_at_most_half_an_accuracy_point(cls_run, tmp_path):
    result = conversion.convert(cls_run / "model.keras", ["int8", "float32"], tmp_path)
    by = {m.recipe: m for m in result.models}
    rep = verify(cls_run / "model.keras", by["int8"].path).report
    t = rep.task
    assert t.metric == "accuracy" and t.rows == 120
    assert t.reference - t.converted <= 0.005  # accuracy points, absolute
    assert t.class_agreement >= 0.99
    exact = verify(cls_run / "model.keras", by["float32"].path).report
    assert exact.passed and exact.task.class_agreement == 1.0 and exact.max_abs_error <= 1e-5


@pytest.mark.parametrize("labels, message", [
    ([0, 1, -1, 2], "holds -1; a classification target must hold class indices"),
    ([0, 1.5, 1, 0], "holds 1.5"),
    ([1, 1, 1, 1], "has a single class"),
])
def test_bad_labels(tmp_path, labels, message):
    p = tmp_path / "c.csv"
    p.write_text("a,label\n" + "".join(f"{i * 0.1},{v}\n" for i, v in enumerate(labels)))
    with pytest.raises(DataError, match=message):
        data.class_labels(data.load_series(p, "label", ("a",)))


def test_classification_needs_features(tmp_path):
    p = data.write_classification_csv(tmp_path / "c.csv", rows=100)
    with pytest.raises(DataError, match="Classification needs --features"):
        model.train(model.TrainConfig(data=str(p), task="classification", column="label", epochs=1), tmp_path / "r")


def test_one_hot_targets_in_the_bundle(cls_run, tmp_path):
    out = conversion.convert(cls_run / "model.keras", ["float16"], tmp_path / "m").models[0]
    bundle = verify(cls_run / "model.keras", out.path, tmp_path / "b").bundle
    t = np.load(bundle / "targets.npy")
    assert t.shape == (124, 3) and np.all(t[:120].sum(axis=1) == 1) and np.isnan(t[120:]).all()
    assert json.loads((bundle / "manifest.json").read_text())["task"]["metric"] == "accuracy"
