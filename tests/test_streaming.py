import json

import numpy as np
import pytest

from gru_edge import convert, tflite_model
from gru_edge.errors import ModelError
from gru_edge.runtime import Runner
from gru_edge.verify import verify

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
    for q, atol in (("float32", 1e-5), ("dynamic-int8", 3e-2)):
        (d / f"stream-{q}.toml").write_text(STREAMING.format(q=q, atol=atol))
    return convert.convert(r2_run / "model.keras", [str(d / "stream-float32.toml"),
                                                    str(d / "stream-dynamic-int8.toml")], d / "out")


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
