import numpy as np
import pytest

from gru_edge import gpu, tflite_model
from gru_edge.errors import GpuUnavailable
from gru_edge.tflite_model import OpUse


def _op(name, shapes, const=None, options=None, types=None, out=None):
    const = const if const is not None else tuple(False for _ in shapes)
    return OpUse(0, 0, name, 1, tuple(shapes), tuple(out or [shapes[0]]), options or {}, tuple(const),
                 tuple(types or ["float32"] * len(shapes)))


@pytest.mark.parametrize("op, reason", [
    (_op("WHILE", [(1,)]), "WHILE is not supported by the GPU delegate"),
    (_op("UNPACK", [(1, 24, 4)]), "UNPACK is not supported"),
    (_op("STRIDED_SLICE", [(1, 24), (2,), (2,), (2,)], (False, True, True, True)), "on a 2-D tensor"),
    (_op("STRIDED_SLICE", [(1, 24, 4), (3,), (3,), (3,)], (False, True, True, True), {"shrinkAxisMask": 2}),
     "shrinkAxisMask"),
    (_op("FULLY_CONNECTED", [(64,), (3, 64)], (True, True)), "constant input"),
    (_op("MUL", [(1, 4, 1), (1, 1, 4)]), "not smaller than the other"),
    (_op("GATHER", [(10, 4), (2, 2)], (False, False), types=["float32", "int32"]), "1-D indices"),
    (_op("DEQUANTIZE", [(64,)], (True,), types=["int16"]), "int16 dequantization"),
    (_op("TANH", [(1, 4), (1, 4)]), "exactly one runtime input"),
    (_op("CUSTOM:FlexTensorListReserve", [(1,)]), "custom op"),
])
def test_classic_rules_refuse(op, reason):
    assert reason in gpu._classic_reason(op)


@pytest.mark.parametrize("op", [
    _op("STRIDED_SLICE", [(1, 24, 4), (3,), (3,), (3,)], (False, True, True, True)),
    _op("FULLY_CONNECTED", [(1, 1, 64), (64, 64), (64,)], (False, True, True), {"keepNumDims": True},
        out=[(1, 1, 64)]),
    _op("SUB", [(1, 1, 64), (1, 1, 64)]), _op("SPLIT", [(), (1, 24, 64)], (True, False)),
    _op("ADD", [(1, 1, 64), (64,)], (False, True)), _op("CONCATENATION", [(1, 1, 8), (1, 1, 8)]),
])
def test_classic_rules_accept(op):
    assert gpu._classic_reason(op) is None


@pytest.mark.parametrize("op, reason", [
    (_op("WHILE", [(1,)]), "control flow"),
    (_op("VAR_HANDLE", [(1,)]), "variable tensors"),
    # a 24-way SPLIT: 25 storage buffers in one shader; on an H200 it ran "fully accelerated" with wrong outputs
    (_op("SPLIT", [(), (1, 24, 64)], (True, False), out=[(1, 1, 64)] * 24), "25 runtime tensors"),
    (_op("CONCATENATION", [(1, 1, 8)] * 8), "9 runtime tensors"),
])
def test_litert_rules_refuse(op, reason):
    assert reason in gpu._litert_reason(op)


@pytest.mark.parametrize("op", [
    _op("SPLIT", [(), (1, 24, 64)], (True, False), out=[(1, 4, 64)] * 6),
    _op("CONCATENATION", [(1, 1, 8)] * 7, out=[(1, 7, 8)]),
    _op("FULLY_CONNECTED", [(1, 1, 64), (64, 64), (64,)], (False, True, True), out=[(1, 1, 64)]),
])
def test_litert_rules_accept(op):
    assert gpu._litert_reason(op) is None


@pytest.mark.parametrize("which", ["r1", "r2"])
def test_android_gpu_model_has_no_findings(which, request):
    converted = request.getfixturevalue(f"{which}_converted")
    model = next(m for m in converted.models if m.recipe == "android-gpu")
    assert gpu.check(tflite_model.read(model.path)) == []


def test_keras_loop_model_is_flagged(r1_run, tmp_path):
    from gru_edge import conversion

    recipe = tmp_path / "loop.toml"
    recipe.write_text('description = "loop"\n[convert]\nquantization = "float32"\nlowering = "keras"\nunroll = false\n'
                      "[verify]\natol = 0.4\nrtol = 0.4\nmin_psnr_db = 0.0\nmax_task_metric_delta = 0.5\n")
    m = conversion.convert(r1_run / "model.keras", [str(recipe)], tmp_path / "out").models[0]
    findings = gpu.check(tflite_model.read(m.path))
    assert any(f.op == "WHILE" and f.rules == gpu.LITERT for f in findings)
    assert any(f.op == "WHILE" and f.rules == gpu.CLASSIC for f in findings)


def test_compiled_model_path_matches_the_interpreter(r2_converted):
    """The CompiledModel code used for GPU runs, exercised on the CPU accelerator (no GPU here)."""
    from gru_edge.runtime import Runner

    model = next(m for m in r2_converted.models if m.recipe == "float32")
    x = np.random.default_rng(3).standard_normal((3, 24, 4)).astype(np.float32)
    run = gpu.run_compiled(model.path, x, accelerator="cpu")
    assert run.available and run.outputs["forecast"].shape == (3, 3) and run.stepped is None
    np.testing.assert_allclose(run.outputs["forecast"], Runner(model.path).run(x)["forecast"], atol=1e-6)


def test_compiled_model_streams_the_step_signature(r2_converted):
    """A model with a ``step`` signature is also streamed through it, as the Android demo does on the GPU."""
    from gru_edge.runtime import Runner

    model = next(m for m in r2_converted.models if m.recipe == "android-gpu")
    x = np.random.default_rng(4).standard_normal((2, 24, 4)).astype(np.float32)
    run = gpu.run_compiled(model.path, x, accelerator="cpu")
    assert run.stepped is not None and run.stepped["forecast"].shape == (2, 3)
    np.testing.assert_allclose(run.stepped["forecast"], Runner(model.path).run_steps(x)["forecast"], atol=1e-6)
    # float16 weights: each signature folds the framing's scale into its projection before rounding to float16.
    np.testing.assert_allclose(run.stepped["forecast"], run.outputs["forecast"], rtol=2e-3, atol=1e-5)


def test_no_gpu_is_its_own_outcome(r2_converted):
    """Without a usable GPU the check neither passes nor crashes: GpuUnavailable, exit status 3 in the CLI."""
    model = next(m for m in r2_converted.models if m.recipe == "android-gpu")
    x = np.zeros((1, 24, 4), np.float32)
    try:
        run = gpu.gpu_outputs(model.path, x, "fp16")
    except GpuUnavailable as e:
        assert "GPU check not run" in str(e) and e.exit_code == 3
    else:  # a machine with a GPU: then the model must run fully accelerated, streaming included
        assert run.fully_accelerated and run.outputs["forecast"].shape == (1, 3)
        assert run.stepped["forecast"].shape == (1, 3)
