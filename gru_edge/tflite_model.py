"""Read a ``.tflite`` flatbuffer with LiteRT's generated schema: ops, versions, signatures, sizes. No TensorFlow."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gru_edge.errors import ParityError
from gru_edge.names import SERVE

MAX_BYTES = 2**31 - 1  # flatbuffers address at most 2 GiB
_TYPE_NAMES: dict[int, str] = {}
_OP_NAMES: dict[int, str] = {}


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    if not _OP_NAMES:
        _OP_NAMES.update({v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")})
        _TYPE_NAMES.update({v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")})
    return schema


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class Signature:
    key: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def to_dict(self) -> dict:
        return {"key": self.key, "inputs": [t.to_dict() for t in self.inputs],
                "outputs": [t.to_dict() for t in self.outputs]}


@dataclass(frozen=True)
class OpUse:
    """One operator as it appears in the graph (subgraph index, position, op name, version, tensor shapes)."""

    subgraph: int
    index: int
    name: str
    version: int
    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]
    options: dict = field(default_factory=dict)
    input_const: tuple[bool, ...] = ()  # per input: stored in the file (weights) rather than computed
    input_types: tuple[str, ...] = ()
    output_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class TfliteModel:
    path: str
    size_bytes: int
    weight_bytes: int
    ops: tuple[OpUse, ...]
    signatures: tuple[Signature, ...]
    min_runtime_version: str | None
    dynamic_tensors: int = 0  # tensors whose shape has an unknown (-1) dimension
    variable_tensors: int = 0
    nonfinite_scales: int = 0  # tensors whose quantization scale is NaN or infinite (calibration met NaN)
    metadata: dict = field(default_factory=dict, repr=False)  # the flatbuffer's metadata entries: name -> bytes

    @property
    def op_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(op.name for op in self.ops).items()))

    @property
    def op_versions(self) -> dict[str, list[int]]:
        versions: dict[str, set[int]] = {}
        for op in self.ops:
            versions.setdefault(op.name, set()).add(op.version)
        return {k: sorted(v) for k, v in sorted(versions.items())}

    @property
    def time_form(self) -> str:
        """"loop" when time runs in a WHILE loop (the graph's size does not grow with the window), else "unrolled"
        (every time step is in the graph)."""
        return "loop" if any(op.name == "WHILE" for op in self.ops) else "unrolled"

    @property
    def custom_ops(self) -> list[str]:
        """Ops outside the builtin set (Flex/Select TF ops and other custom ops)."""
        return sorted({op.name for op in self.ops if op.name.startswith("CUSTOM:")})

    def signature(self, key: str | None = None) -> Signature:
        if not self.signatures:
            raise ParityError(f"{Path(self.path).name} has no signatures; convert it with gru-edge convert.")
        for sig in self.signatures:
            if key in (None, sig.key):
                return sig
        raise ParityError(f"{Path(self.path).name} has no signature '{key}'; it has "
                          f"{', '.join(s.key for s in self.signatures)}.")

    def main_signature(self) -> Signature:
        """The signature a runner uses by default: serving_default, else the first."""
        return self.signature(SERVE if any(s.key == SERVE for s in self.signatures) else None)

    def to_dict(self) -> dict:
        return {"path": self.path, "size_bytes": self.size_bytes, "weight_bytes": self.weight_bytes,
                "graph_bytes": self.size_bytes - self.weight_bytes, "time_form": self.time_form, "ops": self.op_counts,
                "op_versions": self.op_versions, "custom_ops": self.custom_ops,
                "signatures": [s.to_dict() for s in self.signatures],
                "min_runtime_version": self.min_runtime_version, "dynamic_tensors": self.dynamic_tensors,
                "variable_tensors": self.variable_tensors, "nonfinite_scales": self.nonfinite_scales,
                "metadata": sorted(self.metadata)}


def _options(op) -> dict:
    opts = op.builtinOptions
    if opts is None:
        return {}
    return {k: v for k, v in vars(opts).items() if isinstance(v, (int, float, bool))}


def read(path: Path) -> TfliteModel:
    """Return the structure of the ``.tflite`` file at ``path``; ParityError if it is not a TFLite flatbuffer."""
    path = Path(path)
    if not path.is_file():
        raise ParityError(f"TFLite file not found: {path}.")
    if path.stat().st_size > MAX_BYTES:
        raise ParityError(f"{path.name} is {path.stat().st_size} bytes; a TFLite flatbuffer is at most 2 GiB.")
    buf = path.read_bytes()
    return parse(buf, str(path))


def parse(buf: bytes, path: str = "<memory>") -> TfliteModel:
    schema = _schema()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ParityError(f"{Path(path).name} is not a TFLite model (no 'TFL3' identifier).")
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
        return _read(model, buf, path)
    except Exception as e:  # a truncated or corrupt flatbuffer (indices out of range, ...) raises assorted errors
        raise ParityError(f"{Path(path).name} is a damaged TFLite file: {type(e).__name__}.") from None


def _read(model, buf: bytes, path: str) -> TfliteModel:
    def buffer_len(b) -> int:
        if b.data is not None:
            return len(b.data)
        return int(b.size or 0)

    metadata = {}
    for meta in model.metadata or []:
        data = model.buffers[meta.buffer].data
        metadata[_str(meta.name)] = b"" if data is None else bytes(np.asarray(data, dtype=np.uint8))
    described = {int(m.buffer) for m in model.metadata or []}  # metadata is not weights
    weight_bytes = sum(buffer_len(b) for i, b in enumerate(model.buffers or []) if i not in described)
    codes = []
    for oc in model.operatorCodes or []:
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        name = _OP_NAMES.get(code, f"BUILTIN_{code}")
        if name == "CUSTOM":
            custom = oc.customCode.decode() if isinstance(oc.customCode, bytes) else str(oc.customCode)
            name = f"CUSTOM:{custom}"
        codes.append((name, oc.version))

    ops = []
    dynamic = variable = bad_scales = 0
    for si, sg in enumerate(model.subgraphs or []):
        tensors = sg.tensors or []
        for t in tensors:
            sig = t.shapeSignature
            dynamic += int(sig is not None and any(int(d) < 0 for d in sig))
            variable += int(bool(t.isVariable))
            scale = t.quantization.scale if t.quantization is not None else None
            bad_scales += int(scale is not None and not np.all(np.isfinite(np.asarray(scale, np.float64))))

        def shape(i: int) -> tuple[int, ...]:
            return tuple(int(d) for d in tensors[i].shape) if i >= 0 and tensors[i].shape is not None else ()

        def stored(i: int) -> bool:
            return i >= 0 and buffer_len(model.buffers[tensors[i].buffer]) > 0

        # float16 weights arrive through a DEQUANTIZE of a stored tensor; runtimes and GPU delegates treat the
        # result as a constant (the GPU delegate uses the float16 data directly).
        dequantized = {int(op.outputs[0]) for op in sg.operators or []
                       if codes[op.opcodeIndex][0] == "DEQUANTIZE" and op.inputs is not None and stored(int(op.inputs[0]))}

        def const(i: int) -> bool:
            return stored(i) or i in dequantized

        def dtype(i: int) -> str:
            return _TYPE_NAMES.get(tensors[i].type, "?") if i >= 0 else "none"

        for oi, op in enumerate(sg.operators or []):
            name, version = codes[op.opcodeIndex]
            ins = [int(i) for i in (op.inputs if op.inputs is not None else [])]
            outs = [int(i) for i in (op.outputs if op.outputs is not None else [])]
            ops.append(OpUse(si, oi, name, version, tuple(shape(i) for i in ins), tuple(shape(i) for i in outs),
                             _options(op), tuple(const(i) for i in ins), tuple(dtype(i) for i in ins),
                             tuple(dtype(i) for i in outs)))

    def info(sg_index: int, tensor_map) -> TensorInfo:
        t = model.subgraphs[sg_index].tensors[tensor_map.tensorIndex]
        return TensorInfo(_str(tensor_map.name), tuple(int(d) for d in t.shape), _TYPE_NAMES.get(t.type, "?"))

    sigs = tuple(Signature(_str(s.signatureKey), tuple(info(s.subgraphIndex, t) for t in s.inputs or []),
                           tuple(info(s.subgraphIndex, t) for t in s.outputs or []))
                 for s in model.signatureDefs or [])
    min_runtime = metadata.get("min_runtime_version", b"").split(b"\0")[0].decode() or None
    return TfliteModel(path, len(buf), weight_bytes, tuple(ops), sigs, min_runtime, dynamic, variable,
                       bad_scales, metadata)


def _str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
