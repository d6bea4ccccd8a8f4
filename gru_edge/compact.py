"""Shrink a converted ``.tflite`` without changing a single computed value. No TensorFlow.

TensorFlow's converter writes each use of a shared weight as its own tensor, with its own copy of the quantization
parameters (per-channel scales cost 12 bytes per output channel), gives every intermediate tensor an empty buffer and
a long name, and repeats identical shape vectors and option tables. On an unrolled GRU that is most of the file. This
pass merges identical constant tensors and buffers, drops buffers nothing refers to and the names of inner tensors
(signature inputs and outputs keep theirs), points data-less tensors at the shared empty buffer 0, drops option tables
that hold only defaults, and writes each identical vector, string and table once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CompactStats:
    bytes_before: int
    bytes_after: int
    tensors_before: int
    tensors_after: int
    buffers_before: int
    buffers_after: int


def _key(value) -> object:
    """A hashable, content-based key for a generated object-API value (arrays, lists, nested objects)."""
    if value is None or isinstance(value, (int, float, bool, str, bytes)):
        return value
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    if isinstance(value, _Shared):
        return value.key
    return (type(value).__name__, tuple((k, _key(v)) for k, v in sorted(vars(value).items())))


class _Shared:
    """Wraps a table object so that identical tables are packed once and referenced everywhere."""

    def __init__(self, obj, cache: dict):
        self.obj, self.cache, self.key = obj, cache, _key(obj)

    def Pack(self, builder):  # noqa: N802 (flatbuffers' generated API name)
        if self.key not in self.cache:
            self.cache[self.key] = self.obj.Pack(builder)
        return self.cache[self.key]


def _dedup_builder(flatbuffers):
    class DedupBuilder(flatbuffers.Builder):
        """Writes identical strings and numeric vectors once (flatbuffers allows shared references)."""

        def __init__(self, size: int):
            super().__init__(size)
            self._seen: dict = {}

        def CreateNumpyVector(self, x):  # noqa: N802
            key = ("v", x.dtype.str, x.tobytes())
            if key not in self._seen:
                self._seen[key] = super().CreateNumpyVector(x)
            return self._seen[key]

        def CreateString(self, s, encoding="utf-8", errors="strict"):  # noqa: N802
            key = ("s", s if isinstance(s, bytes) else s.encode(encoding, errors))
            if key not in self._seen:
                self._seen[key] = super().CreateString(s, encoding, errors)
            return self._seen[key]

    return DedupBuilder


def compact(buf: bytes) -> tuple[bytes, CompactStats]:
    """Return an equivalent, smaller model and what changed."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(buf, 0)
    n_tensors = sum(len(sg.tensors or []) for sg in model.subgraphs)
    n_buffers = len(model.buffers or [])

    # 1. One buffer per distinct content, and none that nothing refers to; buffer 0 stays the empty sentinel.
    referenced = ({0} | {t.buffer for sg in model.subgraphs for t in sg.tensors}
                  | {m.buffer for m in model.metadata or []} | set(model.metadataBuffer or []))
    buffer_of: dict = {}
    remap_buffer = {}
    for i, b in enumerate(model.buffers):
        if i not in referenced:
            continue
        data = None if b.data is None or len(b.data) == 0 else np.asarray(b.data, np.uint8).tobytes()
        key = ("empty",) if data is None and not b.offset else ("data", hashlib.sha256(data or b"").hexdigest(),
                                                                  b.offset, b.size)
        if i == 0 or key == ("empty",):
            remap_buffer[i] = 0
            continue
        remap_buffer[i] = buffer_of.setdefault(key, i)
    kept = sorted(set(remap_buffer.values()) | {0})
    new_index = {old: new for new, old in enumerate(kept)}
    model.buffers = [model.buffers[i] for i in kept]
    for meta in model.metadata or []:
        meta.buffer = new_index[remap_buffer[meta.buffer]]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [new_index[remap_buffer[int(i)]] for i in model.metadataBuffer]

    io_tensors = {(s.subgraphIndex, t.tensorIndex) for s in model.signatureDefs or []
                  for t in (s.inputs or []) + (s.outputs or [])}
    quant_cache: dict = {}
    options_cache: dict = {}
    for si, sg in enumerate(model.subgraphs):
        for t in sg.tensors:
            t.buffer = new_index[remap_buffer[t.buffer]]
        # 2. Merge constant tensors that are the same in every respect (buffer, type, shape, quantization).
        first_of: dict = {}
        remap = {}
        for ti, t in enumerate(sg.tensors):
            if t.buffer and not t.isVariable and (si, ti) not in io_tensors:
                key = (t.buffer, t.type, _key(t.shape), _key(t.quantization), _key(t.sparsity))
                remap[ti] = first_of.setdefault(key, ti)
            else:
                remap[ti] = ti
        used = sorted({remap[i] for i in _referenced(sg, si, model)})
        order = {old: new for new, old in enumerate(used)}
        index = {old: order[remap[old]] for old in range(len(sg.tensors)) if remap[old] in order}

        def fix(vec):
            if vec is None:
                return None
            return np.array([index[int(i)] if i >= 0 else -1 for i in vec], dtype=np.int32)

        for op in sg.operators or []:
            op.inputs, op.outputs = fix(op.inputs), fix(op.outputs)
            if op.intermediates is not None:
                op.intermediates = fix(op.intermediates)
            if op.builtinOptions is not None and _key(op.builtinOptions) == _key(type(op.builtinOptions)()):
                # All defaults (ADD, MUL, SUB without a fused activation): the runtime fills in the same values.
                op.builtinOptions, op.builtinOptionsType = None, 0
            if op.builtinOptions is not None:
                op.builtinOptions = _Shared(op.builtinOptions, options_cache)
        sg.inputs, sg.outputs = fix(sg.inputs), fix(sg.outputs)
        for s in model.signatureDefs or []:
            if s.subgraphIndex == si:
                for tm in (s.inputs or []) + (s.outputs or []):
                    tm.tensorIndex = index[tm.tensorIndex]
        new_tensors = []
        for old in used:
            t = sg.tensors[old]
            # 3. Inner tensors need no name; the signature's inputs and outputs keep theirs.
            if (si, old) not in io_tensors:
                t.name = None
            if t.shapeSignature is not None and _key(t.shapeSignature) == _key(t.shape):
                t.shapeSignature = None
            q = t.quantization
            if q is not None and all(v is None for v in (q.min, q.max, q.scale, q.zeroPoint, q.details)):
                t.quantization = None  # an empty table says nothing
            if t.quantization is not None:
                t.quantization = _Shared(t.quantization, quant_cache)
            new_tensors.append(t)
        sg.tensors = new_tensors
        sg.name = None

    # 4. Inner tensors of one shape and type are now identical tables: write each once (the tensors vector holds
    #    references). The most used operator code gets index 0, the default a table need not store.
    tensor_cache: dict = {}
    for sg in model.subgraphs:
        sg.tensors = [_Shared(t, tensor_cache) for t in sg.tensors]
    _most_used_opcode_first(model)

    builder = _dedup_builder(flatbuffers)(len(buf))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = bytes(builder.Output())
    stats = CompactStats(len(buf), len(out), n_tensors, sum(len(sg.tensors) for sg in model.subgraphs), n_buffers,
                         len(model.buffers))
    return out, stats


def _most_used_opcode_first(model) -> None:
    counts = np.zeros(len(model.operatorCodes), np.int64)
    for sg in model.subgraphs:
        for op in sg.operators or []:
            counts[op.opcodeIndex] += 1
    order = [int(i) for i in np.argsort(-counts, kind="stable")]
    new_index = {old: new for new, old in enumerate(order)}
    model.operatorCodes = [model.operatorCodes[i] for i in order]
    for sg in model.subgraphs:
        for op in sg.operators or []:
            op.opcodeIndex = new_index[op.opcodeIndex]


def _referenced(sg, si: int, model) -> set[int]:
    refs = set()
    for op in sg.operators or []:
        for vec in (op.inputs, op.outputs, op.intermediates):
            if vec is not None:
                refs.update(int(i) for i in vec if i >= 0)
    for vec in (sg.inputs, sg.outputs):
        if vec is not None:
            refs.update(int(i) for i in vec)
    for s in model.signatureDefs or []:
        if s.subgraphIndex == si:
            refs.update(tm.tensorIndex for tm in (s.inputs or []) + (s.outputs or []))
    return refs
