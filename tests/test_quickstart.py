import json

from click.testing import CliRunner

from gru_edge import recipes
from gru_edge.cli import cli


def test_quickstart_runs_the_whole_pipeline_with_defaults(tmp_path):
    """The default airline model beats seasonal-naive, and every shipped recipe converts and verifies."""
    out = tmp_path / "qs"
    result = CliRunner().invoke(cli, ["quickstart", "-o", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    m = summary["train"]["metrics"]
    assert m["heldout_rmse"] < m["seasonal_naive_rmse"]
    assert {r["recipe"] for r in summary["recipes"]} == set(recipes.shipped_names())
    assert all(r["passed"] and r["task_metric_delta"] is not None for r in summary["recipes"])
    for r in summary["recipes"]:
        assert f"{r['recipe']} " in result.stdout
    assert "seasonal-naive" in result.stdout and "bundles:" in result.stdout
    assert (out / "bundles" / "int8" / "manifest.json").is_file()
