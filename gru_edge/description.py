"""A converted model's description, inside the ``.tflite`` and beside it. No TensorFlow.

``gru-edge convert`` writes what it knows about a model (recipe, signatures, GPU settings, framing, units, the
source model's hash) into the flatbuffer's ``metadata`` list, entry ``gru_edge`` (JSON, format ``gru-edge-model/1``),
so the file alone is enough for ``inspect``, ``verify --bundle``, ``gru-edge android`` and the demo app. LiteRT
ignores metadata entries it does not know. The same model also gets TFLite Support metadata (``TFLITE_METADATA``:
model, input and output names and descriptions) so Android Studio shows them.

The sidecar ``MODEL.json`` stays as a human-readable copy: the embedded description plus what can be read from the
file itself (its sha256, size, ops). When both exist they must agree.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from gru_edge.errors import ConversionError
from gru_edge.io import read_json_doc, sha256_file
from gru_edge.names import SERVE

SIDECAR_FORMAT = "gru-edge-sidecar/2"  # /2: names the .tflite's sha256
EMBEDDED = "gru_edge"  # the flatbuffer metadata entry
EMBEDDED_FORMAT = "gru-edge-model/1"
SUPPORT = "TFLITE_METADATA"  # TFLite Support's entry (Android Studio's model viewer reads it)
# What the sidecar adds: read from the file itself, so not stored inside it (a file cannot hold its own hash), and
# what only the converting machine cares about: the same conversion gives the same bytes anywhere.
DERIVED = ("model_file", "model_sha256", "size_bytes", "weight_bytes", "ops", "op_versions", "convert_seconds")


@dataclass(frozen=True)
class ModelDescription:
    """What gru-edge knows about a converted model, typed: the sidecar's document (the embedded description is the
    same less DERIVED). Read and validated by ``from_dict`` only."""

    tool: str  # "gru-edge X.Y.Z"
    recipe: dict  # gru_edge.recipes.Recipe.to_dict() of the recipe it was converted with
    source_model: dict  # path (a file name inside the model), sha256, kind; weights_sha256 and form when known
    signature: dict | None = None  # the main signature: key, inputs, outputs (name, shape, dtype)
    signatures: list = field(default_factory=list)
    step_signature: dict | None = None  # streaming recipes: the one-step signature
    gpu: dict | None = None  # precision, fallback: what the recipe asks of the GPU delegate
    framing: dict | None = None  # gru_edge.framing.Framing inside the model (raw units in and out)
    task: dict | None = None  # kind, metric, units: from the training card
    window: int | None = None  # time steps the GRU runs
    input_steps: int | None = None  # time steps of the raw input: the window plus the framing's lag
    converter_bytes: int | None = None
    calibration_samples: int | None = None
    calibration_source: str | None = None
    form: str | None = None  # "chain" (streaming possible) or "graph" (gru_edge.graph)
    loop_steps: int | None = None  # steps per iteration of the WHILE loop over time; 0: unrolled (lowering.time_form)
    notes: list = field(default_factory=list)
    level_margin: float | None = None  # int16x8 on a differencing model: raw levels it reads unclipped
    model_file: str | None = None  # DERIVED: read from the file, written in the sidecar only
    model_sha256: str | None = None
    size_bytes: int | None = None
    weight_bytes: int | None = None
    ops: dict | None = None
    op_versions: dict | None = None
    convert_seconds: float | None = None
    format: str = SIDECAR_FORMAT

    @property
    def recipe_name(self) -> str:
        return self.recipe["name"]

    @property
    def units(self) -> str | None:
        return (self.task or {}).get("units")

    def to_dict(self) -> dict:
        """The sidecar document (what ``gru-edge convert`` writes beside the model)."""
        return {"format": self.format, **{k: v for k, v in asdict(self).items() if k != "format"}}

    @classmethod
    def from_dict(cls, doc: dict, where: str) -> ModelDescription:
        """The description in ``doc`` (a sidecar's document, or the embedded one); ConversionError naming ``where``
        when it lacks what gru-edge writes there."""
        _check_names_source(doc, where)
        names = {f.name for f in fields(cls)}
        typed = {"notes": list, "signatures": list, "gpu": (dict, type(None)), "task": (dict, type(None)),
                 "framing": (dict, type(None)), "signature": (dict, type(None))}
        wrong = sorted(k for k, kind in typed.items() if k in doc and not isinstance(doc[k], kind))
        if wrong:
            raise ConversionError(f"{where} is damaged ({', '.join(wrong)} not what gru-edge writes); convert the "
                                  "model again.")
        return cls(**{k: v for k, v in doc.items() if k in names and k != "format"})


def sidecar_file(tflite_path: Path) -> Path:
    return Path(tflite_path).with_suffix(".json")


def embedded_part(sidecar: dict | ModelDescription) -> dict:
    """The part of a sidecar that goes inside the model: no paths of the converting machine (the source model is
    named by its file name and sha256)."""
    sidecar = sidecar.to_dict() if isinstance(sidecar, ModelDescription) else sidecar
    doc = {"format": EMBEDDED_FORMAT, **{k: v for k, v in sidecar.items() if k not in DERIVED + ("format",)}}
    source = doc.get("source_model")
    if isinstance(source, dict) and isinstance(source.get("path"), str):
        doc["source_model"] = {**source, "path": Path(source["path"]).name}
    return doc


def embed(payload: bytes, doc: dict | ModelDescription) -> bytes:
    """``payload`` with ``doc`` (a sidecar, or its embedded part) as its ``gru_edge`` metadata entry, a TFLite
    Support description and a one-line model description. An earlier gru-edge description is replaced."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    doc = embedded_part(doc)
    model = schema.ModelT.InitFromPackedBuf(payload, 0)
    entries = {EMBEDDED: json.dumps(doc, separators=(",", ":")).encode(), SUPPORT: _support_metadata(model, doc)}
    model.metadata = [m for m in model.metadata or [] if _text(m.name) not in entries]
    for name, data in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, np.uint8)
        model.buffers.append(buffer)
        meta = schema.MetadataT()
        meta.name, meta.buffer = name, len(model.buffers) - 1
        model.metadata.append(meta)
    recipe = doc.get("recipe") or {}
    model.description = f"{doc.get('tool', 'gru-edge')}: recipe {recipe.get('name', '?')}"
    builder = flatbuffers.Builder(len(payload) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_embedded(metadata: dict[str, bytes], name: str = "model") -> dict | None:
    """The ``gru_edge`` entry of a model's metadata (name -> bytes), checked; None when there is none."""
    raw = metadata.get(EMBEDDED)
    if raw is None:
        return None
    try:
        doc = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != EMBEDDED_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else "unreadable"
        raise ConversionError(f"{name}'s gru_edge description is not one this gru-edge reads (format {found!r}, "
                              f"expected '{EMBEDDED_FORMAT}'); convert the model again.")
    _check_names_source(doc, f"{name}'s gru_edge description")
    return doc


def _check_names_source(doc: dict, what: str) -> None:
    made_from = doc.get("source_model")
    if not isinstance(doc.get("tool"), str) or \
            not isinstance(doc.get("recipe"), dict) or not isinstance(doc["recipe"].get("name"), str) or \
            not isinstance(made_from, dict) or not isinstance(made_from.get("sha256"), str) or \
            not isinstance(made_from.get("path"), str):
        raise ConversionError(f"{what} lacks the tool, recipe or source model gru-edge names there; convert the model "
                              "again.")


def load(tflite_path: Path, info=None) -> ModelDescription | None:
    """What gru-edge knows about ``tflite_path``: its sidecar (checked against the file and
    against the description inside it), or else the description inside it; None for a model gru-edge did not
    describe (converted elsewhere or by an older gru-edge, with no sidecar). ``info``: the file as
    tflite_model.read already gave it, so that it is not parsed twice."""
    from gru_edge import tflite_model

    tflite_path = Path(tflite_path)
    info = info or tflite_model.read(tflite_path)
    embedded = read_embedded(info.metadata, tflite_path.name)
    path = sidecar_file(tflite_path)
    sidecar = read_json_doc(path, ConversionError, "convert the model again, or delete it (the model describes "
                            "itself)") if path.is_file() else None
    fmt = sidecar.get("format") if isinstance(sidecar, dict) else None
    if not str(fmt).startswith("gru-edge-sidecar/"):  # none, or a JSON file of someone else's that has the name
        if embedded is None:
            return None
        return ModelDescription.from_dict(
            {**{k: v for k, v in embedded.items() if k != "format"}, "model_file": tflite_path.name,
             "model_sha256": sha256_file(tflite_path), "size_bytes": info.size_bytes,
             "weight_bytes": info.weight_bytes, "ops": info.op_counts, "op_versions": info.op_versions},
            f"{tflite_path.name}'s gru_edge description")
    if fmt != SIDECAR_FORMAT:
        raise ConversionError(f"{path} is not a gru-edge sidecar of this version (format {fmt!r}, expected "
                              f"'{SIDECAR_FORMAT}'); convert the model again.")
    _check_names_source(sidecar, str(path))
    if sidecar.get("model_sha256") != sha256_file(tflite_path):
        raise ConversionError(f"{path.name} describes another {tflite_path.name} (sha256 differs): the two "
                              "files do not belong together. Convert again, or remove the sidecar.")
    if embedded is not None:
        copy = embedded_part(sidecar)
        differ = sorted(k for k in (set(embedded) | set(copy)) - {"format"}
                        if k not in copy or k not in embedded or copy[k] != embedded[k])
        if differ:
            raise ConversionError(f"{path.name} disagrees with the description inside {tflite_path.name} on "
                                  f"{', '.join(differ[:4])}: it was edited. Delete it (the model describes itself) "
                                  "or convert again.")
    return ModelDescription.from_dict(sidecar, str(path))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


# ---- TFLite Support metadata (metadata_schema.fbs of tensorflow/tflite-support, file identifier "M001") ----------
# No maintained Python library writes it (tflite-support's last release, 0.4.4, dates from 2023 and needs
# protobuf<4, which TensorFlow 2.21 does not allow), so the few tables used here are written field by field.

def _support_metadata(model, doc: dict) -> bytes:
    """ModelMetadata for subgraph 0: the model's and each input's and output's name and description."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    names = {}
    for s in model.signatureDefs or []:
        if s.subgraphIndex == 0:
            names |= {int(t.tensorIndex): _text(t.name) for t in (s.inputs or []) + (s.outputs or [])}
    sg = model.subgraphs[0]
    task = doc.get("task") or {}
    units = task.get("units") or ""
    framing = doc.get("framing")
    recipe = (doc.get("recipe") or {}).get("name", "?")

    def describe(i: int, is_input: bool) -> tuple[str, str]:
        name = names.get(i) or _text(sg.tensors[i].name)
        shape = "x".join(str(int(d)) for d in sg.tensors[i].shape)
        if is_input:
            what = ("raw values in the data's units, [batch, time, features] (the scaling is inside the model)"
                    if framing else "the values the Keras model was given")
        else:
            what = (f"in {units}" if units else "as the Keras model returns them") + (
                f" ({task.get('kind')})" if task.get("kind") else "")
        dtype = next((k.lower() for k, v in vars(schema.TensorType).items() if v == sg.tensors[i].type), "?")
        return name, f"[{shape}] {dtype}: {what}"

    b = flatbuffers.Builder(1024)

    def table(fields: list) -> int:  # fields: (slot, offset or None), offsets made before StartObject
        b.StartObject(max(slot for slot, _ in fields) + 1)
        for slot, off in fields:
            if off is not None:
                b.PrependUOffsetTRelativeSlot(slot, off, 0)
        return b.EndObject()

    def vector(offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    def tensors(indices, is_input: bool) -> int:
        made = []
        for i in indices:
            name, text = describe(int(i), is_input)
            n, d = b.CreateString(name), b.CreateString(text)
            made.append(table([(0, n), (1, d)]))
        return vector(made)

    ins, outs = tensors(sg.inputs, True), tensors(sg.outputs, False)
    sg_name = b.CreateString(SERVE)
    sub = table([(0, sg_name), (2, ins), (3, outs)])
    subs = vector([sub])
    source = doc.get("source_model") or {}
    name = b.CreateString(f"gru-edge {recipe} model")
    text = b.CreateString(f"A GRU converted by gru-edge with the {recipe} recipe from "
                          f"{Path(str(source.get('path', '?'))).name}; verify it with 'gru-edge verify'.")
    version = b.CreateString(_text(doc.get("tool")))
    author = b.CreateString("gru-edge")
    parser = b.CreateString("1.0.0")
    b.Finish(table([(0, name), (1, text), (2, version), (3, subs), (4, author), (7, parser)]),
             file_identifier=b"M001")
    return bytes(b.Output())
