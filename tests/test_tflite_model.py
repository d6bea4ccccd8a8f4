import pytest

from gru_edge import tflite_model
from gru_edge.errors import ParityError


def test_reads_ops_signatures_and_sizes(r2_converted):
    m = next(m for m in r2_converted.models if m.recipe == "float32")
    info = tflite_model.read(m.path)
    assert info.size_bytes == m.path.stat().st_size
    # R2 holds 64*192*3 + 4*192 float32 weights plus biases and the head: about 152 KiB.
    assert 150_000 < info.weight_bytes < info.size_bytes
    sig = info.signature()
    assert sig.key == "serving_default"
    assert [t.shape for t in sig.inputs] == [(1, 24, 4)] and [t.shape for t in sig.outputs] == [(1, 3)]
    assert info.op_counts["FULLY_CONNECTED"] > 24 and info.custom_ops == []
    assert info.min_runtime_version


def test_not_a_tflite_file(tmp_path):
    p = tmp_path / "x.tflite"
    p.write_bytes(b"hello world, not a model")
    with pytest.raises(ParityError, match="x.tflite is not a TFLite model"):
        tflite_model.read(p)
    with pytest.raises(ParityError, match="TFLite file not found"):
        tflite_model.read(tmp_path / "none.tflite")
