import numpy as np

from gru_edge.step_ranges import share_step_ranges


def _model(r2_converted, recipe="int8"):
    from ai_edge_litert import schema_py_generated as schema

    buf = next(m for m in r2_converted.models if m.recipe == recipe).path.read_bytes()
    return buf, schema.ModelT.InitFromPackedBuf(buf, 0), schema


def test_unrolled_steps_share_their_quantization(r2_converted):
    """R2 int8 has ~700 activation tensors over 48 unrolled steps; each role in the cell has one parameter set."""
    buf, model, schema = _model(r2_converted)
    sg = model.subgraphs[0]
    params = {(float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0])) for t in sg.tensors
              if t.type == schema.TensorType.INT8 and t.buffer == 0}
    assert len(sg.tensors) > 600 and len(params) < 80
    again, changed = share_step_ranges(buf)
    assert changed == 0 and again == buf  # the shipped file already has one set per role


def test_biases_follow_their_input_scale(r2_converted):
    """The int8 kernel requires bias scale = input scale x weight scale (per channel) for every FULLY_CONNECTED."""
    _, model, schema = _model(r2_converted)
    sg = model.subgraphs[0]
    fc = [i for i, c in enumerate(model.operatorCodes) if c.builtinCode == schema.BuiltinOperator.FULLY_CONNECTED]
    checked = 0
    for op in sg.operators:
        if op.opcodeIndex in fc and len(op.inputs) > 2 and op.inputs[2] >= 0:
            x, w, b = (sg.tensors[int(i)] for i in op.inputs[:3])
            want = float(x.quantization.scale[0]) * np.asarray(w.quantization.scale, np.float64)
            assert np.allclose(np.asarray(b.quantization.scale, np.float64), want, rtol=1e-6)
            checked += 1
    assert checked >= 24  # the candidate's recurrent bias, every step of both layers


def test_float_models_are_left_alone(r2_converted):
    buf, _, _ = _model(r2_converted, "float32")
    assert share_step_ranges(buf) == (buf, 0)
