"""Keras GRU weights -> an unrolled TensorFlow graph the TFLite converter lowers to builtin, GPU-friendly ops.

The graph uses only FULLY_CONNECTED, ADD, SUB, MUL, LOGISTIC, TANH, SPLIT, RESHAPE, PACK (and the Dense head's
activation): no WHILE (GPU delegates refuse it), no UNPACK or rank-2 STRIDED_SLICE (the classic GPU delegate refuses
those), no TensorList ops (they need Flex). Each weight matrix is one constant shared by every time step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gru_edge.errors import ModelError

_GRU_ACTIVATIONS = {"tanh", "sigmoid", "relu", "linear"}
_DENSE_ACTIVATIONS = {"linear", "relu", "sigmoid", "tanh", "softmax"}


@dataclass(frozen=True)
class GruSpec:
    name: str
    units: int
    kernel: np.ndarray  # [F, 3U], gate order z, r, h
    recurrent: np.ndarray  # [U, 3U]
    bias_in: np.ndarray  # [3U]
    bias_rec: np.ndarray  # [3U] (zeros unless reset_after)
    reset_after: bool
    return_sequences: bool
    go_backwards: bool
    activation: str
    recurrent_activation: str


@dataclass(frozen=True)
class DenseSpec:
    name: str
    kernel: np.ndarray
    bias: np.ndarray
    activation: str


@dataclass(frozen=True)
class LoweredModel:
    """What the lowering read from a Keras model: input shape and the layer chain."""

    time_steps: int
    features: int
    layers: tuple
    input_name: str
    output_name: str
    output_size: int


def _activation_name(fn) -> str:
    return getattr(fn, "__name__", str(fn))


def read_model(model) -> LoweredModel:
    """Return the layer chain of a Keras GRU model, or raise ModelError naming the layer and option not supported."""
    specs = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("InputLayer", "Dropout"):
            continue  # dropout is the identity at inference
        cfg = layer.get_config()
        if kind == "GRU":
            for option, ok in (("stateful", not cfg.get("stateful")),
                               ("activation", cfg["activation"] in _GRU_ACTIVATIONS),
                               ("recurrent_activation", cfg["recurrent_activation"] in _GRU_ACTIVATIONS),
                               ("return_state", not cfg.get("return_state"))):
                if not ok:
                    raise ModelError(f"Layer '{layer.name}' (GRU) uses {option}={cfg.get(option)!r}, which "
                                     f"gru-edge cannot lower. Supported activations: "
                                     f"{', '.join(sorted(_GRU_ACTIVATIONS))}; stateful and return_state must be "
                                     "False (pass state explicitly instead).")
            weights = layer.get_weights()
            units = cfg["units"]
            kernel, recurrent = weights[0], weights[1]
            bias = weights[2] if cfg["use_bias"] else np.zeros((2, 3 * units) if cfg["reset_after"] else 3 * units)
            bias = np.asarray(bias, np.float32)
            bias_in, bias_rec = (bias[0], bias[1]) if cfg["reset_after"] else (bias, np.zeros(3 * units, np.float32))
            specs.append(GruSpec(layer.name, units, np.asarray(kernel, np.float32),
                                 np.asarray(recurrent, np.float32), bias_in, bias_rec, cfg["reset_after"],
                                 cfg["return_sequences"], cfg["go_backwards"], cfg["activation"],
                                 cfg["recurrent_activation"]))
        elif kind == "Dense":
            if cfg["activation"] not in _DENSE_ACTIVATIONS:
                raise ModelError(f"Layer '{layer.name}' (Dense) uses activation {cfg['activation']!r}; supported: "
                                 f"{', '.join(sorted(_DENSE_ACTIVATIONS))}.")
            weights = layer.get_weights()
            bias = weights[1] if cfg["use_bias"] else np.zeros(cfg["units"], np.float32)
            specs.append(DenseSpec(layer.name, np.asarray(weights[0], np.float32), np.asarray(bias, np.float32),
                                   cfg["activation"]))
        else:
            raise ModelError(f"Layer '{layer.name}' ({kind}) cannot be lowered; supported: GRU, Dense, Dropout.")
    _check_chain(specs, model)
    _, t, f = model.inputs[0].shape
    return LoweredModel(int(t), int(f), tuple(specs), _identifier(model.inputs[0].name, "sequence"),
                        _identifier(specs[-1].name, "output"), int(model.outputs[0].shape[-1]))


def _identifier(name: str, default: str) -> str:
    """Return ``name`` made safe for a TFLite signature key (letters, digits, underscores)."""
    clean = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    generated = clean.startswith("keras_tensor") or clean.startswith("input_layer")
    return clean if clean and not clean[0].isdigit() and not generated else default


def _check_chain(specs: list, model) -> None:
    seq = True
    for spec in specs:
        if isinstance(spec, GruSpec):
            if not seq:
                raise ModelError(f"Layer '{spec.name}' (GRU) follows a layer that returns no sequence; set "
                                 "return_sequences=True on the GRU before it.")
            seq = spec.return_sequences
        elif seq:
            raise ModelError(f"Layer '{spec.name}' (Dense) is applied to a sequence; gru-edge supports Dense heads "
                             "after the last GRU (return_sequences=False).")
    if seq:
        raise ModelError(f"{model.name}: the last GRU returns sequences and no Dense head follows; gru-edge models "
                         "end in one vector per input sequence.")


def build_function(lowered: LoweredModel, batch_size: int):
    """Return a ``tf.function`` over input [batch_size, T, F] computing the same outputs as the Keras model."""
    import tensorflow as tf

    acts = {"tanh": tf.tanh, "sigmoid": tf.sigmoid, "relu": tf.nn.relu, "linear": lambda v: v,
            "softmax": tf.nn.softmax}
    b = batch_size
    # Constants are created once, outside the unrolled loop, so every step reads the same buffer.
    consts = []
    for spec in lowered.layers:
        if isinstance(spec, GruSpec):
            u = spec.units
            if spec.reset_after:
                rec = (tf.constant(spec.recurrent), tf.constant(spec.bias_rec))
            else:
                rec = (tf.constant(spec.recurrent[:, : 2 * u]), tf.constant(spec.recurrent[:, 2 * u:]))
            consts.append((tf.constant(spec.kernel), tf.constant(spec.bias_in), *rec))
        else:
            consts.append((tf.constant(spec.kernel), tf.constant(spec.bias)))

    def gru(seq, spec: GruSpec, c):
        kernel, bias_in, rec_a, rec_b = c
        u, steps, width = spec.units, seq.shape[1], seq.shape[2]
        act, ract = acts[spec.activation], acts[spec.recurrent_activation]
        # One input projection for all steps, then 3-D SPLIT per step (no UNPACK / rank-2 STRIDED_SLICE).
        proj = tf.reshape(tf.matmul(tf.reshape(seq, [b * steps, width]), kernel) + bias_in, [b, steps, 3 * u])
        inputs = [tf.reshape(p, [b, 3 * u]) for p in tf.split(proj, steps, axis=1)]
        if spec.go_backwards:
            inputs = inputs[::-1]
        h, outs = None, []
        for xp in inputs:
            xz, xr, xh = tf.split(xp, 3, axis=1)
            if spec.reset_after:
                recurrent, bias_rec = rec_a, rec_b
                hp = bias_rec[None, :] if h is None else tf.matmul(h, recurrent) + bias_rec
                hz, hr, hh = tf.split(tf.broadcast_to(hp, [b, 3 * u]) if h is None else hp, 3, axis=1)
                z, r = ract(xz + hz), ract(xr + hr)
                cand = act(xh + r * hh)
            else:
                rec_zr, rec_h = rec_a, rec_b
                if h is None:
                    z, r, cand = ract(xz), ract(xr), act(xh)
                else:
                    hz, hr = tf.split(tf.matmul(h, rec_zr), 2, axis=1)
                    z, r = ract(xz + hz), ract(xr + hr)
                    cand = act(xh + tf.matmul(r * h, rec_h))
            # h' = z*h + (1-z)*cand, written as cand + z*(h - cand): one op fewer per step.
            h = (1.0 - z) * cand if h is None else cand + z * (h - cand)
            outs.append(h)
        return tf.stack(outs, axis=1) if spec.return_sequences else h

    def forward(sequence):
        x = sequence
        for spec, c in zip(lowered.layers, consts):
            if isinstance(spec, GruSpec):
                x = gru(x, spec, c)
            else:
                x = acts[spec.activation](tf.matmul(x, c[0]) + c[1])
        return {lowered.output_name: x}

    signature = [tf.TensorSpec([b, lowered.time_steps, lowered.features], tf.float32, name=lowered.input_name)]
    fn = tf.function(forward, input_signature=signature, autograph=False)
    return fn
