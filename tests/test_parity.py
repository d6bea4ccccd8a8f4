import json
import math

import numpy as np
import pytest

from gru_edge import bundle, parity
from gru_edge.errors import OutputError, ParityError
from gru_edge.recipes import Tolerances

TOL = Tolerances(atol=1e-3, rtol=1e-3, min_psnr_db=40.0, max_task_metric_delta=0.01)


def _out(n=10, o=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, o)).astype(np.float32)


def test_identical_outputs_pass_exactly():
    e = _out()
    rep = parity.compare({"y": e}, {"y": e.copy()}, TOL)
    assert rep.passed and rep.samples == 10
    assert rep.outputs[0].max_abs_error == 0 and math.isinf(rep.outputs[0].psnr_db)


def test_tolerance_is_scale_aware():
    e = _out() * 1000  # same relative error, larger outputs
    a = e + 0.5 * 1e-3 * np.abs(e).max()
    assert parity.compare({"y": e}, {"y": a}, TOL).passed
    assert not parity.compare({"y": e}, {"y": e + 3e-3 * np.abs(e).max()}, TOL).passed


def test_every_failing_output_is_listed():
    e1, e2 = _out(seed=1), _out(seed=2)
    rep = parity.compare({"a": e1, "b": e2}, {"a": e1 + 1, "b": e2 + 1}, TOL)
    assert not rep.passed
    assert any(f.startswith("a: 20 of 20 values outside") for f in rep.failures)
    assert any(f.startswith("b: 20 of 20 values outside") for f in rep.failures)
    assert any("PSNR" in f for f in rep.failures)


def test_zero_samples_never_pass():
    empty = np.zeros((0, 2), np.float32)
    rep = parity.compare({"y": empty}, {"y": empty}, TOL)
    assert not rep.passed and rep.failures[0].startswith("no samples")


def test_nan_outputs_fail():
    e = _out()
    a = e.copy()
    a[3, 1] = np.nan
    rep = parity.compare({"y": e}, {"y": a}, TOL)
    assert not rep.passed
    assert "y: 1 non-finite values (NaN/Inf) in the converted model's outputs" in rep.failures


def test_nan_in_the_expected_outputs_fails_too():
    e = _out()
    bad = e.copy()
    bad[0, 0] = np.nan
    rep = parity.compare({"y": bad}, {"y": e}, TOL)
    assert not rep.passed and "y: 1 non-finite values (NaN/Inf) in the expected outputs" in rep.failures


def test_step_signature_failures_fail_the_verdict():
    """The streamed outputs are held to the same limits; a wrong step signature fails a correct full sequence."""
    e = _out()
    full = parity.compare({"y": e}, {"y": e.copy()}, TOL)
    assert full.passed
    rep = parity.check_streaming(full, {"y": e + 1.0}, {"y": e}, {"y": e.copy()})
    assert not rep.passed and rep.failures and all(f.startswith("step signature: ") for f in rep.failures)
    assert rep.streaming["max_abs_diff_vs_full_sequence"] == pytest.approx(1.0)
    assert parity.check_streaming(full, {"y": e.copy()}, {"y": e}, {"y": e.copy()}).passed


def test_shape_and_name_mismatch():
    e = _out()
    assert "y: shape (10, 1) differs from the expected (10, 2)" in \
        parity.compare({"y": e}, {"y": e[:, :1]}, TOL).failures
    assert parity.compare({"y": e}, {"z": e}, TOL).failures[0].startswith("outputs missing")


def test_task_metric_delta():
    e = _out()
    targets = e + 0.1
    targets[-2:] = np.nan  # edge-case rows have no ground truth
    task = bundle.Task("regression", "rmse", scale=2.0, offset=5.0)
    worse = e - 0.05
    rep = parity.compare({"y": e}, {"y": worse}, Tolerances(1.0, 1.0, 0.0, 0.01), targets, task)
    assert rep.task.rows == 8
    assert rep.task.reference == pytest.approx(0.2, rel=1e-5)  # 0.1 x scale 2
    assert rep.task.converted == pytest.approx(0.3, rel=1e-5)
    assert rep.task.relative_delta == pytest.approx(0.5, rel=1e-4)
    assert not rep.passed and rep.failures[0].startswith("task metric rmse worse by 50.00%")


def _bundle(tmp_path, model_bytes=b"TFL3-not-really"):
    model = tmp_path / "model.x.tflite"
    model.write_bytes(model_bytes)
    inputs = np.random.default_rng(0).standard_normal((5, 4, 2)).astype(np.float32)
    exp = _out(5, 1)
    targets = exp + 0.1
    return bundle.write_bundle(tmp_path / "bundle", model, "x", "serving_default", "seq", inputs, {"y": exp}, TOL,
                               {"heldout": 5}, "test", targets, bundle.Task("regression", "rmse"), 0.1)


def test_bundle_round_trip(tmp_path):
    path = _bundle(tmp_path)
    b = bundle.read_bundle(path)
    assert b.manifest.format == "gru-edge-parity/1"
    assert b.inputs.shape == (5, 4, 2) and b.expected["y"].shape == (5, 1) and b.targets.shape == (5, 1)
    assert b.tolerances == TOL and b.task.metric == "rmse"
    assert (path / "model.x.tflite").read_bytes() == b"TFL3-not-really"
    assert sorted(p.name for p in path.iterdir()) == ["expected.npy", "inputs.npy", "manifest.json",
                                                       "model.x.tflite", "targets.npy"]


def test_bundle_is_replaced_whole_but_never_over_foreign_files(tmp_path):
    path = _bundle(tmp_path)
    (path / "expected_1.npy").write_bytes((path / "expected.npy").read_bytes())  # not named by the manifest
    with pytest.raises(OutputError, match=r"holds files gru-edge did not write \(expected_1.npy\)"):
        _bundle(tmp_path)
    assert (path / "expected_1.npy").is_file()
    (path / "expected_1.npy").unlink()
    _bundle(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / "manifest.json").unlink(), "No manifest.json in"),
    (lambda p: (p / "manifest.json").write_text("{"), "is not valid JSON"),
    (lambda p: _edit(p, lambda m: m.pop("tolerances")), "misses required key"),
    (lambda p: _edit(p, lambda m: m.update(format="other/2")), "format 'other/2' is not supported"),
    (lambda p: (p / "expected.npy").write_bytes((p / "expected.npy").read_bytes()[:-6]), "is truncated or padded"),
    (lambda p: np.save(p / "expected.npy", np.zeros((5, 1), np.float64)), "has dtype <f8"),
    (lambda p: np.save(p / "expected.npy", np.zeros((4, 1), np.float32)), "expected.npy has shape"),
    (lambda p: (p / "targets.npy").unlink(), "Bundle file missing: targets.npy"),
])
def test_malformed_bundles_are_rejected(tmp_path, damage, message):
    path = _bundle(tmp_path)
    damage(path)
    with pytest.raises(ParityError, match=message):
        bundle.read_bundle(path)


def _edit(path, fn):
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    (path / "manifest.json").write_text(json.dumps(m))
