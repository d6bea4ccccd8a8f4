import json

import numpy as np
import pytest

from gru_edge import conversion, tflite_model
from gru_edge.errors import ModelError
from gru_edge.runtime import Runner
from gru_edge.verification import verify

STREAMING = """description = "{q} with a one-step streaming signature"
[convert]
quantization = "{q}"
streaming = true
[verify]
atol = {atol}
rtol = {atol}
min_psnr_db = 20
max_task_metric_delta = 0.05
"""


@pytest.fixture(scope="module")
def streamed(r2_run, tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    names = []
    for q, atol in (("float32", 1e-5), ("dynamic-int8", 3e-2), ("int8", 0.2)):
        (d / f"stream-{q}.toml").write_text(STREAMING.format(q=q, atol=atol))
        names.append(str(d / f"stream-{q}.toml"))
    return conversion.convert(r2_run / "model.keras", names, d / "out")


def test_step_signature_has_explicit_state(streamed):
    m = streamed.models[0]
    info = tflite_model.read(m.path)
    step = info.signature("step")
    assert [(t.name, t.shape) for t in step.inputs] == [("frame", (1, 4)), ("state_0", (1, 64)), ("state_1", (1, 64))]
    assert [t.name for t in step.outputs] == ["forecast", "state_0_out", "state_1_out"]
    assert json.loads(m.sidecar.read_text())["signatures"] == ["serving_default", "step"]
    # Explicit state in and out: no variable tensors (LiteRT's CompiledModel refuses them).
    assert "VAR_HANDLE" not in info.op_counts and "READ_VARIABLE" not in info.op_counts


@pytest.mark.parametrize("index", [0, 1])
def test_step_over_t_steps_equals_the_full_sequence(streamed, index):
    runner = Runner(streamed.models[index].path)
    x = np.random.default_rng(2).standard_normal((6, 24, 4)).astype(np.float32)
    full, stepped = runner.run(x)["forecast"], runner.run_steps(x)["forecast"]
    assert np.abs(full - stepped).max() <= 1e-5


def test_verify_checks_the_step_signature_too(r2_run, streamed):
    rep = verify(r2_run / "model.keras", streamed.models[0].path).report
    assert rep.passed and rep.streaming["passed"] and rep.streaming["max_abs_error"] <= 1e-5


def test_int8_step_graph_is_calibrated_and_shares_the_weights(r2_run, r2_converted, streamed):
    """The int8 `step` signature is integer too (calibrated on the states the training windows reach), its weights are
    the full graph's, and it agrees with the full sequence to int8 precision."""
    from ai_edge_litert import schema_py_generated as schema

    path = streamed.models[2].path
    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    fc = {i for i, c in enumerate(model.operatorCodes) if c.builtinCode == schema.BuiltinOperator.FULLY_CONNECTED}
    step = model.subgraphs[1]
    kinds = {step.tensors[int(op.inputs[1])].type for op in step.operators if op.opcodeIndex in fc}
    assert kinds == {schema.TensorType.INT8}
    plain = next(m for m in r2_converted.models if m.recipe == "int8")
    assert path.stat().st_size < plain.size_bytes + 8 * 1024
    rep = verify(r2_run / "model.keras", path).report
    assert rep.passed and rep.streaming["passed"] and rep.streaming["max_abs_error"] < 0.15


def test_streaming_refuses_backwards_layers(tmp_path):
    from gru_edge import lowering
    from gru_edge.io import quiet_tensorflow

    with quiet_tensorflow():
        import keras
    inputs = keras.Input((5, 2))
    m = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.GRU(3, go_backwards=True)(inputs)))
    with pytest.raises(ModelError, match=r"Streaming needs every GRU to run forwards; layer\(s\) gru\w* use "
                                         "go_backwards=True"):
        lowering.build_functions(lowering.read_model(m), 1, streaming=True)
