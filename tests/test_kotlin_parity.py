"""Cross-check: the Android demo's plain-Kotlin parity core reaches Python's verdicts on the same bundles.

Python writes bundles (passing, failing, malformed) plus the converted model's outputs as actual.npy; the Kotlin
core, compiled on the JVM by android_demo/jvm-test.sh, reads each and prints its verdict and figures.
"""

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gru_edge import bundle as bundle_mod, parity
from gru_edge.errors import ParityError
from gru_edge.runtime import Runner
from gru_edge.verification import verify

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def kotlin_classpath() -> str:
    built = subprocess.run(["bash", str(ROOT / "android_demo" / "jvm-test.sh"), "--build"], capture_output=True,
                           text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    return built.stdout.strip().splitlines()[-1]


def _with_actual(bundle: Path, actual: np.ndarray) -> Path:
    np.save(bundle / "actual.npy", np.ascontiguousarray(actual, dtype="<f4"))
    return bundle


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def bundles(r1_run, r1_converted, r2_run, r2_converted, cls_run, tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("crosscheck")
    r1 = {m.recipe: m for m in r1_converted.models}
    r2 = {m.recipe: m for m in r2_converted.models}
    made = []

    def bundle(run, model, name):
        return verify(run / "model.keras", model.path, root / name).bundle

    def actual_of(b: Path, model_path: Path) -> np.ndarray:
        (out,) = Runner(model_path).run(bundle_mod.read_bundle(b).inputs).values()
        return out

    b = bundle(r2_run, r2["float32"], "pass-r2-float32")
    made.append(_with_actual(b, actual_of(b, r2["float32"].path)))
    b = bundle(r1_run, r1["int8"], "pass-r1-int8")
    made.append(_with_actual(b, actual_of(b, r1["int8"].path)))
    b = bundle(r2_run, r2["android-gpu"], "pass-r2-android-gpu")
    made.append(_with_actual(b, actual_of(b, r2["android-gpu"].path)))
    from gru_edge.conversion import convert

    cls_int8 = convert(cls_run / "model.keras", ["int8"], root / "cls-models").models[0]
    b = bundle(cls_run, cls_int8, "pass-classifier-int8")
    made.append(_with_actual(b, actual_of(b, cls_int8.path)))
    # A float32 bundle checked against the int8 model's outputs: tolerance failures.
    b = bundle(r1_run, r1["float32"], "fail-r1-float32-vs-int8")
    made.append(_with_actual(b, actual_of(b, r1["int8"].path)))
    # NaN in the converted outputs.
    good = made[0]
    nan = _copy(good, root / "fail-nan")
    a = np.load(nan / "actual.npy")
    a[2, 1] = np.nan
    made.append(_with_actual(nan, a))
    return made


def _python_verdict(b: Path) -> dict:
    try:
        bundle = bundle_mod.read_bundle(b)
    except ParityError as e:
        return {"error": str(e)}
    first = bundle.manifest.outputs[0].name
    rep = parity.compare(bundle.expected, {first: np.load(b / "actual.npy")}, bundle.tolerances, bundle.targets,
                         bundle.task)
    return {"passed": rep.passed, "samples": rep.samples, "max_abs_error": rep.max_abs_error,
            "failures": len(rep.failures), "task_delta": rep.task.relative_delta if rep.task else None}


def test_kotlin_reaches_python_verdicts(kotlin_classpath, bundles, r1_run):
    assert len(bundles) >= 6
    out = subprocess.run(["java", "-cp", kotlin_classpath, "dev.gruedge.demo.parity.CrossCheck",
                          *map(str, bundles)], capture_output=True, text=True, check=True).stdout
    kotlin = [json.loads(line) for line in out.strip().splitlines()]
    assert [k["bundle"] for k in kotlin] == [b.name for b in bundles]
    verdicts = {}
    for b, k in zip(bundles, kotlin):
        py = _python_verdict(b)
        if "error" in py:
            assert "error" in k, (b.name, k)
            verdicts[b.name] = "error"
            continue
        assert "error" not in k, (b.name, k)
        assert k["passed"] == py["passed"] and k["samples"] == py["samples"], (b.name, k, py)
        assert k["failures"] == py["failures"], (b.name, k, py)
        if math.isfinite(py["max_abs_error"]):
            assert abs(k["max_abs_error"] - py["max_abs_error"]) <= 1e-6, (b.name, k, py)
        else:
            assert k["max_abs_error"] is None
        if py["task_delta"] is not None and math.isfinite(py["task_delta"]):
            assert abs(k["task_delta"] - py["task_delta"]) <= 1e-6, (b.name, k, py)
        verdicts[b.name] = "pass" if py["passed"] else "fail"
    assert verdicts == {"pass-r2-float32": "pass", "pass-r1-int8": "pass", "pass-r2-android-gpu": "pass",
                        "pass-classifier-int8": "pass", "fail-r1-float32-vs-int8": "fail", "fail-nan": "fail"}
    # Raw units in, data units out: the airline bundle's inputs are passengers, and the Kotlin core scores the
    # forecasts in passengers (scale 1, offset 0), to the RMSE that training reported.
    r1_int8 = dict(zip([b.name for b in bundles], kotlin))["pass-r1-int8"]
    card = json.loads((r1_run / "training.json").read_text())
    assert r1_int8["task_units"] == "data units: passengers"
    assert abs(r1_int8["task_reference"] - card["metrics"]["heldout_rmse"]) <= 1e-3 * card["metrics"]["heldout_rmse"]
    inputs = np.load(next(b for b in bundles if b.name == "pass-r1-int8") / "inputs.npy")
    assert 100 <= inputs[:24].min() and inputs[:24].max() <= 700  # passengers, as the series holds them
    for b, k in zip(bundles, kotlin):  # both report the limits they applied: the manifest's
        assert k["tolerances"] == json.loads((b / "manifest.json").read_text())["tolerances"], b.name
        assert "(from the bundle's manifest)" in k["limits"]


@pytest.fixture(scope="module")
def corpus(bundles, tmp_path_factory) -> list[tuple[Path, str]]:
    """Every case of tests/bundle_corpus.py, made from the passing R2 float32 bundle (with its actual.npy)."""
    from bundle_corpus import CORPUS

    root = tmp_path_factory.mktemp("corpus")
    made = []
    for name, (change, outcome) in CORPUS.items():
        folder = _copy(bundles[0], root / name)
        change(folder)
        made.append((folder, outcome))
    return made


def test_both_readers_accept_and_refuse_the_same_bundles(kotlin_classpath, corpus):
    """One reader contract: for every case of the corpus, Python and Kotlin both refuse it (each with a message) or
    both read it and reach the same verdict, the one the corpus names; the Kotlin reader never fails with anything
    but its own error (no stack overflow, no out-of-memory, no NoSuchElementException)."""
    out = subprocess.run(["java", "-Xss1m", "-Xmx256m", "-cp", kotlin_classpath,
                          "dev.gruedge.demo.parity.CrossCheck", *(str(f) for f, _ in corpus)],
                         capture_output=True, text=True, check=True).stdout
    kotlin = [json.loads(line) for line in out.strip().splitlines()]
    assert len(kotlin) == len(corpus) >= 40
    for (folder, outcome), k in zip(corpus, kotlin):
        py = _python_verdict(folder)
        py_outcome = "refuse" if "error" in py else ("pass" if py["passed"] else "fail")
        kt_outcome = "refuse" if "error" in k else ("pass" if k["passed"] else "fail")
        assert not k.get("internal"), (folder.name, k)
        assert (py_outcome, kt_outcome) == (outcome, outcome), (folder.name, py, k)
