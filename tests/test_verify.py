import shutil

import numpy as np
import pytest
from tflite_edit import without_metadata

from gru_edge import parity, recipes
from gru_edge.errors import ParityError
from gru_edge.verification import verify


@pytest.mark.parametrize("which", ["r1", "r2"])
@pytest.mark.parametrize("recipe", sorted(recipes.shipped_names()))
def test_every_recipe_verifies(which, recipe, request, tmp_path):
    run = request.getfixturevalue(f"{which}_run")
    converted = request.getfixturevalue(f"{which}_converted")
    model = next(m for m in converted.models if m.recipe == recipe)
    result = verify(run / "model.keras", model.path, tmp_path / "bundle")
    rep = result.report
    assert rep.passed, rep.failures
    assert result.recipe == recipe and rep.tolerances == recipes.load(recipe).verify
    heldout = result.samples.kinds["heldout"]
    assert heldout > 0 and rep.samples == heldout + 4
    assert rep.task is not None and rep.task.rows == heldout and np.isfinite(rep.task.relative_delta)
    if recipe == "float32":
        assert rep.max_abs_error <= 1e-6 * rep.outputs[0].scale  # raw units: relative to the forecasts' peak
    # The bundle re-checks to the same verdict and the same figures without Keras.
    again = parity.check_bundle(result.bundle)
    assert again.passed and again.max_abs_error == pytest.approx(rep.max_abs_error, abs=1e-9)


def test_int8_task_metric_delta_is_reported(r1_run, r1_converted):
    model = next(m for m in r1_converted.models if m.recipe == "int8")
    rep = verify(r1_run / "model.keras", model.path).report
    assert rep.task.metric == "rmse" and rep.task.converted != rep.task.reference


def test_a_different_model_fails_the_bundle(r1_run, r1_converted, tmp_path):
    by = {m.recipe: m for m in r1_converted.models}
    bundle = verify(r1_run / "model.keras", by["float32"].path, tmp_path / "b").bundle
    rep = parity.check_bundle(bundle, by["int8"].path)
    assert not rep.passed and any("values outside" in f for f in rep.failures)
    assert any("differs from the model the bundle was made with" in n for n in rep.notes)


def test_tflite_of_another_model_is_refused(r1_run, r2_converted, tmp_path):
    other = r2_converted.models[0].path
    with pytest.raises(ParityError, match="was converted from another model than"):
        verify(r1_run / "model.keras", other)
    lone = tmp_path / "lone.tflite"  # without its sidecar, the model's own description tells
    lone.write_bytes(other.read_bytes())
    with pytest.raises(ParityError, match="was converted from another model than"):
        verify(r1_run / "model.keras", lone)
    lone.write_bytes(without_metadata(other.read_bytes()))  # described by nothing: the shapes still tell
    with pytest.raises(ParityError, match=r"takes input \[1, 24, 4\] but model.keras takes \[N, 24, 1\]: they are "
                                          "not the same model"):
        verify(r1_run / "model.keras", lone)


def test_without_a_training_card_it_generates_samples_and_says_so(r1_run, r1_converted, tmp_path):
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(r1_run / "model.keras", lone / "model.keras")
    model = next(m for m in r1_converted.models if m.recipe == "float16")
    result = verify(lone / "model.keras", model.path)
    assert result.report.passed and result.report.task is None
    assert result.samples.kinds["generated"] == 32
    assert any(n.startswith("generated: no training card") for n in result.report.notes)
