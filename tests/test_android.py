import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from tflite_edit import without_metadata

from gru_edge import parity, tflite_model
from gru_edge.android import AndroidError, install, pinned_litert
from gru_edge.cli import cli
from gru_edge.description import load as load_description
from gru_edge.verification import verify

DEMO = Path(__file__).resolve().parent.parent / "android_demo"
ASSETS = DEMO / "app" / "src" / "main" / "assets" / "gru_edge"


@pytest.fixture
def demo_copy(tmp_path) -> Path:
    demo = tmp_path / "android_demo"
    shutil.copytree(DEMO, demo, ignore=shutil.ignore_patterns("assets"))
    return demo


@pytest.fixture(scope="module")
def gpu_model_and_bundle(r1_run, r1_converted, tmp_path_factory):
    model = next(m for m in r1_converted.models if m.recipe == "android-gpu")
    bundle = verify(r1_run / "model.keras", model.path, tmp_path_factory.mktemp("b") / "bundle").bundle
    return model.path, bundle


def test_committed_default_model_and_bundle_verify_on_desktop():
    assert not (ASSETS / "model.json").exists()  # the model describes itself
    side = load_description(ASSETS / "model.tflite")
    assert side.recipe_name == "android-gpu" and side.gpu["precision"] == "fp16"
    assert side.signatures == ["serving_default", "step"] and side.step_signature["inputs"][1]["name"] == "state_0"
    report = parity.check_bundle(ASSETS / "bundle", ASSETS / "model.tflite")
    assert report.passed and report.samples == 28 and report.streaming["passed"]
    assert report.notes == ()  # the committed bundle was made for the committed model (same sha256)


def test_demo_pins_litert_2x():
    assert pinned_litert(DEMO).startswith("2.")


def test_android_fills_the_assets(demo_copy, gpu_model_and_bundle):
    model, bundle = gpu_model_and_bundle
    result = CliRunner().invoke(cli, ["android", str(model), "--bundle", str(bundle), "--demo", str(demo_copy),
                                      "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)["result"]
    assert doc["assets"][0] == "model.tflite" and "bundle/manifest.json" in doc["assets"]
    assert "model.json" not in doc["assets"]
    assets = demo_copy / "app" / "src" / "main" / "assets" / "gru_edge"
    assert (assets / "model.tflite").read_bytes() == model.read_bytes()
    assert parity.check_bundle(assets / "bundle", assets / "model.tflite").passed
    assert not [p for p in assets.parent.iterdir() if p.name.startswith(".")]


def test_android_copies_only_the_files_the_manifest_names(demo_copy, gpu_model_and_bundle, tmp_path):
    model, bundle = gpu_model_and_bundle
    extra = tmp_path / "bundle-plus"
    shutil.copytree(bundle, extra)
    (extra / "secret.npy").write_bytes(b"not for the APK")
    install(model, extra, demo_copy)
    copied = sorted(p.name for p in (demo_copy / "app" / "src" / "main" / "assets" / "gru_edge" / "bundle").iterdir())
    assert copied == ["expected.npy", "inputs.npy", "manifest.json", "targets.npy"]


def test_android_refuses_a_bundle_of_another_model(demo_copy, gpu_model_and_bundle, r1_converted):
    _, bundle = gpu_model_and_bundle
    other = next(m for m in r1_converted.models if m.recipe == "float32").path
    with pytest.raises(AndroidError, match="was made for model.android-gpu.tflite, not for model.float32.tflite"):
        install(other, bundle, demo_copy)
    assert not (demo_copy / "app" / "src" / "main" / "assets" / "gru_edge" / "model.tflite").exists()


def test_android_refuses_a_folder_that_is_not_the_demo(tmp_path, gpu_model_and_bundle):
    model, bundle = gpu_model_and_bundle
    result = CliRunner().invoke(cli, ["android", str(model), "--bundle", str(bundle), "--demo", str(tmp_path)])
    assert result.exit_code == 1 and "is not the gru-edge Android demo" in result.stderr


def test_android_takes_the_model_alone(demo_copy, gpu_model_and_bundle, tmp_path):
    """The sidecar deleted: the model's own description is enough (GPU settings, units, states)."""
    model, bundle = gpu_model_and_bundle
    lone = tmp_path / "lone.tflite"
    shutil.copy(model, lone)
    result = install(lone, bundle, demo_copy)
    assert result.assets[0] == "model.tflite"
    installed = demo_copy / "app" / "src" / "main" / "assets" / "gru_edge" / "model.tflite"
    assert load_description(installed).gpu == {"precision": "fp16", "fallback": "cpu"}


def test_android_refuses_a_model_gru_edge_did_not_describe(demo_copy, gpu_model_and_bundle, tmp_path):
    from gru_edge import description

    model, bundle = gpu_model_and_bundle
    bare = tmp_path / "bare.tflite"  # the same graph without the gru_edge entry, as another tool would write it
    bare.write_bytes(without_metadata(model.read_bytes(), description.EMBEDDED))
    with pytest.raises(AndroidError, match="bare.tflite carries no gru-edge description"):
        install(bare, bundle, demo_copy)


def test_android_refuses_a_gpu_recipe_that_breaks_the_gpu_rules(demo_copy, r1_run, tmp_path):
    """A GPU recipe on TensorFlow's own unrolled GRU (UNPACK, rank-2 STRIDED_SLICE): refused with the first finding,
    nothing copied."""
    from gru_edge import conversion

    recipe = tmp_path / "loop-gpu.toml"
    recipe.write_text('description = "loop"\n[convert]\nquantization = "float32"\nlowering = "keras"\n'
                      'unroll = true\n[gpu]\nprecision = "fp32"\n'
                      "[verify]\natol = 1e-4\nrtol = 1e-4\nmin_psnr_db = 0.0\nmax_task_metric_delta = 0.5\n")
    model = conversion.convert(r1_run / "model.keras", [str(recipe)], tmp_path / "out").models[0].path
    bundle = verify(r1_run / "model.keras", model, tmp_path / "bundle").bundle
    result = CliRunner().invoke(cli, ["android", str(model), "--bundle", str(bundle), "--demo", str(demo_copy)])
    assert result.exit_code == 1 and "asks for the GPU but" in result.stderr and "op #" in result.stderr
    assert "gru-edge inspect" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (demo_copy / "app" / "src" / "main" / "assets" / "gru_edge" / "model.tflite").exists()


def test_demo_model_passes_the_gpu_rules():
    from gru_edge import gpu

    assert gpu.check(tflite_model.read(ASSETS / "model.tflite")) == []


def test_the_demo_maps_gpu_settings_from_the_recipe_choices():
    """GpuSettings.kt (the demo's one mapping) accepts exactly the precisions and fallbacks a recipe can name, and
    maps them as gru_edge/gpu.py does (fp32: enforce_f32 / Precision.FP32)."""
    from gru_edge.recipes import GPU_FALLBACKS, GPU_PRECISIONS

    kotlin = (DEMO / "app/src/main/java/dev/gruedge/demo/parity/GpuSettings.kt").read_text()
    assert f"PRECISIONS = listOf({', '.join(map(json.dumps, GPU_PRECISIONS))})" in kotlin
    assert f"FALLBACKS = listOf({', '.join(map(json.dumps, GPU_FALLBACKS))})" in kotlin
    runner = (DEMO / "app/src/main/java/dev/gruedge/demo/ModelRunner.kt").read_text()
    assert "if (gpu.enforceFp32)" in runner and "Precision.FP32" in runner
    gpu_py = (Path(__file__).resolve().parent.parent / "gru_edge" / "gpu.py").read_text()
    assert 'GpuOptions(enforce_f32=precision == "fp32")' in gpu_py

