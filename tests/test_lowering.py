import numpy as np
import pytest

from gru_edge import lowering
from gru_edge.errors import ModelError
from gru_edge.io import quiet_tensorflow

with quiet_tensorflow():
    import keras


def _model(layers, t=12, f=1):
    keras.utils.set_random_seed(7)
    inputs = keras.Input((t, f), name="seq")
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def _max_error(model, batch=2, relative=False):
    """Max abs difference to Keras; with ``relative``, divided by max(1, peak |output|)."""
    lw = lowering.read_model(model)
    fn = lowering.build_functions(lw, batch)[lowering.SERVE]
    _, t, f = model.inputs[0].shape
    x = np.random.default_rng(0).standard_normal((batch, t, f)).astype(np.float32)
    out, ref = fn(x)[lw.output_name].numpy(), np.asarray(model(x))
    err = float(np.abs(out - ref).max())
    return err / max(1.0, float(np.abs(ref).max())) if relative else err


def test_r1_and_r2_equal_keras():
    r1 = _model([keras.layers.GRU(32), keras.layers.Dense(1)])
    r2 = _model([keras.layers.GRU(64, return_sequences=True), keras.layers.GRU(64), keras.layers.Dense(3)], 24, 4)
    assert _max_error(r1) <= 1e-5
    assert _max_error(r2) <= 1e-5


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("go_backwards", [True, False])
@pytest.mark.parametrize("use_bias", [True, False])
def test_gru_options_equal_keras(reset_after, go_backwards, use_bias):
    m = _model([keras.layers.GRU(8, return_sequences=True, reset_after=reset_after, go_backwards=go_backwards,
                                 use_bias=use_bias),
                keras.layers.GRU(5, reset_after=reset_after, use_bias=use_bias),
                keras.layers.Dense(2, activation="softmax")], 6, 3)
    rng = np.random.default_rng(3)
    # Keras initialises biases to zero; made non-zero (input and recurrent ones differ) so every bias term counts.
    m.set_weights([w + rng.normal(0.0, 0.3, w.shape).astype(np.float32) for w in m.get_weights()])
    assert _max_error(m, batch=3) <= 1e-5


def test_signature_names_come_from_the_model():
    lw = lowering.read_model(_model([keras.layers.GRU(4), keras.layers.Dense(1, name="forecast")]))
    assert (lw.input_name, lw.output_name, lw.time_steps, lw.features, lw.output_size) == \
        ("seq", "forecast", 12, 1, 1)


@pytest.mark.parametrize("layers, message", [
    ([keras.layers.LSTM(4), keras.layers.Dense(1)], r"Layer 'lstm\w*' \(LSTM\) cannot be lowered"),
    ([keras.layers.GRU(4, activation="selu"), keras.layers.Dense(1)], "uses activation='selu'"),
    ([keras.layers.GRU(4, return_sequences=True)], "the last GRU returns sequences and no Dense head follows"),
    ([keras.layers.GRU(4), keras.layers.Dense(1, activation="elu")], "uses activation 'elu'"),
])
def test_unsupported_options_are_named(layers, message):
    with pytest.raises(ModelError, match=message):
        lowering.read_model(_model(layers))


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_gru = st.fixed_dictionaries({
    "units": st.integers(1, 12), "reset_after": st.booleans(), "go_backwards": st.booleans(),
    "use_bias": st.booleans(), "activation": st.sampled_from(["tanh", "relu", "linear", "sigmoid"]),
    "recurrent_activation": st.sampled_from(["sigmoid", "tanh"]),
})


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(grus=st.lists(_gru, min_size=1, max_size=3), t=st.integers(1, 8), f=st.integers(1, 5),
       head=st.integers(1, 4), head_activation=st.sampled_from(["linear", "softmax", "tanh"]),
       batch=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_random_models_equal_keras(grus, t, f, head, head_activation, batch, seed):
    """Every supported option, in random combinations: the lowered graph equals Keras to 1e-5 in float32.

    relu and linear activations are unbounded, so outputs can reach the hundreds; there float32 rounding of a
    different (equivalent) operation order alone exceeds 1e-5, and the bound is relative to max(1, peak output).
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((t, f))
    x = inputs
    for i, cfg in enumerate(grus):
        x = keras.layers.GRU(return_sequences=i < len(grus) - 1, **cfg)(x)
    m = keras.Model(inputs, keras.layers.Dense(head, activation=head_activation)(x))
    # Larger weights than Keras' default init, so gates saturate and every branch matters; biases (zero at init)
    # made non-zero, input and recurrent ones different, so that each bias term is checked.
    rng = np.random.default_rng(seed)
    m.set_weights([w * 2.0 + rng.normal(0.0, 0.1, w.shape).astype(np.float32) for w in m.get_weights()])
    assert _max_error(m, batch, relative=True) <= 1e-5


def test_integer_arrangement_equals_keras_too():
    """The int16x8 arrangement (candidate bias outside the state projection) is the same function."""
    m = _model([keras.layers.GRU(16, return_sequences=True), keras.layers.GRU(8), keras.layers.Dense(3)], 10, 4)
    m.set_weights([w + 0.3 for w in m.get_weights()])  # non-zero recurrent biases
    lw = lowering.read_model(m)
    fn = lowering.build_functions(lw, 2, integer=True)[lowering.SERVE]
    x = np.random.default_rng(5).standard_normal((2, 10, 4)).astype(np.float32)
    assert float(np.abs(fn(x)[lw.output_name].numpy() - np.asarray(m(x))).max()) <= 1e-5


@pytest.mark.parametrize("n", [1, 7, 8, 24, 50, 96])
def test_steps_split_and_join_in_order_with_a_bounded_fan(n):
    """Each SPLIT has at most FAN outputs and each CONCATENATION at most FAN inputs; lengths with a factor <= FAN
    are cut by even SPLITs only (XNNPACK runs those itself)."""
    import tensorflow as tf

    x = np.arange(2 * n * 3, dtype=np.float32).reshape(2, n, 3)
    graph = tf.function(lambda v: lowering.concat_steps(tf, [s * 2.0 for s in lowering.split_steps(tf, v, n)])) \
        .get_concrete_function(tf.TensorSpec(x.shape, tf.float32)).graph
    fans = [len(op.outputs) for op in graph.get_operations() if op.type in ("Split", "SplitV")] + \
           [len(op.inputs) - 1 for op in graph.get_operations() if op.type == "ConcatV2"]  # the last input: axis
    assert fans and max(fans) <= lowering.FAN
    if n in (8, 24, 96):  # products of factors <= FAN
        assert not [op for op in graph.get_operations() if op.type == "SplitV"]
    steps = lowering.split_steps(tf, tf.constant(x), n)
    assert len(steps) == n and all(np.array_equal(s.numpy(), x[:, i:i + 1]) for i, s in enumerate(steps))
    np.testing.assert_array_equal(lowering.concat_steps(tf, steps).numpy(), x)


def test_long_sequences_equal_keras():
    """50 steps: the step SPLITs and the returned sequence's CONCATENATIONs are trees; still equal to Keras."""
    m = _model([keras.layers.GRU(8, return_sequences=True, go_backwards=True), keras.layers.GRU(8),
                keras.layers.Dense(2)], 50, 3)
    assert _max_error(m) <= 1e-5
