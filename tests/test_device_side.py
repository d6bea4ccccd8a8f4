"""The device side: a fresh venv with only the base install (click, numpy, ai-edge-litert) re-checks bundles."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gru_edge.verification import verify

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(ROOT)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return venv


def _env():
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_bundle_passes_without_tensorflow(device_venv, r2_run, r2_converted, tmp_path):
    by = {m.recipe: m for m in r2_converted.models}
    bundle = verify(r2_run / "model.keras", by["int8"].path, tmp_path / "bundle").bundle
    py = str(device_venv / "bin" / "python")
    probe = subprocess.run([py, "-c", "import importlib.util as u; print(u.find_spec('tensorflow'), "
                            "u.find_spec('keras'))"], capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert probe.stdout.strip() == "None None"
    exe = str(device_venv / "bin" / "gru-edge")
    ok = subprocess.run([exe, "verify", "--bundle", str(bundle)], capture_output=True, text=True, env=_env(),
                        cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.rstrip().endswith("PASS") and "task rmse" in ok.stdout
    # The same bundle against another model (int8's limits, the float16 model of another recipe and weights): a FAIL
    # with exit 1, and the failures listed.
    other = verify(r2_run / "model.keras", by["float32"].path, tmp_path / "float32").bundle
    bad = subprocess.run([exe, "verify", "--bundle", str(other), "--model", str(by["int8"].path)],
                         capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "differs from the model the bundle was made with" in bad.stdout and "values outside atol" in bad.stdout
    inspect = subprocess.run([exe, "recipes"], capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert inspect.returncode == 0 and "android-gpu" in inspect.stdout  # recipes ship inside the wheel


def test_raw_values_in_data_units_out_without_tensorflow(device_venv, r1_run, r1_converted, tmp_path):
    """The airline int8 model, fed the held-out windows as the series holds them (passengers), forecasts passengers
    in a venv without TensorFlow: its RMSE against the true values is the one training reported."""
    import json

    model = next(m for m in r1_converted.models if m.recipe == "int8")
    code = ("import sys, numpy as np; from gru_edge.runtime import Runner; w = np.load(sys.argv[2]); "
            "from pathlib import Path; (y,) = Runner(Path(sys.argv[1])).run(w['test_x']).values(); "
            "print(float(np.sqrt(np.mean((y - w['test_y']) ** 2))), float(w['test_x'].min()), float(y.min()))")
    out = subprocess.run([str(device_venv / "bin" / "python"), "-c", code, str(model.path),
                          str(r1_run / "windows.npz")], capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    rmse, lowest_input, lowest_forecast = map(float, out.stdout.split())
    m = json.loads((r1_run / "training.json").read_text())["metrics"]
    assert lowest_input >= 100 and lowest_forecast >= 100  # passengers in, passengers out
    assert abs(rmse - m["heldout_rmse"]) <= 0.05 * m["heldout_rmse"] and rmse < m["naive_rmse"]


def test_android_init_and_the_model_alone_from_the_wheel(device_venv, tmp_path):
    """pip users get the demo too: the installed wheel (no repository, no TensorFlow) writes the demo project with
    `gru-edge android --init`, reads the default model's own description with its sidecar gone, puts it back with
    `gru-edge android`, and the project's Kotlin tests run where it was written."""
    import json
    import shutil

    exe = str(device_venv / "bin" / "gru-edge")

    def sh(*cmd, code=0):
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=_env(), cwd=tmp_path,
                              timeout=600)
        assert proc.returncode == code, (cmd, proc.stdout[-1500:], proc.stderr[-3000:])
        return proc

    out = sh(exe, "android", "--init", "my-demo").stdout
    demo = tmp_path / "my-demo"
    assert "next: gru-edge android MODEL.tflite" in out
    assert (demo / "gradle" / "libs.versions.toml").is_file() and (demo / "jvm-test.sh").stat().st_mode & 0o100
    tracked = subprocess.run(["git", "ls-files", "android_demo"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    written = sorted(str(p.relative_to(tmp_path)).replace("my-demo", "android_demo", 1)
                     for p in demo.rglob("*") if p.is_file())
    assert written == sorted(tracked)  # the committed project, nothing a local build left behind
    assets = demo / "app" / "src" / "main" / "assets" / "gru_edge"
    model = tmp_path / "model.tflite"  # the model alone: no sidecar anywhere
    shutil.copy(assets / "model.tflite", model)
    shutil.copytree(assets / "bundle", tmp_path / "bundle")
    assert "recipe android-gpu" in sh(exe, "inspect", model).stdout
    assert sh(exe, "verify", "--bundle", tmp_path / "bundle", "--model", model).stdout.rstrip().endswith("PASS")
    put = sh(exe, "android", model, "--bundle", tmp_path / "bundle", "--demo", "my-demo", "--json").stdout
    assert json.loads(put)["result"]["assets"][0] == "model.tflite"
    assert "exists and is not an empty folder" in sh(exe, "android", "--init", "my-demo", code=1).stderr
    junit = sh("bash", demo / "jvm-test.sh")
    assert "OK (" in junit.stdout, junit.stdout[-2000:]
