import numpy as np
import pytest

from gru_edge.step_ranges import share_step_ranges


def _model(r2_converted, recipe="int8"):
    from ai_edge_litert import schema_py_generated as schema

    buf = next(m for m in r2_converted.models if m.recipe == recipe).path.read_bytes()
    return buf, schema.ModelT.InitFromPackedBuf(buf, 0), schema


@pytest.mark.parametrize("recipe", ["int8", "int16x8"])
def test_unrolled_steps_share_their_quantization(r2_converted, recipe):
    """R2 has ~700 activation tensors over 48 unrolled steps; each role in the cell has one parameter set."""
    buf, model, schema = _model(r2_converted, recipe)
    sg = model.subgraphs[0]
    params = {(float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0])) for t in sg.tensors
              if t.type in (schema.TensorType.INT8, schema.TensorType.INT16) and t.buffer == 0}
    assert len(sg.tensors) > 600 and len(params) < 80
    again, changed = share_step_ranges(buf)
    assert changed == 0 and again == buf  # the shipped file already has one set per role


@pytest.mark.parametrize("recipe, biased", [("int8", 24), ("int16x8", 3)])
def test_biases_follow_their_input_scale(r2_converted, recipe, biased):
    """Integer kernels require bias scale = input scale x weight scale (per channel) for every FULLY_CONNECTED.
    int8 keeps the candidate's recurrent bias in its per-step FULLY_CONNECTED; int16x8 only the projections and head."""
    _, model, schema = _model(r2_converted, recipe)
    sg = model.subgraphs[0]
    fc = [i for i, c in enumerate(model.operatorCodes) if c.builtinCode == schema.BuiltinOperator.FULLY_CONNECTED]
    checked = 0
    for op in sg.operators:
        if op.opcodeIndex in fc and len(op.inputs) > 2 and op.inputs[2] >= 0:
            x, w, b = (sg.tensors[int(i)] for i in op.inputs[:3])
            want = float(x.quantization.scale[0]) * np.asarray(w.quantization.scale, np.float64)
            assert np.allclose(np.asarray(b.quantization.scale, np.float64), want, rtol=1e-6)
            checked += 1
    assert checked >= biased


def test_float_models_are_left_alone(r2_converted):
    buf, _, _ = _model(r2_converted, "float32")
    assert share_step_ranges(buf) == (buf, 0)


@pytest.mark.parametrize("recipe", ["int8", "int16x8"])
def test_each_bias_is_stored_once(r2_converted, recipe):
    """Equal roles get bit-equal re-quantized biases, so no FULLY_CONNECTED has a bias of its own per step."""
    _, model, schema = _model(r2_converted, recipe)
    sg = model.subgraphs[0]
    fc = [i for i, c in enumerate(model.operatorCodes) if c.builtinCode == schema.BuiltinOperator.FULLY_CONNECTED]
    weights, biases = set(), set()
    for op in sg.operators:
        if op.opcodeIndex in fc:
            weights.add(sg.tensors[int(op.inputs[1])].buffer)
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                biases.add(sg.tensors[int(op.inputs[2])].buffer)
    assert len(biases) <= len(weights) < 12


@pytest.mark.parametrize("recipe", ["int8", "int16x8"])
def test_each_shared_range_covers_every_steps_own_range(r2_raw, recipe):
    """The shared parameters of a role are the union of the ranges the converter calibrated for each step: no step
    clips values its own calibration allowed (one step's range for all clipped the others: R2 int8 46 -> 40 dB)."""
    from ai_edge_litert import schema_py_generated as schema

    raw = r2_raw[recipe]
    shared, changed = share_step_ranges(raw)
    assert changed > 100
    model = schema.ModelT.InitFromPackedBuf(raw, 0)
    before, after = model.subgraphs[0].tensors, schema.ModelT.InitFromPackedBuf(shared, 0).subgraphs[0].tensors
    qmin, qmax = (-128, 127) if recipe == "int8" else (-32767, 32767)
    widened = 0
    for t0, t1 in zip(before, after):
        q0, q1 = t0.quantization, t1.quantization
        stored = t0.buffer and model.buffers[t0.buffer].data is not None  # weights and biases: not shared
        if stored or q0 is None or q0.scale is None or len(q0.scale) != 1:
            continue
        lo0, hi0 = (float(q0.scale[0]) * (q - int(q0.zeroPoint[0])) for q in (qmin, qmax))
        lo1, hi1 = (float(q1.scale[0]) * (q - int(q1.zeroPoint[0])) for q in (qmin, qmax))
        step = float(q1.scale[0])
        assert lo1 <= lo0 + step and hi1 >= hi0 - step, (t0.name, (lo0, hi0), (lo1, hi1))
        widened += hi1 > hi0 + step or lo1 < lo0 - step
    # Steps' own ranges differ by more than a quantization step: one step's range could not stand for them all.
    assert widened >= 10, widened
