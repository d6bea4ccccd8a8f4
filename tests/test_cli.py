import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from tflite_edit import without_metadata

from gru_edge.cli import cli


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def fails(code, *args):
    result = run(*args)
    assert result.exit_code == code, result.output
    return result.stderr


def test_help_and_version():
    assert run("--version").output.strip() == "gru-edge, version 0.1.0"
    out = run("-h").output
    for name in ("train", "convert", "verify", "recipes", "quickstart"):
        assert name in out
    assert "Example" in run("convert", "--help").output and "Examples:" in run("inspect", "--help").output


def test_help_does_not_import_tensorflow():
    code = "import sys; from gru_edge.cli import main; sys.argv=['gru-edge','--help']\n" \
           "try: main()\nexcept SystemExit: pass\nprint('TF' if 'tensorflow' in sys.modules else 'no TF')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("no TF")


def test_bad_flags_exit_2():
    assert "Invalid value for '--window'" in fails(2, "train", "--window", "0", "-o", "x")
    assert "No such option '--colour'" in fails(2, "train", "--colour", "red")
    assert "Missing option '-o'" in fails(2, "train")
    assert "Give MODEL.keras and MODEL.tflite" in fails(2, "verify", "only-one.keras")


def test_recipes_lists_shipped_and_json():
    assert "android-gpu" in run("recipes").output
    doc = json.loads(run("recipes", "--json").stdout)["result"]
    assert {r["name"] for r in doc["recipes"]} >= {"float32", "int8", "android-gpu"}


@pytest.mark.parametrize("body, message", [
    ("t,v\n" + "".join(f"{i},{i}\n" for i in range(40)) + "41,abc\n", "Line 42, column 'v': 'abc' is not a number"),
    ("t,v\n" + "".join(f"{i},{i}\n" for i in range(40)) + "41,NaN\n", "'NaN' is not a finite number"),
    ("t,v\n1,2\n2,3\n3,4\n", "Too few rows: 3 values give 0 training and 0 held-out windows"),
])
def test_train_bad_csv(tmp_path, body, message):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    err = fails(1, "train", "--data", p, "--column", "v", "--epochs", "1", "-o", tmp_path / "run")
    assert err.startswith("Error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_train_missing_data_and_json_error(tmp_path):
    assert "Data file not found: nope.csv" in fails(1, "train", "--data", "nope.csv", "-o", tmp_path / "r")
    result = run("train", "--data", "nope.csv", "-o", tmp_path / "r", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["error"].startswith("Data file not found")


def test_train_json(tmp_path):
    result = run("train", "--units", "4", "--epochs", "1", "-o", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)["result"]
    assert doc["split"]["heldout_rows"] == 24 and "seasonal_naive_rmse" in doc["metrics"]
    assert (tmp_path / "run" / "model.keras").is_file() and (tmp_path / "run" / "training.json").is_file()


def test_convert_and_verify_through_the_cli(r1_run, tmp_path):
    result = run("convert", r1_run / "model.keras", "--to", "float32,dynamic-int8", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    # progress on stderr: each recipe as the child process starts it, then each model made
    assert "  float32: converting (1/2)\n  dynamic-int8: converting (2/2)\n" in result.stderr
    assert result.stderr.index("converting (2/2)") < result.stderr.index("  float32: /")
    doc = json.loads(run("convert", r1_run / "model.keras", "--to", "float32,dynamic-int8", "-o", tmp_path / "out",
                         "--json").stdout)["result"]
    assert [m["recipe"] for m in doc["models"]] == ["float32", "dynamic-int8"]
    tfl = tmp_path / "out" / "model.float32.tflite"
    ok = run("verify", r1_run / "model.keras", tfl, "-o", tmp_path / "bundle")
    assert ok.exit_code == 0 and ok.stdout.rstrip().endswith("PASS")
    assert "comparing model.float32.tflite (litert) with model.keras on 28 samples" in ok.stderr
    assert "max abs error" in ok.stdout and "task rmse" in ok.stdout
    assert run("verify", "--bundle", tmp_path / "bundle").exit_code == 0
    doc = json.loads(run("verify", "--bundle", tmp_path / "bundle", "--json").stdout)["result"]
    assert doc["passed"] and doc["samples"] == 28
    # The dynamic-int8 model held to float32's tolerances fails, and says why.
    bad = run("verify", r1_run / "model.keras", tmp_path / "out" / "model.dynamic-int8.tflite", "--recipe", "float32")
    assert bad.exit_code == 1 and "FAIL" in bad.stdout and "values outside atol 1e-05" in bad.stdout


def test_convert_errors(r1_run, tmp_path):
    assert "Unknown recipe 'int4'. Shipped: android-gpu" in fails(1, "convert", r1_run / "model.keras", "--to", "int4",
                                                                   "-o", tmp_path)
    own = tmp_path / "own.toml"
    own.write_text('description = "x"\n[convert]\nquantization = "float32"\nspeed = 11\n')
    assert "unknown key 'speed' in [convert]" in fails(1, "convert", r1_run / "model.keras", "--to", own, "-o",
                                                       tmp_path)
    assert "Model file not found: missing.keras" in fails(1, "convert", "missing.keras", "--to", "float32", "-o",
                                                          tmp_path)
    assert "Give --to RECIPE[,RECIPE...] or --budget." in fails(2, "convert", r1_run / "model.keras", "-o", tmp_path)


def test_convert_refuses_a_non_gru_model(tmp_path):
    from gru_edge.io import quiet_tensorflow

    with quiet_tensorflow():
        import keras
    inputs = keras.Input((8, 2))
    keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten(name="flatten")(inputs))).save(tmp_path / "flat.keras")
    err = fails(1, "convert", tmp_path / "flat.keras", "--to", "float32", "-o", tmp_path / "out")
    assert "flat.keras is not a GRU model: it has no GRU layer" in err
    assert not (tmp_path / "out").exists()


def test_verify_errors(r1_run, r2_converted, tmp_path):
    other = r2_converted.models[0].path
    assert "was converted from another model than" in fails(1, "verify", r1_run / "model.keras", other)
    lone = tmp_path / "lone.tflite"  # no sidecar, no description: the shapes tell
    lone.write_bytes(without_metadata(other.read_bytes()))
    assert "they are not the same model" in fails(1, "verify", r1_run / "model.keras", lone)
    assert "TFLite file not found" in fails(1, "verify", r1_run / "model.keras", tmp_path / "x.tflite")
    assert "No manifest.json in" in fails(1, "verify", "--bundle", tmp_path)
    assert "--bundle takes no MODEL arguments" in fails(2, "verify", "--bundle", tmp_path, "a.keras")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"0123456789")
    assert "junk.tflite is not a TFLite model" in fails(1, "verify", r1_run / "model.keras", junk)


def test_inspect(r2_converted):
    model = next(m for m in r2_converted.models if m.recipe == "android-gpu")
    out = run("inspect", model.path).stdout
    assert "serving_default: sequence [1, 24, 4] float32 -> forecast [1, 3] float32" in out
    assert "FULLY_CONNECTED" in out and "weights" in out and "GPU findings: none" in out
    doc = json.loads(run("inspect", model.path, "--json").stdout)["result"]
    assert doc["gpu_findings"] == [] and doc["ops"]["FULLY_CONNECTED"] > 24 and doc["weight_bytes"] > 0
    assert "not a TFLite model" in fails(1, "inspect", __file__)


def test_verify_on_gpu_without_a_gpu_exits_3(r2_run, r2_converted):
    model = next(m for m in r2_converted.models if m.recipe == "android-gpu")
    result = run("verify", r2_run / "model.keras", model.path, "--accelerator", "gpu")
    if result.exit_code == 3:
        assert "GPU check not run: no usable GPU" in result.stderr
    else:  # where a GPU exists, the android-gpu model passes fully accelerated
        assert result.exit_code == 0 and "fully accelerated: yes" in result.stdout


def test_help_examples_copy_and_summaries_are_whole():
    """At 80 columns every example stays on one line (it can be copied) and the command list is not cut with '...'."""
    import inspect as pyinspect

    overview = CliRunner().invoke(cli, ["--help"], terminal_width=80).output
    assert "..." not in overview.split("Commands:")[1]
    for name, command in cli.commands.items():
        doc = pyinspect.getdoc(command.callback)
        first = doc.split("\n\n")[0].replace("\n", " ")
        assert " ".join(first.split()) in " ".join(overview.split()), name  # the whole first sentence
        examples = [line.strip() for line in doc.split("Example")[1].splitlines()[1:] if line.strip()]
        assert examples and all(e.startswith("gru-edge ") for e in examples), name
        shown = CliRunner().invoke(cli, [name, "--help"], terminal_width=80).output.splitlines()
        for example in examples:
            assert any(line.strip() == example for line in shown), (name, example)


def test_quiet_leaves_stderr_empty_on_success(r1_run, r1_converted, tmp_path):
    """-q: nothing on stderr when a command succeeds, native log lines (TensorFlow, LiteRT, XNNPACK) included; each
    command is a real process, so what native code writes to file descriptor 2 is seen. (bench: test_bench.py)"""
    int8 = next(m for m in r1_converted.models if m.recipe == "int8").path
    commands = [
        ["train", "--epochs", "2", "-o", tmp_path / "run"],
        ["convert", r1_run / "model.keras", "--to", "float32", "-o", tmp_path / "models"],
        ["verify", r1_run / "model.keras", int8, "-o", tmp_path / "bundle", "--explain", "--json"],  # TF's debugger
        ["report", tmp_path / "models", "--json"],
        ["verify", "--bundle", tmp_path / "bundle", "--runtime", "litert-compiled"],
        ["inspect", int8],
        ["recipes"],
        ["android", "--init", tmp_path / "demo"],
    ]
    for args in commands:
        proc = subprocess.run([sys.executable, "-m", "gru_edge", *map(str, args), "-q"], capture_output=True,
                              text=True, cwd=tmp_path, timeout=600)
        assert proc.returncode == 0 and proc.stdout, (args, proc.stderr[-1000:])
        assert proc.stderr == "", (args[0], proc.stderr[-1000:])
        if "--json" in args:  # stdout is one document, whatever native code ran in the process
            assert json.loads(proc.stdout)["ok"], args
    # without -q, training reports every epoch on stderr (the trials, then the final fit), stdout keeps the result
    loud = subprocess.run([sys.executable, "-m", "gru_edge", "train", "--epochs", "2", "-o", tmp_path / "run2"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert loud.returncode == 0 and "epoch 1/2" not in loud.stdout
    assert "  epoch 1/2: loss " in loud.stderr and "  epoch 2/2: loss " in loud.stderr and "validation loss" in \
        loud.stderr
