import json

from click.testing import CliRunner

from gru_edge import recipes, text
from gru_edge.cli import cli


def test_quickstart_runs_the_whole_pipeline_with_defaults(tmp_path):
    """The default airline model beats seasonal-naive, and every shipped recipe converts and verifies."""
    out = tmp_path / "qs"
    result = CliRunner().invoke(cli, ["quickstart", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # one document: the same as summary.json, which the text is drawn from
    assert doc["ok"] and doc["error"] is None
    summary = json.loads((out / "summary.json").read_text())
    assert {k: v for k, v in doc["result"].items() if k != "seconds"} == {
        k: v for k, v in summary.items() if k not in ("format", "seconds")}
    m = summary["train"]["metrics"]
    assert m["heldout_rmse"] < m["seasonal_naive_rmse"]
    assert {r["recipe"] for r in summary["recipes"]} == set(recipes.shipped_names())
    assert all(r["passed"] and r["task_metric_delta"] is not None for r in summary["recipes"])
    shown = text.quickstart_summary(doc["result"])  # what the command prints without --json
    for r in summary["recipes"]:
        assert f"{r['recipe']} " in shown
    assert "seasonal-naive" in shown and "bundles:" in shown and "report:" in shown
    assert (out / "bundles" / "int8" / "manifest.json").is_file()
    # the report: one self-contained HTML page with the pictures embedded
    pictures = report_pictures(out / "report.html")
    assert len(pictures) >= 4
    for png in pictures:
        width, height = png_size(png)
        assert 600 <= width <= 1400 and 250 <= height <= 700 and len(png) > 10_000, (width, height, len(png))
    again = CliRunner().invoke(cli, ["report", str(out), "--json"])  # redrawn on its own, no TensorFlow needed
    doc = json.loads(again.stdout)["result"]
    assert again.exit_code == 0 and len(doc["figures"]) == len(pictures)
    assert {r["recipe"] for r in doc["recipes"]} == set(recipes.shipped_names())
    assert all(r["median_us"] > 0 and r["max_abs_error"] < 50 for r in doc["recipes"])


def report_pictures(path) -> list[bytes]:
    import base64
    import re

    page = path.read_text()
    assert page.startswith("<!doctype html>") and 'src="http' not in page  # nothing fetched from elsewhere
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    import struct

    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def test_report_refuses_a_folder_that_is_not_a_quickstart(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "is neither a quickstart folder (summary.json) nor a folder of converted " \
        "models" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "report.html").exists()


def test_report_on_a_folder_of_converted_models(r1_run, r1_converted, tmp_path):
    """A report without quickstart: convert's folder, each model verified against the run its descriptions name;
    the streaming model gets its error per time step; the page belongs to the folder without making it foreign."""
    import os
    import shutil

    import pytest

    from gru_edge import outputs
    from gru_edge.errors import GruEdgeError

    models = tmp_path / "models"
    shutil.copytree(r1_converted.models[0].path.parent, models)
    result = CliRunner().invoke(cli, ["report", str(models), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)["result"]
    assert "Streaming: error per time step" in doc["figures"] and len(doc["figures"]) == 5
    assert {r["recipe"] for r in doc["recipes"]} == set(recipes.shipped_names())
    pictures = report_pictures(models / "report.html")
    assert len(pictures) == 5 and all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in pictures)
    assert outputs.check_target(models, outputs.MODELS)  # convert may still write here
    (models / "report.html").write_text("my notes")
    with pytest.raises(GruEdgeError, match="report.html"):
        outputs.check_target(models, outputs.MODELS)
    (models / "report.html").unlink()
    os.mkfifo(models / "report.html")  # not a page: refused, without waiting on it
    with pytest.raises(GruEdgeError, match="report.html"):
        outputs.check_target(models, outputs.MODELS)
    (models / "report.html").unlink()
    bundle_like = tmp_path / "bundle"  # a folder that holds a model.*.tflite but is not convert's: not drawn into
    bundle_like.mkdir()
    shutil.copy(r1_converted.models[0].path, bundle_like)
    (bundle_like / "manifest.json").write_text("{}")
    refused = CliRunner().invoke(cli, ["report", str(bundle_like), "--run", str(r1_run)])
    assert refused.exit_code == 1 and "is neither a quickstart folder" in refused.stderr
    assert sorted(p.name for p in bundle_like.iterdir()) == ["manifest.json", r1_converted.models[0].path.name]
    mine = tmp_path / "notes.html"
    mine.write_text("<p>mine</p>")
    refused = CliRunner().invoke(cli, ["report", str(models), "--run", str(r1_run), "-o", str(mine)])
    assert refused.exit_code == 1 and "is not a gru-edge report" in refused.stderr
    assert mine.read_text() == "<p>mine</p>"
