"""A Keras graph with GRU layers anywhere in it -> one TensorFlow function: each GRU node (GRU, RNN(GRUCell),
Bidirectional(GRU)) becomes gru-edge's unrolled cell (gru_edge.lowering), every other layer is called as Keras
computes it at inference and left to TensorFlow's converter (Conv1D, Embedding, normalizations, Dense, merges,
pooling: builtin ops). Dropout and noise layers are the identity at inference.

What cannot be lowered exactly is refused here, before any conversion starts, naming the layer, the option and what
to do instead: masks (a masked step must keep the state, and the unrolled cell does not look at masks), recurrent
layers that are not GRUs, stateful layers, several inputs or outputs (a parity bundle holds one of each), inputs
without a fixed length.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, replace

import numpy as np

from gru_edge import lowering, names
from gru_edge.errors import ConversionError, ModelError
from gru_edge.lowering import GruSpec

RECURRENT = {"GRU", "RNN", "Bidirectional"}
_NOT_GRU = {"LSTM", "SimpleRNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D"}


@dataclass(frozen=True)
class GraphModel:
    """A Keras model lowered as a graph: its one input and output, and the GRU specs by layer."""

    model: object  # the Keras model (its layers are called while tracing)
    input_shape: tuple  # without the batch: (T, F), or (T,) for token ids
    input_dtype: str
    input_name: str
    output_name: str
    specs: dict  # id(layer) -> GruSpec, or (GruSpec, GruSpec) for a Bidirectional
    framing = None  # raw units come from gru-edge's own chains only (gru_edge.lowering)
    form = "graph"

    @property
    def time_steps(self) -> int:
        return self.input_shape[0]

    steps = time_steps  # the GRUs' steps: the input's (no framing)



def lower(model):
    """The chain form (gru_edge.lowering, with streaming) when the model is a plain chain; the graph form otherwise.
    ModelError names what cannot be lowered either way."""
    check_io(model)
    try:
        check_chain(model, model.name)
        return lowering.read_model(model)
    except ModelError:
        return read_graph(model)


def check_chain(model, name: str) -> None:
    """Raise ModelError unless the model's graph, walked from its output back to its input, calls each of its layers
    exactly once, one after the other, in the order of ``model.layers``: the chain the lowering reads. A layer
    called twice (or a graph that branches) would be lowered into a model that computes something else."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    calls, tensor = [], model.outputs[0]
    while True:
        history = getattr(tensor, "_keras_history", None)
        if history is None or len(calls) > len(layers) + 1:
            break
        node = history.operation._inbound_nodes[history.node_index]
        if type(history.operation).__name__ == "InputLayer":
            break
        calls.append(history.operation)
        if type(history.operation).__name__ == "Unframe" and len(node.input_tensors) == 2 \
                and node.input_tensors[1] is model.inputs[0]:
            tensor = node.input_tensors[0]  # the forecast's levels come from the raw input window
            continue
        if len(node.input_tensors) != 1:
            raise ModelError(f"{name}: layer '{history.operation.name}' takes {len(node.input_tensors)} inputs; "
                             "gru-edge converts a chain of layers, each fed by the one before.")
        tensor = node.input_tensors[0]
    calls.reverse()
    if [id(c) for c in calls] != [id(layer) for layer in layers]:
        twice = sorted({c.name for c in calls if sum(c is d for d in calls) > 1})
        what = (f"calls layer(s) {', '.join(twice)} more than once" if twice else
                f"computes {' -> '.join(c.name for c in calls) or 'nothing'} but lists the layers "
                f"{' -> '.join(layer.name for layer in layers)}")
        raise ModelError(f"{name} {what}; gru-edge converts a chain in which each layer is called once, one after "
                         "the other, and refuses anything else rather than convert it into a model that computes "
                         "something different.")


def all_layers(model):
    """Every layer of ``model``, nested models opened."""
    for layer in model.layers:
        if _is_model(layer):
            yield from all_layers(layer)
        else:
            yield layer


def _is_model(layer) -> bool:
    return hasattr(layer, "layers") and hasattr(layer, "inputs") and type(layer).__name__ in (
        "Functional", "Sequential", "Model")


def check_io(model) -> None:
    """ModelError unless the model has one input of fixed shape [T, F] or [T], and one output."""
    name = model.name
    if len(model.inputs) != 1:
        names = ", ".join(getattr(getattr(t, "_keras_history", None), "operation", t).name for t in model.inputs)
        raise ModelError(f"{name} has {len(model.inputs)} inputs ({names}); a "
                         "gru-edge model and its parity bundle take one input. Join them into one [T, F] input, or "
                         "compute the extra ones (e.g. an initial_state) inside the model.")
    if len(model.outputs) != 1:
        raise ModelError(f"{name} has {len(model.outputs)} outputs; a gru-edge model and its parity bundle return one. "
                         "Join them with keras.layers.Concatenate, or convert a model for each output.")
    shape = tuple(model.inputs[0].shape)[1:]
    if len(shape) not in (1, 2) or any(d is None for d in shape):
        raise ModelError(f"{name} takes input shape {tuple(model.inputs[0].shape)}; gru-edge unrolls over a fixed "
                         "number of time steps: build the model on keras.Input((T, F)) (or (T,) for token ids) with "
                         "T and F fixed.")


def read_graph(model) -> GraphModel:
    """Check every layer of ``model`` can be lowered exactly (ModelError naming the layer and option otherwise) and
    read the GRU weights."""
    check_io(model)
    shape = tuple(model.inputs[0].shape)[1:]
    name = model.name
    specs = {}
    for layer in all_layers(model):
        kind = type(layer).__name__
        _refuse(layer, kind)
        if kind == "Bidirectional":
            specs[id(layer)] = (gru_spec(layer.forward_layer, f"{layer.name}.forward"),
                                gru_spec(layer.backward_layer, f"{layer.name}.backward"))
        elif kind in ("GRU", "RNN"):
            specs[id(layer)] = gru_spec(layer, layer.name)
    _refuse_masks(model)  # after the layers: a Masking layer is named as the cause of the masks it makes
    if not specs:
        kinds = ", ".join(type(la).__name__ for la in all_layers(model))
        raise ModelError(f"{name} has no GRU layer (layers: {kinds}); "
                         "gru-edge converts models with GRU layers.")
    out = model.outputs[0]
    return GraphModel(model, tuple(int(d) for d in shape), str(model.inputs[0].dtype),
                      lowering.identifier(model.inputs[0].name, "sequence"),
                      lowering.identifier(getattr(out, "_keras_history", [None])[0].name
                                          if getattr(out, "_keras_history", None) else "", "output"), specs)


def _refuse_masks(model) -> None:
    """ModelError for a layer or nested model called with an explicit ``mask=``: the unrolled cell ignores masks."""
    for layer in [model, *model.layers, *all_layers(model)]:
        for node in getattr(layer, "_inbound_nodes", []):
            if node.arguments.kwargs.get("mask") is not None:
                raise ModelError(f"Layer '{layer.name}' ({type(layer).__name__}) is called with mask=...: gru-edge's "
                                 "unrolled GRU does not read masks, so masked steps would count as data. Call it "
                                 "without a mask and give windows without padding.")


def _refuse(layer, kind: str) -> None:
    """ModelError for the layers and options gru-edge cannot lower exactly."""
    cfg = layer.get_config()
    if kind == "Masking":
        raise ModelError(f"Layer '{layer.name}' (Masking): gru-edge's unrolled GRU does not read masks, so masked "
                         "steps would count as data. Remove the Masking layer and give windows without padding.")
    if kind == "Embedding" and cfg.get("mask_zero"):
        raise ModelError(f"Layer '{layer.name}' (Embedding) uses mask_zero=True: gru-edge's unrolled GRU does not "
                         "read masks. Set mask_zero=False (token 0 is then an ordinary token), or give unpadded "
                         "windows.")
    if kind in _NOT_GRU:
        raise ModelError(f"Layer '{layer.name}' ({kind}): gru-edge lowers GRU layers only. Use GRU instead of "
                         f"{kind}, or convert this model with TensorFlow's own converter.")
    if kind == "TimeDistributed" and type(layer.layer).__name__ in RECURRENT | _NOT_GRU:
        raise ModelError(f"Layer '{layer.name}' (TimeDistributed({type(layer.layer).__name__})): a recurrent layer "
                         "inside TimeDistributed is not supported; apply the GRU to a reshaped [T, F] input.")
    if kind == "Bidirectional":
        for side in (layer.forward_layer, layer.backward_layer):
            if type(side).__name__ not in ("GRU", "RNN"):
                raise ModelError(f"Layer '{layer.name}' (Bidirectional({type(side).__name__})): gru-edge lowers "
                                 "Bidirectional(GRU) only. Use a GRU inside it.")
    if cfg.get("stateful"):
        raise ModelError(f"Layer '{layer.name}' ({kind}) uses stateful=True, which gru-edge cannot lower. Set "
                         "stateful=False; a recipe with streaming = true passes the state explicitly instead.")


def gru_spec(layer, name: str) -> GruSpec:
    """The GruSpec of a GRU or RNN(GRUCell) layer (ModelError naming the option gru-edge cannot lower)."""
    cell = getattr(layer, "cell", None)
    if type(cell).__name__ != "GRUCell":
        raise ModelError(f"Layer '{name}' ({type(layer).__name__}({type(cell).__name__})): gru-edge lowers GRU "
                         "cells only. Use keras.layers.GRU or RNN(GRUCell).")
    cfg = {**cell.get_config(), "return_sequences": layer.return_sequences, "go_backwards": layer.go_backwards,
           "stateful": layer.stateful}
    return replace(lowering.gru_spec(layer, cfg, name), return_state=bool(layer.return_state))


def build_function(gm: GraphModel, batch_size: int, integer: bool = False) -> dict:
    """``{SERVE: tf.function}`` computing ``gm.model`` at inference with every GRU node lowered."""
    import tensorflow as tf

    b = batch_size
    acts = lowering.activations(tf)
    weights = {id(layer): ([np.asarray(v) for v in layer.trainable_variables],
                           [np.asarray(v) for v in layer.non_trainable_variables]) for layer in all_layers(gm.model)}
    cells = {key: tuple(lowering.Cell(tf, s, acts, integer) for s in v) if isinstance(v, tuple)
             else lowering.Cell(tf, v, acts, integer) for key, v in gm.specs.items()}

    def operation(op):
        call = _operation(op)

        def named(*args, **kwargs):  # its ops in the layer's name scope (verify --explain names them by it)
            with tf.name_scope(names.scope_layer(op.name)):
                return call(*args, **kwargs)

        return named

    def _operation(op):
        kind = type(op).__name__
        if _is_model(op):
            return lambda *args, **kwargs: _run(op, args[0])
        if kind in ("GRU", "RNN"):
            return lambda seq, initial_state=None, **_: _gru(tf, cells[id(op)], seq, initial_state, b)
        if kind == "Bidirectional":
            return lambda seq, initial_state=None, **_: _bidirectional(tf, op, cells[id(op)], seq, initial_state, b)
        if id(op) not in weights:
            return op  # a Keras operation that is no layer (x[:, -1], x + y on tensors): no weights, no training
        return lambda *args, **kwargs: _constant_call(tf, op, weights[id(op)], args, kwargs)

    def _run(model, inputs):
        fn = getattr(model, "_functional", None) or model
        out = fn._run_through_graph(inputs if isinstance(inputs, (list, tuple)) else [inputs],
                                    operation_fn=operation)
        return out[0] if isinstance(out, (list, tuple)) and len(out) == 1 else out

    def forward(sequence):
        x = sequence if gm.input_dtype == "float32" else tf.cast(sequence, gm.input_dtype)
        return {gm.output_name: _run(gm.model, x)}

    forward.__name__ = names.SERVE
    return {names.SERVE: tf.function(forward, autograph=False, input_signature=[
        tf.TensorSpec([b, *gm.input_shape], tf.float32, name=gm.input_name)])}


def _constant_call(tf, layer, values, args, kwargs):
    """The layer at inference with its weights ``values`` (trainable, non-trainable) as constants of the graph
    (read as variables, they would stay READ_VARIABLE ops that the int8 calibration cannot run)."""
    if not layer.variables:
        return layer(*args, **kwargs, training=False)
    if "training" in inspect.signature(layer.call).parameters:
        kwargs = {**kwargs, "training": False}
    out, _ = layer.stateless_call([tf.constant(v) for v in values[0]], [tf.constant(v) for v in values[1]],
                                  *args, **kwargs)
    return out


def _first(state):
    return state[0] if isinstance(state, (list, tuple)) else state


def _gru(tf, cell, seq, initial_state, b: int, flip: bool = False):
    """One GRU node: its output (the sequence, reversed again in time with ``flip``, or the last state) and, with
    return_state, the last state."""
    h0 = _first(initial_state)
    outs, h = lowering.run_gru(tf, cell, seq, None if h0 is None else tf.reshape(h0, [b, 1, cell.u]))
    last = tf.reshape(h, [b, cell.u])
    y = lowering.join_steps(tf, cell, outs[::-1] if flip else outs) if cell.spec.return_sequences else last
    return [y, last] if cell.spec.return_state else y


def _bidirectional(tf, layer, cells, seq, initial_state, b: int):
    """Keras' Bidirectional: the backward GRU's sequence flipped back in time, then merged."""
    states = list(initial_state) if isinstance(initial_state, (list, tuple)) else []
    half = len(states) // 2
    fwd = _gru(tf, cells[0], seq, states[:half] or None, b)
    bwd = _gru(tf, cells[1], seq, states[half:] or None, b, flip=True)
    extra = []
    if layer.return_state:
        extra = [fwd[1], bwd[1]]
        fwd, bwd = fwd[0], bwd[0]
    merged = {"concat": lambda: [tf.concat([fwd, bwd], axis=-1)], "sum": lambda: [fwd + bwd],
              "ave": lambda: [(fwd + bwd) * 0.5], "mul": lambda: [fwd * bwd], None: lambda: [fwd, bwd]}
    out = merged[layer.merge_mode]() + extra
    return out[0] if len(out) == 1 else out


_HALF = ("float16", "mixed_float16", "bfloat16", "mixed_bfloat16")


def predict(model, x) -> np.ndarray:
    """``model``'s outputs on ``x`` (inference), run as one traced graph: called eagerly, Keras steps a recurrent
    layer's loop in Python (54 s for 36 windows of 5000 steps of a GRU(64), against 1 s traced)."""
    import tensorflow as tf

    return np.asarray(tf.function(lambda v: model(v, training=False))(tf.constant(np.asarray(x))))


def float32_twin(model):
    """(model, note): a model under a float16 / mixed dtype policy rebuilt with float32 math and the same weights
    (the reference the converted model is compared with, and what gru-edge lowers), and a note saying so; the model
    itself and None when it computes in float32."""
    half = sorted({p for layer in all_layers(model) if (p := _policy(layer)) in _HALF})
    if not half:
        return model, None
    import keras

    def clone(layer):
        return layer.__class__.from_config(_as_float32(layer.get_config()))

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights([np.asarray(w, np.float32) for w in model.get_weights()])
    return twin, (f"{model.name} computes under the {', '.join(half)} dtype policy: gru-edge lowers and compares "
                  "float32 math of the same weights (Keras' own half-precision outputs differ from that by "
                  "float16 rounding)")


def _policy(layer) -> str:
    policy = getattr(layer, "dtype_policy", None)
    return getattr(policy, "name", "float32")


def _as_float32(cfg):
    if isinstance(cfg, dict):
        out = {}
        for key, value in cfg.items():
            if key == "dtype" and (value in _HALF or (isinstance(value, dict) and
                                                      value.get("config", {}).get("name") in _HALF)):
                value = "float32"
            out[key] = _as_float32(value)
        return out
    if isinstance(cfg, list):
        return [_as_float32(v) for v in cfg]
    return cfg


# Layers TensorFlow's int16x8 quantizer cannot take, with the op it stops at (measured with TF 2.21).
_NO_INT16 = {"Embedding": "cannot calibrate the CAST of the token ids it reads",
             "LayerNormalization": "has no 16-bit NEG, which LayerNormalization lowers to"}


def check_recipe(lowered, quantization: str) -> None:
    """ConversionError, before converting, for a layer the recipe's quantization cannot take."""
    if quantization != "int16x8" or not isinstance(lowered, GraphModel):
        return
    for layer in all_layers(lowered.model):
        why = _NO_INT16.get(type(layer).__name__)
        if why:
            raise ConversionError(f"Layer '{layer.name}' ({type(layer).__name__}): TensorFlow's int16x8 quantizer "
                                  f"{why}; use int8 or a float recipe for this model.")


def is_classifier(model) -> bool:
    """Whether the model's output comes from a softmax (a Dense or an Activation layer)."""
    history = getattr(model.outputs[0], "_keras_history", None)
    layer = getattr(history, "operation", None)
    return getattr(layer, "get_config", lambda: {})().get("activation") == "softmax"


def vocabulary(model) -> int | None:
    """The input_dim of the model's Embedding (its token ids must stay below it), or None without one."""
    for layer in all_layers(model):
        if type(layer).__name__ == "Embedding":
            return int(layer.input_dim)
    return None
