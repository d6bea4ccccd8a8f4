"""Long sequences: gru-edge's WHILE loop over time (lowering.run_loop, time_form), its recipes and its parity."""

import numpy as np
import pytest

from gru_edge import api, convert_worker, graph, lowering, recipes, runtimes, tflite_model
from gru_edge.errors import ModelError
from gru_edge.io import quiet_tensorflow

with quiet_tensorflow():
    import keras
    import tensorflow as tf

LONG = recipes.LOOP_AFTER + 20  # the CI-sized long window: beyond the automatic switch
LOOP_OPS = ("WHILE", "LESS", "BITCAST", "SLICE", "PACK")  # what the loop adds to gru-edge's cell ops


def _model(t, f, layers, seed=7):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((t, f), name="seq")
    x = inputs
    for layer in layers:
        x = layer(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(seed)  # non-zero biases, so every term of the cell counts
    model.set_weights([w + rng.normal(0.0, 0.2, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.mark.parametrize("t, k", [(23, 4), (8, 4), (5, 4), (40, 1), (12, 12)])
@pytest.mark.parametrize("reset_after", [True, False])
def test_the_loop_computes_what_keras_does(t, k, reset_after):
    """Steps before the loop (T % k), exactly two iterations, no iteration at all, one step per iteration, and a
    stacked chain (the second layer reads the first one's k outputs inside the same iteration)."""
    model = _model(t, 3, [keras.layers.GRU(6, return_sequences=True, reset_after=reset_after),
                          keras.layers.GRU(5, reset_after=reset_after), keras.layers.Dense(2)])
    lowered = lowering.read_model(model)
    fn = lowering.build_functions(lowered, 2, loop=k)[lowering.SERVE]
    x = np.random.default_rng(0).standard_normal((2, t, 3)).astype(np.float32)
    out = fn(x)[lowered.output_name].numpy()
    assert np.abs(out - np.asarray(model(x))).max() <= 1e-5
    ops = {op.type for op in fn.get_concrete_function().graph.get_operations()}
    assert ("While" in ops or "StatelessWhile" in ops) == (t // k >= 2)


def _converted_size(t: int) -> int:
    model = _model(t, 4, [keras.layers.GRU(16), keras.layers.Dense(1)])
    fns = lowering.build_functions(lowering.read_model(model), 1, loop=lowering.PER_ITERATION)
    holder = tf.Module()
    holder.f = fns[lowering.SERVE]
    return len(tf.lite.TFLiteConverter.from_concrete_functions([holder.f.get_concrete_function()], holder).convert())


def test_the_loop_file_does_not_grow_with_the_window():
    small, large = _converted_size(120), _converted_size(1200)
    assert abs(large - small) <= 64, (small, large)  # only the input's shape vector differs


def _lowered(t, layers):
    return graph.lower(_model(t, 2, layers))


def _recipe(unroll, quantization="float32", **extra) -> recipes.Recipe:
    keys = {"quantization": quantization, "unroll": unroll, **extra}
    toml = {"description": "test", "convert": keys,
            "verify": {"atol": 1e-3, "rtol": 1e-3, "min_psnr_db": 40.0, "max_task_metric_delta": 0.01}}
    return recipes.parse(toml, "test")


def test_auto_loops_beyond_the_threshold_only_where_the_model_can():
    chain = _lowered(LONG, [keras.layers.GRU(4), keras.layers.Dense(1)])
    short = _lowered(recipes.LOOP_AFTER, [keras.layers.GRU(4), keras.layers.Dense(1)])
    backwards = _lowered(LONG, [keras.layers.GRU(4, go_backwards=True), keras.layers.Dense(1)])
    both_ways = _lowered(LONG, [keras.layers.Bidirectional(keras.layers.GRU(4)), keras.layers.Dense(1)])
    assert lowering.time_form(chain, _recipe("auto")) == lowering.PER_ITERATION
    assert lowering.time_form(short, _recipe("auto")) == 0
    assert lowering.time_form(short, _recipe(False)) == lowering.PER_ITERATION
    assert lowering.time_form(chain, _recipe(True)) == 0
    for model, why in ((backwards, "a GRU runs backwards"), (both_ways, "a graph, not a chain")):
        assert lowering.time_form(model, _recipe("auto")) == 0
        with pytest.raises(ModelError, match=f"unroll = false.*{why}"):
            lowering.time_form(model, _recipe(False))
        assert why in convert_worker.notes_for(model, _recipe("auto"))[0]
    assert convert_worker.notes_for(chain, _recipe("auto")) == []
    assert "the recipe says unroll = true" in convert_worker.notes_for(chain, _recipe(True))[0]
    # float_fallback ranks ops with TensorFlow's debugger, which cannot see inside a loop: such a recipe unrolls
    fallback = _recipe("auto", "int8", float_fallback=0.25)
    assert lowering.time_form(chain, fallback) == 0 and "float_fallback" in convert_worker.notes_for(chain, fallback)[0]
    with pytest.raises(ModelError, match="unroll = false.*float_fallback"):
        lowering.time_form(chain, _recipe(False, "int8", float_fallback=0.25))
    # fewer than two iterations' steps: nothing to loop over, whatever the recipe says (run_loop unrolls them too)
    tiny = _lowered(2 * lowering.PER_ITERATION - 1, [keras.layers.GRU(4), keras.layers.Dense(1)])
    assert lowering.time_form(tiny, _recipe(False)) == 0


def test_shipped_cpu_recipes_switch_by_themselves():
    shipped = {name: recipes.load(name) for name in recipes.shipped_names()}
    assert shipped.pop("android-gpu").unroll is True
    assert {r.unroll for r in shipped.values()} == {"auto"}


def test_calibration_reads_a_bounded_number_of_steps():
    int8 = recipes.load("int8")  # calibration_size 200
    assert convert_worker.calibration_windows(int8, 12) == 200
    assert convert_worker.calibration_windows(int8, 100) == 100
    assert convert_worker.calibration_windows(int8, 5000) == convert_worker.MIN_CALIBRATION_WINDOWS
    assert convert_worker.calibration_windows(_recipe(True, "int8", calibration_size=10), 5000) == 10


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """A model gru-edge trained on a window longer than LOOP_AFTER (raw values in and out, first differences), and
    every shipped CPU recipe plus a streaming int8 one, converted."""
    from gru_edge.data import write_synthetic_csv
    from gru_edge.model import TrainConfig, train

    folder = tmp_path_factory.mktemp("long")
    csv = write_synthetic_csv(folder / "series.csv", rows=700)
    run = folder / "run"
    train(TrainConfig(data=str(csv), column="y", features=("a",), window=LONG, units=8, epochs=3,
                      transform="diff1"), run)
    streaming = folder / "int8-streaming.toml"
    streaming.write_text(recipes.shipped_dir().joinpath("int8.toml").read_text().replace(
        "batch_size = 1", "batch_size = 1\nstreaming = true"))
    cpu = [n for n in recipes.shipped_names() if n != "android-gpu"]
    return run, api.convert(run / "model.keras", cpu + [str(streaming)], folder / "out").require_all()


def test_every_cpu_recipe_converts_a_long_window_to_a_loop_and_passes(long_run, tmp_path):
    """Each model is a loop whose file is near its weights; verify passes against Keras, and the bundle it writes
    passes again without Keras (and, for the streaming model, step by step)."""
    run, result = long_run
    for made in result.models:
        info = tflite_model.read(made.path)
        assert info.time_form == "loop" and info.custom_ops == [], made.recipe
        refused = runtimes.predict(info, "tflite-runtime==2.14").refused  # dynamic-int8's FULLY_CONNECTED v12 is
        assert not [r for r in refused if r.split()[0] in LOOP_OPS], (made.recipe, refused)  # refused unrolled too
        assert made.size_bytes <= 1.10 * made.weight_bytes + 32 * 1024, made.recipe
        found = api.inspect(made.path)
        assert found.description.loop_steps == lowering.PER_ITERATION
        if made.recipe in ("int8", "int16x8"):  # the cell inside the loop is quantized, not left in float
            cell = {op.output_types for op in info.ops if op.subgraph > 0 and op.name in ("FULLY_CONNECTED", "TANH")}
            assert cell == {(made.recipe.removesuffix("x8"),)}, (made.recipe, cell)
        checked = api.verify(run / "model.keras", made.path, bundle=tmp_path / made.recipe)
        assert checked.report.passed, (made.recipe, checked.report.failures)
        again = api.check_bundle(tmp_path / made.recipe)
        assert again.passed, made.recipe
    stepped = api.verify(run / "model.keras", result.model("int8-streaming").path).report
    assert stepped.passed and stepped.streaming["passed"], stepped.failures


def test_inspect_says_which_form(long_run, r1_converted):
    from gru_edge import gpu, text

    _, result = long_run
    loop = result.model("float32").path
    unrolled = r1_converted.model("float32").path
    shown = api.inspect(loop)
    line = text.inspection(loop.name, shown.model, list(shown.gpu_findings), shown.description)
    assert "form: loop (WHILE over time, 4 steps per iteration)" in line
    assert any("WHILE" in str(f) for f in gpu.check(shown.model))  # GPU delegates refuse it: said, not hidden
    flat = api.inspect(unrolled)
    assert flat.model.time_form == "unrolled" and flat.description.loop_steps == 0
    assert "form: unrolled (every time step in the graph" in text.inspection(
        unrolled.name, flat.model, list(flat.gpu_findings), flat.description)
