import numpy as np
import pytest

from gru_edge import tflite_model
from gru_edge.compact import compact
from gru_edge.runtime import Runner


@pytest.mark.parametrize("recipe", ["float32", "float16", "dynamic-int8", "int8", "int16x8"])
def test_compaction_changes_no_value_and_keeps_signatures(r2_converted, recipe):
    """The shipped file is already compacted: compacting it again changes nothing, and a repacked copy of it
    computes bit-identical outputs."""
    model = next(m for m in r2_converted.models if m.recipe == recipe)
    shipped = model.path.read_bytes()
    again, stats = compact(shipped)
    assert stats.bytes_after <= stats.bytes_before and stats.tensors_after == stats.tensors_before
    x = np.random.default_rng(1).standard_normal((5, 24, 4)).astype(np.float32)
    a, b = Runner(shipped).run(x), Runner(again).run(x)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    sig = tflite_model.parse(again).signature()
    assert [t.name for t in sig.inputs] == ["sequence"] and [t.name for t in sig.outputs] == ["forecast"]


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
