"""The runtime matrix: verify --bundle on the runtimes people ship, inspect --runtime's prediction against what
tflite-runtime 2.14 really does, and the README's table against what this run sees (tflite-runtime 2.14 on x86-64
and ai-edge-litert on ARM64 under qemu-user, for float32 and int8: benchmarks/runtimes.py)."""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from tflite_edit import newer_op

from gru_edge import runtimes, tflite_model
from gru_edge.cli import cli
from gru_edge.verification import verify

REPO = Path(__file__).resolve().parent.parent


def _matrix_module():
    spec = importlib.util.spec_from_file_location("runtime_matrix", REPO / "benchmarks" / "runtimes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["runtime_matrix"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def matrix():
    return _matrix_module()


@pytest.fixture(scope="module")
def r1_bundle(r1_run, r1_converted, tmp_path_factory):
    m = next(m for m in r1_converted.models if m.recipe == "int8")
    return verify(r1_run / "model.keras", m.path, tmp_path_factory.mktemp("rt") / "bundle").bundle


def load_in(python: Path, models: list[Path], runtime: str, env: dict) -> dict[str, str]:
    """model name -> "loads" or the runtime's refusal, each model loaded by gru-edge's Runner in ``python``."""
    code = ("import json, sys\nfrom gru_edge.runtime import Runner\nfrom gru_edge.errors import ParityError\nout={}\n"
            "for p in sys.argv[2:]:\n    try:\n        Runner(__import__('pathlib').Path(p), runtime=sys.argv[1])\n"
            "        out[p] = 'loads'\n    except ParityError as e:\n        out[p] = str(e)\nprint(json.dumps(out))")
    proc = subprocess.run([str(python), "-c", code, runtime, *map(str, models)], capture_output=True, text=True,
                          env={**env, "PATH": "/usr/bin:/bin"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {Path(k).name: v for k, v in json.loads(proc.stdout).items()}


def test_inspect_predicts_what_tflite_runtime_2_14_refuses(matrix, r1_converted, tmp_path):
    """For every shipped recipe, and for a model with an op version newer than 2.14 knows, the prediction from the
    op versions equals the outcome of loading the file in the real tflite-runtime 2.14.0."""
    models = [m.path for m in r1_converted.models]
    assert sorted(m.recipe for m in r1_converted.models) == sorted(
        __import__("gru_edge.recipes", fromlist=["x"]).shipped_names())
    newer = tmp_path / "model.newer.tflite"  # FULLY_CONNECTED v11 appeared after 2.14 (which registers v1-v10)
    newer.write_bytes(newer_op(models[0].read_bytes(), "FULLY_CONNECTED", 11))
    real = load_in(matrix.tflite_venv(), models + [newer], "tflite-runtime", {"PYTHONPATH": str(REPO)})
    for path in models + [newer]:
        prediction = runtimes.predict(tflite_model.read(path), "tflite-runtime==2.14")
        outcome = real[path.name]
        assert prediction.loads == (outcome == "loads"), (path.name, prediction, outcome)
        for refused in prediction.refused:  # each op the prediction names is the one the runtime names
            op, v = re.match(r"(\w+) v(\d+)", refused).groups()
            assert f"builtin opcode '{op}' version '{v}'" in outcome, (refused, outcome)
    assert not runtimes.predict(tflite_model.read(newer), "tflite-runtime").loads
    result = CliRunner().invoke(cli, ["inspect", str(newer), "--runtime", "tflite-runtime==2.14"])
    assert result.exit_code == 1 and "FULLY_CONNECTED v11 (2.14 registers v1-v10)" in result.stdout


def test_inspect_runtime_names_the_runtimes_it_knows(r1_converted):
    model = r1_converted.models[0].path
    result = CliRunner().invoke(cli, ["inspect", str(model), "--runtime", "tflite-runtime==2.15"])
    assert result.exit_code == 2 and "gru-edge knows tflite-runtime==2.14" in result.stderr


def test_verify_bundle_on_each_runtime_of_this_environment(r1_bundle):
    for runtime, ran in [("tensorflow", "tensorflow"), ("litert-compiled", "CompiledModel"),
                         ("litert", "ai-edge-litert")]:
        result = CliRunner().invoke(cli, ["verify", "--bundle", str(r1_bundle), "--runtime", runtime, "--json"])
        doc = json.loads(result.stdout)
        assert result.exit_code == 0 and doc["result"]["passed"], (runtime, result.output)
        assert ran in doc["result"]["accelerator"]["runtime"]
    # tflite-runtime 2.14 needs numpy<2: not importable beside TensorFlow 2.21; the message says what to install
    missing = CliRunner().invoke(cli, ["verify", "--bundle", str(r1_bundle), "--runtime", "tflite-runtime"])
    assert missing.exit_code == 1 and "pip install tflite-runtime==2.14.0" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad = CliRunner().invoke(cli, ["verify", "--bundle", str(r1_bundle), "--runtime", "tflite"])
    assert bad.exit_code == 2


def readme_table() -> dict[str, dict[str, str]]:
    """The README's runtime table: recipe -> column title -> verdict (PASS, FAIL, refused at load, not run)."""
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- runtime-table -->")[1]
    rows = [r for r in block.strip().splitlines() if r.startswith("|")]
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    table = {}
    for row in rows[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        table[cells[0]] = {h: re.sub(r"\s*\[\d+\]$", "", c) for h, c in zip(head[1:], cells[1:])}
    return table


def test_readme_runtime_table_is_what_this_run_sees(matrix, tmp_path):
    """CI's columns: tflite-runtime 2.14 (x86-64) and ARM64 LiteRT (qemu-user), for float32 and int8, each made by
    the same command as the README's table, and the verdicts equal the README's cells."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "runtimes.py"), "--recipes", "float32,int8",
                           "--columns", "tflite-2.14,arm64", "--json"], capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    table = readme_table()
    for recipe, row in doc["rows"].items():
        for key, title in doc["columns"].items():
            assert row[key]["verdict"] == table[recipe][title], (recipe, title, row[key])
        assert row["arm64"]["ran"] == "ai-edge-litert 2.3.0 Interpreter + XNNPACK on aarch64", row["arm64"]
        assert row["tflite-2.14"]["ran"] == "tflite-runtime 2.14.0 Interpreter + XNNPACK on x86_64", row["tflite-2.14"]
