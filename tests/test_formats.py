"""The files gru-edge writes are typed (TrainingCard, ModelDescription, Manifest): each reads back to the document
written, and a damaged one is refused in one line naming the file."""

import json
import shutil

import pytest

from gru_edge import bundle, card, description
from gru_edge.errors import ConversionError, ModelError, ParityError


def test_training_card_round_trips_and_refuses_damage(r1_run, tmp_path):
    written = json.loads((r1_run / card.CARD).read_text())
    read = card.load(r1_run / card.MODEL)
    assert read.to_dict() == written and read.format == card.FORMAT
    assert read.kind == "regression" and read.units == "passengers" and len(read.value_range[0]) == read.n_features
    run = tmp_path / "run"
    shutil.copytree(r1_run, run)
    for damage, message in [(lambda d: d.pop("metrics"), "lacks metrics"),
                            (lambda d: d["input_range"]["min"].append(0.0), "is damaged"),
                            (lambda d: d["task"].update(metric="accuracy"), "is damaged"),
                            (lambda d: d.update(window="12"), "is damaged"),
                            (lambda d: d.update(format="gru-edge-training/2"), "older gru-edge")]:
        doc = json.loads(json.dumps(written))
        damage(doc)
        (run / card.CARD).write_text(json.dumps(doc))
        with pytest.raises(ModelError, match=message):
            card.load(run / card.MODEL)


def test_model_description_round_trips_and_refuses_damage(r1_converted, tmp_path):
    m = next(m for m in r1_converted.models if m.recipe == "int8")
    written = json.loads(m.sidecar.read_text())
    read = description.load(m.path)
    assert read.to_dict() == written and read.recipe_name == "int8" and read.units == "passengers"
    with pytest.raises(ConversionError, match="is damaged .notes"):
        description.ModelDescription.from_dict({**written, "notes": "not a list"}, "x.json")
    with pytest.raises(ConversionError, match="lacks the tool, recipe or source model"):
        description.ModelDescription.from_dict({k: v for k, v in written.items() if k != "recipe"}, "x.json")


def test_manifest_round_trips(r1_run, r1_converted, tmp_path):
    from gru_edge.verification import verify

    m = next(m for m in r1_converted.models if m.recipe == "int8")
    folder = verify(r1_run / "model.keras", m.path, tmp_path / "b").bundle
    raw = (folder / bundle.MANIFEST).read_bytes()
    parsed = bundle.parse_manifest(raw)
    assert parsed.to_dict() == json.loads(raw)
    assert parsed.model.recipe == "int8" and parsed.inputs[0].shape[1:] == (24, 1)
    assert parsed.files == ["inputs.npy", "expected.npy", "targets.npy"]
    with pytest.raises(ParityError, match="'model.sha256' must be 64"):
        bundle.parse_manifest(raw.replace(parsed.model.sha256.encode(), b"beef"))
