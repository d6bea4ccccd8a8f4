import json

import numpy as np
import pytest

from gru_edge import conversion, recipes, tflite_model
from gru_edge.errors import ConversionError, ModelError
from gru_edge.runtime import Runner

# FULLY_CONNECTED, elementwise math, SPLIT/RESHAPE/PACK, and the (de)quantize ops of the quantized recipes; the
# framing's log, slices and exp, and the streaming ring's count (MINIMUM).
LOWERED_OPS = {"FULLY_CONNECTED", "ADD", "SUB", "MUL", "LOGISTIC", "TANH", "SPLIT", "RESHAPE", "CONCATENATION", "DEQUANTIZE",
               "QUANTIZE", "MAXIMUM", "LOG", "STRIDED_SLICE", "EXP", "MINIMUM"}


@pytest.mark.parametrize("which", ["r1", "r2"])
def test_every_recipe_gives_a_builtin_ops_model_the_standard_runtime_runs(which, request):
    result = request.getfixturevalue(f"{which}_converted")
    assert {m.recipe for m in result.models} == set(recipes.shipped_names())
    t, f, o = (24, 1, 1) if which == "r1" else (24, 4, 3)  # r1: 12 steps after a lag of 12 (log,diff12)
    for m in result.models:
        payload = m.path.read_bytes()
        assert b"Flex" not in payload
        info = tflite_model.parse(payload, m.path.name)
        assert info.custom_ops == [] and set(info.op_counts) <= LOWERED_OPS, (m.recipe, info.op_counts)
        assert "WHILE" not in info.op_counts
        runner = Runner(m.path)
        out = runner.run(np.full((3, t, f), 100.0, np.float32))  # raw values: a constant window
        (name, value), = out.items()
        assert value.shape == (3, o) and np.isfinite(value).all()
        side = json.loads(m.sidecar.read_text())
        assert side["recipe"]["name"] == m.recipe and side["size_bytes"] == len(payload)
        assert side["signature"]["inputs"][0]["shape"] == [1, t, f]
        assert side["signature"]["outputs"][0]["name"] == name
        assert side["framing"]["window"] + side["framing"]["lag"] == t and side["ops"] == info.op_counts
        if m.recipe in ("int8", "int16x8"):
            assert side["calibration_samples"] > 4
        # int16x8 on a differencing model (r1: log,diff12): the airline's 4x range holds at the widest margin
        assert side["level_margin"] == (4.0 if m.recipe == "int16x8" and which == "r1" else None)
        if m.recipe == "android-gpu":
            assert side["gpu"] == {"precision": "fp16", "fallback": "cpu"}


def test_int8_is_really_integer(r2_converted):
    """Every matrix product and activation of the int8 model runs on int8 tensors (int32 biases); float appears only
    at the float32 input and output, through one QUANTIZE and one DEQUANTIZE."""
    m = next(m for m in r2_converted.models if m.recipe == "int8")
    info = tflite_model.parse(m.path.read_bytes())
    inner = [op for op in info.ops if op.name not in ("QUANTIZE", "DEQUANTIZE")]
    fc = [op for op in inner if op.name == "FULLY_CONNECTED"]
    assert len(fc) > 48 and all(op.input_types[:2] == ("int8", "int8") and op.output_types == ("int8",) for op in fc)
    assert all(op.input_types[2] in ("int32", "none") for op in fc if len(op.input_types) > 2)
    assert all(set(op.input_types + op.output_types) <= {"int8", "int32", "none"} for op in inner), \
        {op.name: op.input_types + op.output_types for op in inner if "float32" in op.input_types + op.output_types}
    assert info.op_counts["QUANTIZE"] == 1 and info.op_counts["DEQUANTIZE"] == 1


def _loop_recipe(tmp_path, quantization):
    p = tmp_path / f"loop-{quantization}.toml"
    p.write_text(f"""description = "TensorFlow's own GRU loop"
[convert]
quantization = "{quantization}"
lowering = "keras"
unroll = false
[verify]
atol = 1e-5
rtol = 1e-5
min_psnr_db = 90
max_task_metric_delta = 0.01
""")
    return str(p)


def test_stock_loop_float_converts_to_a_while_model(r1_run, tmp_path):
    result = conversion.convert(r1_run / "model.keras", [_loop_recipe(tmp_path, "float32")], tmp_path / "out")
    assert "WHILE" in result.models[0].ops


def test_converter_crash_is_a_clear_error_and_leaves_no_file(r1_run, tmp_path):
    """TF's converter segfaults on full-integer Keras GRU loops: the child dies, the caller reports it."""
    out = tmp_path / "out"
    with pytest.raises(ConversionError, match=r"The TFLite converter crashed: the child process was killed by "
                                              r"SIGSEGV while converting recipe 'loop-int8' \(int8, lowering = keras, "
                                              r"unroll = false\).*use lowering = \"gru-edge\""):
        conversion.convert(r1_run / "model.keras", ["float32", _loop_recipe(tmp_path, "int8")], out)
    assert not out.exists() or list(out.iterdir()) == []


def test_int8_without_calibration_data_is_named_and_the_others_are_made(r1_run, tmp_path):
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "model.keras").write_bytes((r1_run / "model.keras").read_bytes())
    result = conversion.convert(lone / "model.keras", ["float16", "int8"], tmp_path / "out")
    (recipe, why), = result.failed  # int8 cannot be made; float16 still is
    assert recipe == "int8" and "Recipe 'int8' (int8) needs calibration data: give --calibration FILE" in why
    assert [m.recipe for m in result.models] == ["float16"] and not result.ok
    assert result.models[0].path.is_file() and json.loads(result.models[0].sidecar.read_text())["framing"] is None
    assert not (tmp_path / "out" / "model.int8.tflite").exists()
    with pytest.raises(ConversionError, match=r"Recipe 'int8' \(int8\) needs calibration data"):
        conversion.convert(lone / "model.keras", ["int8"], tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_missing_and_wrong_model_files(tmp_path):
    with pytest.raises(ModelError, match="Model file not found"):
        conversion.convert(tmp_path / "none.keras", ["float32"], tmp_path)
    (tmp_path / "m.h5").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"m.h5 is not a .keras file"):
        conversion.convert(tmp_path / "m.h5", ["float32"], tmp_path)


def test_not_a_gru_model(tmp_path):
    from gru_edge.io import quiet_tensorflow

    with quiet_tensorflow():
        import keras
    inputs = keras.Input((8, 2))
    m = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten(name="flatten")(inputs)))
    m.save(tmp_path / "dense.keras")
    with pytest.raises(ModelError, match=r"dense.keras is not a GRU model: it has no GRU layer \(layers: InputLayer, "
                                         r"Flatten, Dense\)"):
        conversion.convert(tmp_path / "dense.keras", ["float32"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_repeated_recipe(r1_run, tmp_path):
    with pytest.raises(ConversionError, match="Recipe names repeat"):
        conversion.convert(r1_run / "model.keras", ["float32", "float32"], tmp_path)
