"""Edit a .tflite through the flatbuffer object API, as another tool (or a newer converter) would write it."""

import flatbuffers
from ai_edge_litert import schema_py_generated as schema


def rewrite(payload: bytes, change) -> bytes:
    """``payload`` with ``change(model)`` applied to its ModelT."""
    m = schema.ModelT.InitFromPackedBuf(payload, 0)
    change(m)
    b = flatbuffers.Builder(len(payload))
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def without_metadata(payload: bytes, name: str = "gru_edge") -> bytes:
    """``payload`` without its metadata entry ``name`` (by default gru-edge's description)."""
    def change(m):
        m.metadata = [e for e in m.metadata if e.name.decode() != name]
    return rewrite(payload, change)


def newer_op(payload: bytes, op: str, version: int) -> bytes:
    """``payload`` claiming ``op`` at ``version``."""
    code = getattr(schema.BuiltinOperator, op)

    def change(m):
        for oc in m.operatorCodes:
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
                oc.version = version
    return rewrite(payload, change)
