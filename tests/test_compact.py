import copy

import numpy as np
import pytest

from gru_edge import tflite_model
from gru_edge.compact import compact
from gru_edge.runtime import Runner


@pytest.mark.parametrize("recipe", ["float32", "float16", "dynamic-int8", "int8", "int16x8", "android-gpu"])
def test_compaction_changes_no_value_and_keeps_signatures(r2_raw, recipe):
    """Compacting what TensorFlow's converter wrote (before step ranges, so every value can be compared) makes it
    smaller and computes bit-identical outputs, on both signatures; compacting again changes nothing."""
    raw = r2_raw[recipe]
    small, stats = compact(raw)
    assert stats.bytes_after < stats.bytes_before and stats.buffers_after < stats.buffers_before
    x = np.random.default_rng(1).standard_normal((5, 24, 4)).astype(np.float32)
    a, b = Runner(raw), Runner(small)
    assert _same(a.run(x), b.run(x))
    if a.has_step:
        assert _same(a.run_steps(x), b.run_steps(x))
    sig = tflite_model.parse(small).signature()
    assert [t.name for t in sig.inputs] == ["sequence"] and [t.name for t in sig.outputs] == ["forecast"]
    assert compact(small)[0] == small


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _fc_pair(w1: np.ndarray, w2: np.ndarray) -> bytes:
    """A float32 model y = concat(x W1, x W2) for x [1, 1, F], converted by TensorFlow with a signature."""
    from gru_edge.io import quiet_tensorflow

    with quiet_tensorflow():
        import tensorflow as tf

    def serving_default(x):
        flat = tf.reshape(x, [1, w1.shape[0]])
        return {"y": tf.concat([tf.matmul(flat, w1), tf.matmul(flat, w2)], axis=-1)}

    holder = tf.Module()
    holder.serving_default = tf.function(serving_default, input_signature=[
        tf.TensorSpec([1, 1, w1.shape[0]], tf.float32, name="x")])
    return tf.lite.TFLiteConverter.from_concrete_functions(
        [holder.serving_default.get_concrete_function()], holder).convert()


def test_buffers_that_differ_only_in_their_last_byte_stay_apart():
    """Two weight matrices equal but for the sign of their last value (the last byte of the buffer): compaction
    keeps both, and the model computes what it computed."""
    w1 = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    w2 = w1.copy()
    w2[-1, -1] = -w2[-1, -1]
    assert w1.tobytes()[:-1] == w2.tobytes()[:-1] and w1.tobytes() != w2.tobytes()
    raw = _fc_pair(w1, w2)
    small, _ = compact(raw)
    x = np.ones((1, 1, 6), np.float32)
    got_raw, got_small = Runner(raw).run(x)["y"], Runner(small).run(x)["y"]
    assert np.allclose(got_raw, np.concatenate([x[0] @ w1, x[0] @ w2], axis=-1), atol=1e-5)
    assert np.array_equal(got_small, got_raw)


def test_tensors_with_other_quantization_stay_apart(r2_converted):
    """Two tensors on one weight buffer whose quantization differs (a dynamic-int8 weight given a second scale) are
    two tensors after compaction; merged, one product would be scaled wrongly."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    buf = next(m for m in r2_converted.models if m.recipe == "dynamic-int8").path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    sg = model.subgraphs[0]
    fc = [op for op in sg.operators if model.operatorCodes[op.opcodeIndex].builtinCode ==
          schema.BuiltinOperator.FULLY_CONNECTED and sg.tensors[op.inputs[1]].quantization is not None
          and sg.tensors[op.inputs[1]].quantization.scale is not None]
    users = [op for op in fc if op.inputs[1] == fc[-1].inputs[1]]
    assert len(users) > 1  # a weight shared by several steps
    clone = copy.deepcopy(sg.tensors[users[-1].inputs[1]])
    clone.quantization.scale = np.asarray(clone.quantization.scale, np.float32) * 2
    sg.tensors.append(clone)
    users[-1].inputs = np.array(users[-1].inputs, np.int32)  # a writable copy
    users[-1].inputs[1] = len(sg.tensors) - 1
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    edited = bytes(builder.Output())
    small, _ = compact(edited)
    x = np.random.default_rng(2).standard_normal((3, 24, 4)).astype(np.float32)
    original, changed, compacted = (Runner(b).run(x) for b in (buf, edited, small))
    assert not _same(original, changed)  # the second scale matters
    assert _same(changed, compacted)


def test_sidecar_records_what_compaction_saved(r2_converted):
    import json

    for m in r2_converted.models:
        side = json.loads(m.sidecar.read_text())
        assert side["converter_bytes"] > side["size_bytes"], m.recipe
    int8 = next(m for m in r2_converted.models if m.recipe == "int8")
    # The converter's int8 file repeats per-channel scales for every use of a weight; compaction merges them.
    assert json.loads(int8.sidecar.read_text())["converter_bytes"] > 1.8 * int8.size_bytes


def test_identical_inner_tensors_and_options_are_written_once(r2_converted):
    """Every [1, 1, 64] float step tensor of the float32 model is one table in the file, referenced by index; the
    most used operator code is index 0, which an operator table does not store."""
    from ai_edge_litert import schema_py_generated as schema

    buf = next(m for m in r2_converted.models if m.recipe == "float32").path.read_bytes()
    sg = schema.Model.GetRootAs(buf, 0).Subgraphs(0)
    positions = {sg.Tensors(i)._tab.Pos for i in range(sg.TensorsLength())}  # noqa: SLF001
    assert len(positions) < sg.TensorsLength() / 10
    counts = np.bincount([sg.Operators(i).OpcodeIndex() for i in range(sg.OperatorsLength())])
    assert counts.argmax() == 0


def test_option_tables_with_only_defaults_are_dropped(r2_converted):
    """ADD, MUL and SUB without a fused activation store no options (the runtime's defaults are the same values);
    SPLIT (num_splits) and the steps' FULLY_CONNECTED (keep_num_dims) keep theirs. Values: the verify tests."""
    info = tflite_model.read(next(m for m in r2_converted.models if m.recipe == "float32").path)
    elementwise = [op for op in info.ops if op.name in ("ADD", "MUL", "SUB")]
    assert elementwise and all(op.options == {} for op in elementwise)
    assert all(op.options["numSplits"] for op in info.ops if op.name == "SPLIT")
    assert all(op.options["keepNumDims"] for op in info.ops if op.name == "FULLY_CONNECTED" and
               len(op.output_shapes[0]) == 3)
