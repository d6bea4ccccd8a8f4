import json

import numpy as np
import pytest
from click.testing import CliRunner

from gru_edge import recipes
from gru_edge.cli import cli
from gru_edge.explain import explain
from gru_edge.errors import ConversionError


def test_ranking_names_layers_gates_and_steps(r1_run, r1_converted):
    """The airline chain (GRU 'gru_0', 12 steps, Dense head): every GRU op named by gate and time step, the ranking
    worst first, the per-layer summary consistent with the ops."""
    model = next(m for m in r1_converted.models if m.recipe == "int8")
    found = explain(r1_run / "model.keras", model.path)
    assert found.recipe == "int8" and len(found.ops) > 20
    scores = [o.rmse_over_scale for o in found.ops]
    assert scores == sorted(scores, reverse=True) and scores[0] > 2 * scores[-1]
    assert len({round(s, 6) for s in scores}) > 10  # ops differ, not one shared number
    assert {o.op for o in found.ops} >= {"FULLY_CONNECTED", "LOGISTIC", "TANH"}
    gru = [o for o in found.ops if o.layer == "gru_0"]
    assert {o.gate for o in gru} >= {"update+reset", "reset", "candidate", "update"}
    assert {o.t for o in gru if o.gate == "update"} == set(range(12))  # one update per step, every step named
    assert all(o.gate is not None for o in gru)
    head = [o for o in found.ops if o.gate == "head"]
    assert head and {o.layer for o in head} == {"forecast"} and all(o.t is None for o in head)
    assert [o for o in found.ops if o.layer is None] == []  # no op left unnamed
    layers = {x.layer: x for x in found.layers}
    assert set(layers) == {"gru_0", "forecast"}
    assert layers["gru_0"].ops == len(gru) and layers["gru_0"].worst == gru[0]
    assert found.layers[0].worst == found.ops[0]
    again = explain(r1_run / "model.keras", model.path)
    assert [o.tensor for o in again.ops[:10]] == [o.tensor for o in found.ops[:10]]


def test_graph_model_ops_named_by_layer_and_direction():
    """A Conv1D front, a Bidirectional GRU and a Dense head: the converter's ops of the Keras layers are named by
    their layer, the two directions of the GRU by gate and step (the backward one reads the window from its end)."""
    from gru_edge import convert_worker, graph
    from gru_edge.explain import summarize
    from gru_edge.io import quiet_tensorflow

    with quiet_tensorflow():
        import keras
        import tensorflow as tf
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 2))
    x = keras.layers.Conv1D(5, 3, padding="same", activation="relu", name="front")(inputs)
    x = keras.layers.Bidirectional(keras.layers.GRU(4), name="bi")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(x))
    lowered = graph.lower(model)
    windows = np.random.default_rng(0).uniform(-1, 1, (40, 6, 2)).astype(np.float32)
    rows = convert_worker.explain_rows(tf, model, lowered, recipes.load("int8"), windows, (-1.0, 1.0))
    found = summarize("int8", rows, convert_worker.scope_layers(model, lowered))
    by_layer = {x.layer for x in found.layers}
    assert {"front", "bi.forward", "bi.backward", "out"} <= by_layer, by_layer
    for direction in ("bi.forward", "bi.backward"):
        mine = [o for o in found.ops if o.layer == direction]
        assert {o.gate for o in mine} >= {"update+reset", "candidate", "update"}
        assert {o.t for o in mine if o.gate == "update"} == set(range(6))


def test_explain_refuses_non_int8(r1_run, r1_converted):
    model = next(m for m in r1_converted.models if m.recipe == "int16x8")
    with pytest.raises(ConversionError, match="recipe 'int16x8' is int16x8"):
        explain(r1_run / "model.keras", model.path)


def test_explain_refuses_an_undescribed_model(r1_run, r1_converted, tmp_path):
    from tflite_edit import without_metadata

    model = next(m for m in r1_converted.models if m.recipe == "int8")
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(without_metadata(model.path.read_bytes()))
    with pytest.raises(ConversionError, match="bare.tflite has no description naming its recipe"):
        explain(r1_run / "model.keras", bare)


def test_verify_explain_cli(r1_run, r1_converted):
    model = next(m for m in r1_converted.models if m.recipe == "int8")
    result = CliRunner().invoke(cli, ["verify", str(r1_run / "model.keras"), str(model.path), "--explain"])
    assert result.exit_code in (0, 1), result.output
    assert "int8 quantization error by layer" in result.stdout
    summary = result.stdout.split("by layer", 1)[1].splitlines()
    assert summary[1].lstrip().startswith(("gru_0", "forecast")) and "by gate:" in result.stdout
    assert "gru_0 update t=" in result.stdout or "gru_0 candidate t=" in result.stdout
    doc = json.loads(CliRunner().invoke(cli, ["verify", str(r1_run / "model.keras"), str(model.path), "--explain",
                                              "--json"]).stdout)["result"]
    ops = doc["explain"]["ops"]
    assert ops[0]["rmse_over_scale"] >= ops[-1]["rmse_over_scale"] and ops[0]["layer"]
    assert {x["layer"] for x in doc["explain"]["layers"]} == {"gru_0", "forecast"}


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


def test_layer_names_that_are_no_scope_names_still_convert():
    """TensorFlow's name scopes start with a letter, digit or '.': a layer named '_gru' (or in another script) is
    named in a scope that does, and the model converts as before."""
    from gru_edge import conversion, convert_worker, graph, names
    from gru_edge.io import quiet_tensorflow
    from gru_edge.runtime import Runner

    with quiet_tensorflow():
        import keras
        import tensorflow as tf
    assert names.scope_layer("_gru")[0].isalnum() and names.scope_layer("ГРУ")[0].isalnum()
    keras.utils.set_random_seed(1)
    inputs = keras.Input((5, 2))
    model = keras.Model(inputs, keras.layers.Dense(1, name="-out")(keras.layers.Conv1D(3, 2, name="_front")(
        keras.layers.GRU(4, return_sequences=True, name="_gru")(inputs))[:, -1]))
    lowered = graph.lower(model)
    payload, _ = convert_worker.convert_one(tf, model, lowered, recipes.load("float32"), None, None)
    x = np.random.default_rng(0).normal(size=(3, 5, 2)).astype(np.float32)
    got = next(iter(Runner(conversion.finish_bytes(recipes.load("float32"), payload)).run(x).values()))
    assert np.allclose(got, np.asarray(model(x)).reshape(3, -1), atol=1e-5)
