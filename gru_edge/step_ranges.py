"""Full-integer int8: one set of quantization parameters per role in the cell, shared by every unrolled step.

TensorFlow's converter calibrates each tensor on its own, so the 24 steps of an unrolled GRU get 24 slightly
different scales for what is the same quantity (the update gate's pre-activation, the state, ...), each written to the
file with its own parameter table, and every step's state projection gets its own re-quantized int32 bias (its scale
is input scale x weight scale). This pass finds the tensors that play the same role at different steps (they have the
same neighbourhood in the graph: same ops, same weight buffers, a few hops out), gives each role the union of its
steps' ranges, and re-quantizes the biases that depend on those scales. Compaction then writes each table and bias
once. The values change by at most one quantization step of the wider range; verify measures the result. No
TensorFlow.
"""

from __future__ import annotations

import numpy as np

_HOPS = 4  # neighbourhood depth that tells layers and roles apart (weights are at most two hops from any tensor)
_TIED = {"SPLIT", "SPLIT_V", "RESHAPE", "CONCATENATION"}  # int8 kernels that need one scale on inputs and outputs
_FIXED = {"LOGISTIC", "TANH", "SOFTMAX"}  # int8 kernels with a prescribed output scale


def share_step_ranges(buf: bytes) -> tuple[bytes, int]:
    """Return the model with shared per-role parameters and the number of int8 tensors whose parameters changed."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    opname = [names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?") for c in model.operatorCodes]
    changed = sum(_share(model, sg, opname, schema.TensorType.INT8, schema.TensorType.INT32) for sg in model.subgraphs)
    if not changed:
        return buf, 0
    builder = flatbuffers.Builder(len(buf))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), changed


def _per_tensor(t, int8: int) -> bool:
    q = t.quantization
    return t.type == int8 and q is not None and q.scale is not None and len(q.scale) == 1


def _share(model, sg, opname: list[str], int8: int, int32: int) -> int:
    tensors, ops = sg.tensors, sg.operators or []
    const = {i for i, t in enumerate(tensors) if t.buffer and model.buffers[t.buffer].data is not None}
    producer = {int(o): (k, j) for k, op in enumerate(ops) for j, o in enumerate(op.outputs)}
    consumers: dict[int, list] = {}
    for k, op in enumerate(ops):
        for j, i in enumerate(op.inputs):
            consumers.setdefault(int(i), []).append((k, j))

    # Roles: Weisfeiler-Lehman refinement of each tensor's label by its producer's and consumers' labels. Weights are
    # known by content (the converter may copy them per use); int32 biases by shape (their values follow the scale).
    def start(i, t):
        if i not in const:
            return ("t", t.type, tuple(t.shape))
        if t.type == int32:
            return ("bias", tuple(t.shape))
        return ("const", t.type, np.asarray(model.buffers[t.buffer].data, np.uint8).tobytes())
    label = [start(i, t) for i, t in enumerate(tensors)]
    for _ in range(_HOPS):
        def around(i):
            k, j = producer.get(i, (None, None))
            kind = None if k is None else opname[ops[k].opcodeIndex]
            up = None if k is None else (kind, None if kind in _TIED else j,  # SPLIT's output j is step j
                                         tuple(label[int(x)] if x >= 0 else None for x in ops[k].inputs))
            down = tuple(sorted((opname[ops[c].opcodeIndex], None if opname[ops[c].opcodeIndex] in _TIED else p)
                                for c, p in consumers.get(i, [])))  # CONCATENATION's input p is step p
            return hash((label[i], up, down))
        label = [label[i] if i in const else around(i) for i in range(len(tensors))]

    parent = list(range(len(tensors)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict = {}
    for i, t in enumerate(tensors):
        if i not in const and _per_tensor(t, int8):
            parent[find(i)] = find(first.setdefault(label[i], i))
    for op in ops:
        if opname[op.opcodeIndex] in _TIED:
            ends = [int(i) for i in (*op.inputs, *op.outputs) if i >= 0 and int(i) not in const]
            for i in ends[1:]:
                parent[find(i)] = find(ends[0])
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(tensors):
        if i not in const and _per_tensor(t, int8):
            groups.setdefault(find(i), []).append(i)

    fixed = {int(o) for op in ops if opname[op.opcodeIndex] in _FIXED for o in op.outputs}
    old_scale = {i: float(tensors[i].quantization.scale[0]) for g in groups.values() for i in g}
    changed = set()
    for members in groups.values():
        params = {(float(tensors[i].quantization.scale[0]), int(tensors[i].quantization.zeroPoint[0]))
                  for i in members}
        if len(params) == 1 or fixed & set(members):
            continue  # already one set, or a kernel prescribes it
        lo = min(0.0, *(s * (-128 - z) for s, z in params))
        hi = max(0.0, *(s * (127 - z) for s, z in params))
        scale = (hi - lo) / 255.0
        zero = int(np.clip(np.round(-128 - lo / scale), -128, 127))
        for i in members:
            q = tensors[i].quantization
            if (float(q.scale[0]), int(q.zeroPoint[0])) != (scale, zero):
                q.scale, q.zeroPoint = np.array([scale], np.float32), np.array([zero], np.int64)
                q.min = q.max = None
                changed.add(i)
    _requantize_biases(model, ops, opname, tensors, old_scale, changed, int32)
    return len(changed)


def _requantize_biases(model, ops, opname, tensors, old_scale: dict, changed: set, int32: int) -> None:
    """An int32 FULLY_CONNECTED bias is quantized with input scale x weight scale: follow the input's new scale."""
    from ai_edge_litert import schema_py_generated as schema

    done = set()
    for op in ops:
        if opname[op.opcodeIndex] != "FULLY_CONNECTED" or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        x, w, b = (int(i) for i in op.inputs[:3])
        if x not in changed or tensors[b].type != int32 or b in done:
            continue
        done.add(b)
        bias = tensors[b]
        new_scale = float(tensors[x].quantization.scale[0])
        ratio = old_scale[x] / new_scale
        values = np.frombuffer(np.asarray(model.buffers[bias.buffer].data, np.uint8).tobytes(), np.int32)
        new = np.clip(np.round(values.astype(np.float64) * ratio), -2**31, 2**31 - 1).astype(np.int32)
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(new.tobytes(), np.uint8)
        model.buffers.append(buffer)
        bias.buffer = len(model.buffers) - 1
        # The kernel checks bias scale == input scale x weight scale (per output channel).
        bias.quantization.scale = (new_scale * np.asarray(tensors[w].quantization.scale, np.float64)).astype(np.float32)
