import json

import pytest
from click.testing import CliRunner

from gru_edge.budget import parse_budget, search
from gru_edge.cli import cli


def test_parse_budget():
    assert parse_budget("1%") == pytest.approx(0.01) and parse_budget("0.02") == 0.02
    with pytest.raises(ValueError):
        parse_budget("-1%")


def test_met_by_the_smallest_recipe(r1_run, tmp_path):
    result = search(r1_run / "model.keras", 1.0, tmp_path, ["float32", "dynamic-int8"], fallbacks=())
    assert [t.recipe for t in result.tries] == ["dynamic-int8"] and result.tries[0].accepted
    assert result.chosen.recipe == "dynamic-int8" and result.chosen.path.is_file() and result.chosen.sidecar.is_file()
    # the kept model's bundle, made for the very file that was kept
    from gru_edge import parity
    from gru_edge.bundle import read_bundle
    from gru_edge.io import sha256_file

    assert result.bundle == tmp_path / "bundle.dynamic-int8"
    assert read_bundle(result.bundle).manifest.model.sha256 == sha256_file(result.chosen.path)
    assert parity.check_bundle(result.bundle, result.chosen.path).passed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.dynamic-int8", "model.dynamic-int8.json",
                                                          "model.dynamic-int8.tflite"]
    # converting another recipe into the folder keeps the bundle; making dynamic-int8 again drops its old bundle
    from gru_edge.conversion import convert

    convert(r1_run / "model.keras", ["float32"], tmp_path)
    assert (tmp_path / "bundle.dynamic-int8" / "manifest.json").is_file() and (tmp_path / "model.float32.tflite").is_file()
    convert(r1_run / "model.keras", ["dynamic-int8"], tmp_path)
    assert not (tmp_path / "bundle.dynamic-int8").exists() and (tmp_path / "model.float32.tflite").is_file()


def test_met_only_with_selective_fallback(r1_run, tmp_path):
    """Plain int8 misses a budget that int8 with its error-prone ops kept in float meets."""
    everything = search(r1_run / "model.keras", -1.0, tmp_path / "probe", ["int8"], fallbacks=(1.0,))
    plain, fallback = everything.tries  # ordered by size: plain int8 is smaller
    assert plain.recipe == "int8" and fallback.recipe == "int8-float100" and fallback.size_bytes > plain.size_bytes
    assert abs(fallback.task_delta) < abs(plain.task_delta)
    assert everything.chosen is None and everything.closest == fallback  # for Python callers and --json too
    assert f"The closest was {fallback.recipe}" in everything.failure
    assert everything.to_dict()["closest"] == fallback.recipe
    budget = (abs(plain.task_delta) + abs(fallback.task_delta)) / 2
    result = search(r1_run / "model.keras", budget, tmp_path / "out", ["int8"], fallbacks=(1.0,))
    assert [t.accepted for t in result.tries] == [False, True]
    assert result.chosen.recipe == "int8-float100"
    assert json.loads(result.chosen.sidecar.read_text())["recipe"]["float_fallback"] == 1.0


def test_not_met_at_all_is_an_error_listing_every_try(r1_run, tmp_path):
    result = CliRunner().invoke(cli, ["convert", str(r1_run / "model.keras"), "--to", "int8", "--budget", "0%",
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "No candidate stays within the 0.00% budget (4 tried). The closest was" in result.stderr
    assert result.stdout.count("int8") >= 4  # plain int8 and its three fallback variants, each reported
    assert not (tmp_path / "out").exists()


def test_bad_budget_flag():
    result = CliRunner().invoke(cli, ["convert", "m.keras", "--budget", "lots", "-o", "x"])
    assert result.exit_code == 2 and "'lots' is not a budget" in result.stderr
