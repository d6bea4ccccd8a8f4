import json

import pytest
from click.testing import CliRunner

from gru_edge import recipes
from gru_edge.cli import cli
from gru_edge.conversion import explain
from gru_edge.errors import ConversionError


def test_ranking_is_non_trivial_and_stable(r1_run):
    first = explain(r1_run / "model.keras", recipes.load("int8"))
    again = explain(r1_run / "model.keras", recipes.load("int8"))
    assert len(first) > 20
    scores = [r["rmse_over_scale"] for r in first]
    assert scores == sorted(scores, reverse=True) and scores[0] > 2 * scores[-1]
    assert len({round(s, 6) for s in scores}) > 10  # ops differ, not one shared number
    assert {r["op"] for r in first} >= {"FULLY_CONNECTED", "LOGISTIC", "TANH"}
    assert [r["tensor"] for r in first[:10]] == [r["tensor"] for r in again[:10]]


def test_explain_refuses_non_int8(r1_run):
    with pytest.raises(ConversionError, match="recipe 'int16x8' is int16x8"):
        explain(r1_run / "model.keras", recipes.load("int16x8"))


def test_verify_explain_cli(r1_run, r1_converted):
    model = next(m for m in r1_converted.models if m.recipe == "int8")
    result = CliRunner().invoke(cli, ["verify", str(r1_run / "model.keras"), str(model.path), "--explain"])
    assert result.exit_code in (0, 1), result.output
    assert "ops ranked by quantization error" in result.stdout
    doc = json.loads(CliRunner().invoke(cli, ["verify", str(r1_run / "model.keras"), str(model.path), "--explain",
                                              "--json"]).stdout)["result"]
    assert doc["explain"][0]["rmse_over_scale"] >= doc["explain"][-1]["rmse_over_scale"]


@pytest.mark.parametrize("extra, message", [
    ("float_fallback = 1.5", "float_fallback must be between 0 and 1"),
])
def test_float_fallback_validation(tmp_path, extra, message):
    p = tmp_path / "r.toml"
    p.write_text(f'description = "x"\n[convert]\nquantization = "int8"\n{extra}\n[verify]\natol = 1.0\nrtol = 1.0\n'
                 "min_psnr_db = 1.0\nmax_task_metric_delta = 1.0\n")
    with pytest.raises(Exception, match=message):
        recipes.load(str(p))


def test_float_fallback_only_for_int8(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('description = "x"\n[convert]\nquantization = "int16x8"\nfloat_fallback = 0.2\n[verify]\natol = 1.0\n'
                 "rtol = 1.0\nmin_psnr_db = 1.0\nmax_task_metric_delta = 1.0\n")
    with pytest.raises(Exception, match=r"float_fallback applies to quantization = \"int8\" only"):
        recipes.load(str(p))
