"""int16x8 for a model whose time steps run in a WHILE loop (gru_edge.lowering.run_loop).

TensorFlow's converter quantizes int16x8 with its older C++ quantizer, which stops on such a model twice:
- "Max and min for dynamic tensors should be recorded during calibration: Failed for tensor while_cond_arg0": the
  calibrator records no range for the loop counter where the WHILE's condition reads it (an int32 it never
  quantizes anyway);
- with that range given, "Quantization to 16x8-bit not yet supported for op: 'WHILE'"; allowing float ops there
  gives a file LiteRT refuses ("Tensor 2 is invalidly specified"): the converter stores equal constants once, so the
  main graph's float zeros and a bias inside the loop share one buffer, which the quantizer rewrites as int16 in
  place.
So here the float model gets one buffer per constant and a range for every int32 input of the loop's subgraphs, and
the quantizer runs with float allowed: every op inside the loop is int16x8, the WHILE itself carries the state.
(The MLIR quantizer, which does int8, writes int16 with a zero point of -1, which LiteRT's kernels refuse.)
"""

from __future__ import annotations

import copy

import numpy as np


def convert(tf, conv) -> bytes:
    """The int16x8 model from ``conv`` (a TFLiteConverter set up for int16x8, with its representative dataset)."""
    from tensorflow.lite.python.optimize import calibrator

    plain = copy.copy(conv)
    plain.optimizations, plain.representative_dataset = [], None
    plain.target_spec = copy.copy(conv.target_spec)
    plain.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    prepared = calibrator.add_intermediate_tensors(prepare(plain.convert()))
    dataset = conv.representative_dataset
    samples = dataset.input_gen if hasattr(dataset, "input_gen") else dataset
    return calibrator.Calibrator(prepared).calibrate_and_quantize(samples, tf.float32, tf.float32, True, tf.int16,
                                                                  tf.int64)


def prepare(float_model: bytes) -> bytes:
    """``float_model`` with a buffer of its own for every constant tensor, and a range for every int32 input of the
    loop's subgraphs (the counter: it stays int32)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(float_model, 0)
    used = set()
    for sg in model.subgraphs:
        for t in sg.tensors:
            data = model.buffers[t.buffer].data
            if data is None or len(data) == 0:
                continue
            if t.buffer in used:
                own = schema.BufferT()
                own.data = np.array(data, copy=True)
                model.buffers.append(own)
                t.buffer = len(model.buffers) - 1
            used.add(t.buffer)
    for sg in model.subgraphs[1:]:
        for i in sg.inputs:
            t = sg.tensors[i]
            if t.type == schema.TensorType.INT32 and (t.quantization is None or t.quantization.min is None):
                q = schema.QuantizationParametersT()
                q.min, q.max = np.zeros(1, np.float32), np.ones(1, np.float32)
                t.quantization = q
    builder = flatbuffers.Builder(len(float_model) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
