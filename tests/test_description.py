"""A model describes itself: gru-edge's description inside the .tflite, TFLite Support metadata, and the sidecar as
a checked copy. The model file alone is enough for inspect, verify and verify --bundle (android: test_android.py)."""

import json
import shutil

import pytest
from ai_edge_litert import schema_py_generated as schema
from click.testing import CliRunner
from tflite_edit import rewrite, without_metadata

from gru_edge import description, tflite_model
from gru_edge.cli import cli
from gru_edge.errors import ConversionError
from gru_edge.verification import verify


def test_every_recipe_carries_its_description(r1_converted):
    for m in r1_converted.models:
        info = tflite_model.read(m.path)
        sidecar = json.loads(m.sidecar.read_text())
        inside = json.loads(info.metadata[description.EMBEDDED])
        assert inside == description.embedded_part(sidecar), m.recipe
        assert inside["format"] == "gru-edge-model/1" and inside["recipe"]["name"] == m.recipe
        assert not set(description.DERIVED) & set(inside)  # nothing that depends on the file's own bytes
        assert "/" not in inside["source_model"]["path"]  # nor on the converting machine
        support = info.metadata[description.SUPPORT]
        assert support[4:8] == b"M001" and b"sequence" in support and m.recipe.encode() in support
        # the description is not weights: weight bytes are those of the buffers the tensors use
        model = schema.ModelT.InitFromPackedBuf(m.path.read_bytes(), 0)
        used = {t.buffer for sg in model.subgraphs for t in sg.tensors}
        weights = sum(len(b.data) for i, b in enumerate(model.buffers) if i in used and b.data is not None)
        assert info.weight_bytes == weights == sidecar["weight_bytes"], m.recipe
        assert len(info.metadata[description.EMBEDDED]) + len(support) < 3072, m.recipe


def test_the_model_alone_gives_the_sidecar(r1_converted, tmp_path):
    m = next(m for m in r1_converted.models if m.recipe == "int8")
    lone = tmp_path / "renamed.tflite"
    shutil.copy(m.path, lone)
    alone = description.load(lone)
    sidecar = json.loads(m.sidecar.read_text())
    # everything but the converting machine's own details: the source's path (its file name stays) and the time
    assert sidecar["source_model"]["path"].startswith("/") and "convert_seconds" in sidecar
    expected = {**sidecar, "model_file": "renamed.tflite",
                "source_model": {**sidecar["source_model"], "path": "model.keras"}}
    expected["convert_seconds"] = None
    assert alone.to_dict() == expected
    # a JSON file of someone else's with the sidecar's name is not a sidecar: the model still describes itself
    description.sidecar_file(lone).write_text('{"labels": ["up", "down"]}')
    assert description.load(lone).to_dict() == expected


def test_a_sidecar_that_disagrees_with_the_model_is_an_error(r1_converted, tmp_path):
    m = next(m for m in r1_converted.models if m.recipe == "float16")
    model = tmp_path / "model.float16.tflite"
    shutil.copy(m.path, model)
    doc = json.loads(m.sidecar.read_text())
    doc["task"]["units"] = "dollars"  # edited by hand, model untouched
    description.sidecar_file(model).write_text(json.dumps(doc))
    with pytest.raises(ConversionError, match="disagrees with the description inside model.float16.tflite on task"):
        description.load(model)
    description.sidecar_file(model).write_text(m.sidecar.read_text())  # the copy convert wrote agrees
    assert description.load(model).to_dict() == json.loads(m.sidecar.read_text())


def test_an_unreadable_description_is_named(r1_converted, tmp_path):
    m = next(m for m in r1_converted.models if m.recipe == "float32")

    def garble(model):
        entry = next(e for e in model.metadata if e.name.decode() == description.EMBEDDED)
        model.buffers[entry.buffer].data = list(b'{"format": "gru-edge-model/99"}')

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(rewrite(m.path.read_bytes(), garble))
    result = CliRunner().invoke(cli, ["inspect", str(bad)])
    assert result.exit_code == 1 and "format 'gru-edge-model/99'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_inspect_and_verify_read_the_model_alone(r1_run, r1_converted, tmp_path):
    m = next(m for m in r1_converted.models if m.recipe == "int8")
    lone = tmp_path / "lone.tflite"
    shutil.copy(m.path, lone)
    out = CliRunner().invoke(cli, ["inspect", str(lone)]).stdout
    assert "described by gru-edge" in out and "recipe int8" in out and "units passengers" in out
    result = verify(r1_run / "model.keras", lone, tmp_path / "bundle")
    assert result.recipe == "int8" and result.report.passed
    assert "named by lone.tflite's description" in result.report.tolerances_source
    assert not any("no gru-edge description" in n for n in result.report.notes)
    bundle = CliRunner().invoke(cli, ["verify", "--bundle", str(tmp_path / "bundle"), "--json"])
    assert bundle.exit_code == 0 and json.loads(bundle.stdout)["result"]["passed"]


def test_a_model_gru_edge_did_not_describe_says_so(r1_run, r1_converted, tmp_path):
    m = next(m for m in r1_converted.models if m.recipe == "float32")
    foreign = tmp_path / "foreign.tflite"
    foreign.write_bytes(without_metadata(m.path.read_bytes()))
    assert description.load(foreign) is None
    assert "described: no" in CliRunner().invoke(cli, ["inspect", str(foreign)]).stdout
    report = verify(r1_run / "model.keras", foreign).report
    assert report.passed and any("foreign.tflite has no gru-edge description" in n for n in report.notes)
