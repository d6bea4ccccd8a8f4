"""The Python API and your own data: a model built and trained in memory goes to int8 with the caller's calibration
windows and passes verify on the caller's samples, through the API and through the CLI; the README's example runs."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import gru_edge
from gru_edge.cli import cli
from gru_edge.errors import ConversionError, DataError, ParityError
from gru_edge.io import quiet_tensorflow

with quiet_tensorflow():
    import keras

README = Path(__file__).resolve().parents[1] / "README.md"


def _cli(*args, code: int):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    """A Conv1D -> GRU regressor on two features, trained in memory as in a notebook (not by 'gru-edge train')."""
    rng = np.random.default_rng(0)
    t = np.arange(330, dtype=np.float32)
    a, b = np.sin(t / 5), np.cos(t / 9) + 0.1 * rng.standard_normal(330).astype(np.float32)
    x = np.stack([np.stack([a[i:i + 10], b[i:i + 10]], axis=-1) for i in range(318)]).astype(np.float32)
    y = (a[10:328] + 0.5 * b[10:328])[:, None].astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10, 2)), keras.layers.Conv1D(4, 3, padding="same", activation="relu"),
                              keras.layers.GRU(6), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x[:260], y[:260], epochs=4, verbose=0)
    folder = tmp_path_factory.mktemp("notebook")
    model.save(folder / "my.keras")
    np.save(folder / "train_x.npy", x[:260])
    np.savetxt(folder / "test_x.csv", x[260:].reshape(len(x) - 260, -1), delimiter=",",
               header=",".join(f"t{i}f{j}" for i in range(10) for j in range(2)), comments="")
    np.save(folder / "test_y.npy", y[260:])
    return model, x, y, folder


def test_in_memory_model_to_int8_with_its_calibration_passes_on_its_samples(notebook, tmp_path):
    model, x, y, _ = notebook
    result = gru_edge.convert(model, "float32,int8", tmp_path / "out", calibration=x[:260])
    assert result.ok and [m.recipe for m in result.models] == ["float32", "int8"]
    sidecar = json.loads(result.model("int8").sidecar.read_text())
    assert sidecar["source_model"]["path"].startswith("(in memory)") and sidecar["form"] == "graph"
    assert sidecar["calibration_source"].startswith("calibration windows: an array of 260")
    for m in result.models:
        check = gru_edge.verify(model, m.path, samples=x[260:], targets=y[260:], bundle=tmp_path / m.recipe)
        assert check.report.passed, check.report.failures
        assert check.samples.kinds["samples"] == 58 and check.report.task.metric == "rmse"
        assert gru_edge.check_bundle(tmp_path / m.recipe).passed
    # The same weights under another name are the same model; other weights are not.
    other = keras.models.clone_model(model)
    other.set_weights([w + 0.1 for w in model.get_weights()])
    with pytest.raises(ParityError, match="was converted from another model than the model in memory"):
        gru_edge.verify(other, result.model("int8").path, samples=x[260:])
    # Saved to a file after converting, it is still the model the sidecar names (by its weights' fingerprint).
    model.save(tmp_path / "saved.keras")
    assert gru_edge.verify(tmp_path / "saved.keras", result.model("int8").path, samples=x[260:]).report.passed
    with pytest.raises(ConversionError, match="No 'int16x8' model: it was not asked for"):
        result.model("int16x8")
    found = gru_edge.inspect(result.model("int8").path)
    assert found.model.op_counts["FULLY_CONNECTED"] >= 1 and "gpu_findings" in found.to_dict()


def test_cli_with_a_saved_notebook_model(notebook, tmp_path):
    _, _, _, folder = notebook
    out = tmp_path / "out"
    np.savetxt(tmp_path / "train_x.csv", np.load(folder / "train_x.npy").reshape(260, -1), delimiter=",")
    _cli("convert", folder / "my.keras", "--to", "float32,int8", "--calibration", tmp_path / "train_x.csv", "-o", out,
         code=0)  # one window per CSV row, T x F values
    verdict = _cli("verify", folder / "my.keras", out / "model.int8.tflite", "--samples", folder / "test_x.csv",
                   "--targets", folder / "test_y.npy", code=0).stdout
    assert "PASS" in verdict and "test_x.csv" in verdict
    # Without calibration data int8 cannot be made; float32 still is, and the exit status says one failed.
    res = _cli("convert", folder / "my.keras", "--to", "float32,int8", "-o", tmp_path / "plain", code=1)
    assert "Recipe 'int8' (int8) needs calibration data: give --calibration FILE" in res.stderr
    assert (tmp_path / "plain" / "model.float32.tflite").is_file()
    assert not (tmp_path / "plain" / "model.int8.tflite").exists()


def test_bad_data_is_one_line_naming_the_problem(notebook, tmp_path):
    model, x, _, folder = notebook
    np.save(tmp_path / "short.npy", x[:20, :7])
    err = _cli("convert", folder / "my.keras", "--to", "int8", "--calibration", tmp_path / "short.npy", "-o",
               tmp_path / "o1", code=1).stderr
    assert ("short.npy: the calibration windows are shaped [20, 7, 2]; the model takes [N, 10, 2] (or one row of 20 "
            "values per window)") in err
    assert not (tmp_path / "o1").exists()
    np.save(tmp_path / "words.npy", np.array([["a", "b"]]))
    err = _cli("convert", folder / "my.keras", "--to", "int8", "--calibration", tmp_path / "words.npy", "-o",
               tmp_path / "o2", code=1).stderr
    assert "words.npy: the calibration windows have dtype <U1; give numbers" in err
    bad = x[:5].copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="hold NaN or infinite values"):
        gru_edge.convert(model, ["int8"], tmp_path / "o3", calibration=bad)
    (tmp_path / "ragged.csv").write_text("1,2,3\n4,5\n")
    with pytest.raises(DataError, match=r"rows have different numbers of values \(\[2, 3\]\)"):
        gru_edge.verify(model, tmp_path / "none.tflite", samples=tmp_path / "ragged.csv")  # data checked first
    _cli("verify", folder / "my.keras", folder / "my.keras", "--targets", folder / "test_y.npy", code=2)
    with pytest.raises(DataError, match="Unknown training option"):
        gru_edge.train(tmp_path / "run", epoch=3)


def test_readme_api_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"<!-- api-example -->\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    assert sorted(p.name for p in (tmp_path / "api-out").glob("*.tflite")) == ["model.float32.tflite",
                                                                               "model.int8.tflite"]


def test_token_model_through_the_cli_with_class_index_targets(tmp_path):
    """An Embedding -> Bidirectional GRU classifier on token ids [B, T]: int16x8 is refused by name and int8, asked
    after it, is still written; verify on token windows from a CSV with class-index targets reports accuracy; the
    bundle re-checks."""
    keras.utils.set_random_seed(3)
    tokens = keras.Input((8,))
    model = keras.Model(tokens, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Bidirectional(keras.layers.GRU(4))(keras.layers.Embedding(20, 4)(tokens))))
    model.save(tmp_path / "text.keras")
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "tokens.csv", rng.integers(0, 20, (40, 8)), delimiter=",", fmt="%d")
    np.save(tmp_path / "labels.npy", rng.integers(0, 3, 40))
    res = _cli("convert", tmp_path / "text.keras", "--to", "float32,int16x8,int8", "--calibration",
               tmp_path / "tokens.csv", "-o", tmp_path / "out", code=1)
    assert re.search(r"Layer 'embedding\w*' \(Embedding\): TensorFlow's int16x8 quantizer cannot calibrate",
                     res.stderr)  # the layer's name: Keras numbers it after the layers made before in the process
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tflite")) == ["model.float32.tflite", "model.int8.tflite"]
    doc = json.loads(_cli("verify", tmp_path / "text.keras", tmp_path / "out" / "model.int8.tflite", "--samples",
                          tmp_path / "tokens.csv", "--targets", tmp_path / "labels.npy", "-o", tmp_path / "b",
                          "--json", code=0).stdout)
    assert doc["result"]["task"]["metric"] == "accuracy" and doc["result"]["sample_kinds"]["samples"] == 40
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["inputs"][0]["shape"] == [44, 8, 1]  # token ids [N, T] stored as the format's [N, T, F]
    assert "PASS" in _cli("verify", "--bundle", tmp_path / "b", code=0).stdout
    np.savetxt(tmp_path / "oov.csv", np.full((3, 8), 25), delimiter=",", fmt="%d")  # beyond the 20-token vocabulary
    err = _cli("verify", tmp_path / "text.keras", tmp_path / "out" / "model.int8.tflite", "--samples",
               tmp_path / "oov.csv", code=1).stderr
    assert "oov.csv: the samples feed an Embedding of 20 tokens, so every value must be a whole number from 0 to 19" \
        in err
