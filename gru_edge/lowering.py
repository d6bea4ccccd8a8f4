"""Keras GRU weights -> an unrolled TensorFlow graph the TFLite converter lowers to builtin, GPU-friendly ops.

Shape of the graph, per GRU layer (batch B fixed, T steps):
- two input projections, the update and reset gates together ([F, 2U]) and the candidate ([F, U]), for all steps at
  once: FULLY_CONNECTED (keep_num_dims) on [B, T, F], each cut into steps by 3-D SPLITs (no UNPACK, no rank-2
  STRIDED_SLICE: the classic GPU delegate refuses those);
- per step, 11 ops on rank-3 [B, 1, C] tensors: FULLY_CONNECTED (state -> both gates), ADD, LOGISTIC, SPLIT (z, r),
  FULLY_CONNECTED (state -> candidate), MUL, ADD, TANH, SUB, MUL, ADD; the first step, whose state is zero, needs
  fewer;
- CONCATENATION of the states when the layer returns sequences.
Steps are cut from the projections, and joined for a returned sequence, by SPLITs and CONCATENATIONs of at most
``FAN`` = 4 outputs or inputs, in a tree of even SPLITs where the length allows: XNNPACK runs SPLITs of 2 to 4
outputs inside its own partition (R2 float32: 48.1 -> 43.7 µs with its weight cache, against one 24-way SPLIT), and a
GPU shader binds every runtime tensor as a storage buffer: WebGPU guarantees 8 per shader stage, and LiteRT's GPU
accelerator on an H200 ran a 24-way SPLIT "fully accelerated" with wrong outputs.
Each weight matrix is one constant read by every step; no WHILE (GPU delegates refuse it), no TensorList (Flex).

The optional ``step`` function is the same cell for one time step with the state passed in and out explicitly
(LiteRT's CompiledModel refuses variable tensors).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from gru_edge.errors import ModelError
from gru_edge import names, raw_ops
from gru_edge.framing import Framing
from gru_edge.names import COUNT, FRAME, RAW, RING, SERVE, STEP

_GRU_ACTIVATIONS = {"tanh", "sigmoid", "hard_sigmoid", "relu", "linear"}
_DENSE_ACTIVATIONS = {"linear", "relu", "sigmoid", "tanh", "softmax"}
PASS_THROUGH = ("InputLayer", "Dropout")  # no computation at inference
SUPPORTED_LAYERS = (*PASS_THROUGH, "Frame", "GRU", "Dense", "Unframe")  # Frame, Unframe: gru_edge.framing
FAN = 4  # most outputs of one SPLIT, inputs of one CONCATENATION (see the module docstring)


@dataclass(frozen=True)
class GruSpec:
    name: str
    units: int
    kernel: np.ndarray  # [F, 3U], gate order z, r, h (Keras' order)
    recurrent: np.ndarray  # [U, 3U]
    bias_in: np.ndarray  # [3U]
    bias_rec: np.ndarray  # [3U] (zeros unless reset_after)
    reset_after: bool
    return_sequences: bool
    go_backwards: bool
    activation: str
    recurrent_activation: str
    return_state: bool = False  # graph form only (gru_edge.graph): the last state as a second output


@dataclass(frozen=True)
class DenseSpec:
    name: str
    kernel: np.ndarray
    bias: np.ndarray
    activation: str


@dataclass(frozen=True)
class LoweredModel:
    """What the lowering read from a Keras model: input shape and the layer chain."""

    time_steps: int  # of the input: the GRU's steps plus the framing's lag
    features: int
    layers: tuple
    input_name: str
    output_name: str
    output_size: int
    framing: Framing | None = None  # raw units in and out (gru_edge.framing); None: the model reads what it is fed
    form = "chain"  # (gru_edge.graph.GraphModel: "graph")

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.time_steps, self.features

    @property
    def steps(self) -> int:
        """Time steps the GRU layers run."""
        return self.time_steps - (self.framing.lag if self.framing else 0)

    @property
    def grus(self) -> list[GruSpec]:
        return [s for s in self.layers if isinstance(s, GruSpec)]

    def state_names(self) -> list[str]:
        return [names.state_name(i) for i in range(len(self.grus))]


def read_model(model) -> LoweredModel:
    """Return the layer chain of a Keras GRU model, or raise ModelError naming the layer and option not supported."""
    specs, framing = [], None
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in PASS_THROUGH:
            continue  # dropout is the identity at inference
        cfg = layer.get_config()
        if kind in ("Frame", "Unframe"):
            mine = Framing.from_dict(cfg["framing"])
            placed = not specs if kind == "Frame" else layer is model.layers[-1]
            if not placed or (framing is not None and mine != framing):
                raise ModelError(f"Layer '{layer.name}' ({kind}) must be the first (Frame) or the last (Unframe) "
                                 "layer, with the same framing as its partner.")
            framing = mine
        elif kind == "GRU":
            specs.append(gru_spec(layer, cfg, layer.name))
        elif kind == "Dense":
            if cfg["activation"] not in _DENSE_ACTIVATIONS:
                raise ModelError(f"Layer '{layer.name}' (Dense) uses activation {cfg['activation']!r}; supported: "
                                 f"{', '.join(sorted(_DENSE_ACTIVATIONS))}.")
            weights = layer.get_weights()
            bias = weights[1] if cfg["use_bias"] else np.zeros(cfg["units"], np.float32)
            specs.append(DenseSpec(layer.name, np.asarray(weights[0], np.float32), np.asarray(bias, np.float32),
                                   cfg["activation"]))
        else:
            raise ModelError(f"Layer '{layer.name}' ({kind}) cannot be lowered; supported: "
                             f"{', '.join(SUPPORTED_LAYERS)}.")
    _check_chain(specs, model)
    _, t, f = model.inputs[0].shape
    return LoweredModel(int(t), int(f), tuple(specs), identifier(model.inputs[0].name, "sequence"),
                        identifier(specs[-1].name, "output"), int(model.outputs[0].shape[-1]), framing)


def gru_spec(layer, cfg: dict, name: str) -> GruSpec:
    """The spec of a GRU layer from its config (a GRU's, or a GRUCell's with the RNN's flags) and weights."""
    for option, ok in (("stateful", not cfg.get("stateful")), ("return_state", not cfg.get("return_state")),
                       ("activation", cfg["activation"] in _GRU_ACTIVATIONS),
                       ("recurrent_activation", cfg["recurrent_activation"] in _GRU_ACTIVATIONS)):
        if not ok:
            raise ModelError(f"Layer '{name}' (GRU) uses {option}={cfg.get(option)!r}, which gru-edge cannot "
                             f"lower. Supported activations: {', '.join(sorted(_GRU_ACTIVATIONS))}; stateful and "
                             "return_state must be False (streaming passes state explicitly instead).")
    weights = layer.get_weights()
    units = cfg["units"]
    if cfg["use_bias"]:
        bias = np.asarray(weights[2], np.float32)
    else:
        bias = np.zeros((2, 3 * units) if cfg["reset_after"] else 3 * units, np.float32)
    bias_in, bias_rec = (bias[0], bias[1]) if cfg["reset_after"] else (bias, np.zeros(3 * units, np.float32))
    return GruSpec(name, units, np.asarray(weights[0], np.float32), np.asarray(weights[1], np.float32),
                   bias_in, bias_rec, cfg["reset_after"], cfg["return_sequences"], cfg["go_backwards"],
                   cfg["activation"], cfg["recurrent_activation"])


def identifier(name: str, default: str) -> str:
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


class Cell:
    """One GRU layer's constants, arranged for the lowered graph; ``step`` is one time step on [B, 1, C]."""

    def __init__(self, tf, spec: GruSpec, acts: dict, integer: bool = False):
        u = spec.units
        self.spec, self.u, self.integer = spec, u, integer
        self.act, self.ract = acts[spec.activation], acts[spec.recurrent_activation]
        # The update and reset gates share one matrix, one ADD and one activation per step, then one SPLIT; the
        # candidate has its own matrix. Their recurrent biases are constants: fold them into the input projection;
        # the candidate's recurrent bias stays inside r * (h U_h + b_h).
        gates = [slice(0, 2 * u), slice(2 * u, 3 * u)]  # (z, r), h
        self.kernel = [tf.constant(spec.kernel[:, g]) for g in gates]
        self.bias = [tf.constant(spec.bias_in[gates[0]] + spec.bias_rec[gates[0]]), tf.constant(spec.bias_in[gates[1]])]
        self.rec = [tf.constant(spec.recurrent[:, g]) for g in gates]
        self.rec_bias_h = tf.constant(spec.bias_rec[gates[1]])

    def scope(self, tf, gate: str, t: int | None = None):
        """The name scope that tells ``verify --explain`` this layer, gate and time step (gru_edge.names)."""
        return tf.name_scope(names.scope(self.spec.name, gate, t))

    def project(self, tf, seq):
        """Input projections ((z, r), h) for every step at once: [B, T, 2U] and [B, T, U]."""
        out = []
        for k, b, gate in zip(self.kernel, self.bias, ("update+reset", "candidate")):
            with self.scope(tf, gate):
                out.append(tf.matmul(seq, k) + b)
        return tuple(out)

    def step(self, tf, x, h, t: int | None = None):
        """Return the new state [B, 1, U] from this step's projections ((z, r), h) and the state (None: zeros);
        ``t``: the input time index the step reads (names its ops)."""
        xzr, xh = x
        with self.scope(tf, "update+reset", t):
            z, r = tf.split(self.ract(xzr if h is None else xzr + tf.matmul(h, self.rec[0])), 2, axis=-1)
        if h is None:
            if self.spec.reset_after:
                with self.scope(tf, "reset", t):
                    xh = xh + r * self.rec_bias_h
            with self.scope(tf, "candidate", t):
                cand = self.act(xh)
            with self.scope(tf, "update", t):
                return cand - z * cand  # (1 - z) * cand + z * 0
        if self.spec.reset_after:
            with self.scope(tf, "candidate", t):
                hh = tf.matmul(h, self.rec[1])
            with self.scope(tf, "reset", t):
                # Integer models re-quantize a fused bias for every step (its scale follows the step's input
                # scale): 48 int64 copies with per-channel scales on R2 in int16x8. r * b_h is one constant for all
                # steps.
                rh = (r * hh, r * self.rec_bias_h) if self.integer else (r * (hh + self.rec_bias_h),)
            with self.scope(tf, "candidate", t):
                cand = self.act(xh + rh[0] + rh[1]) if self.integer else self.act(xh + rh[0])
        else:
            with self.scope(tf, "reset", t):
                rh = r * h
            with self.scope(tf, "candidate", t):
                cand = self.act(xh + tf.matmul(rh, self.rec[1]))
        with self.scope(tf, "update", t):  # z*h + (1-z)*cand written as cand + z*(h - cand): one op fewer per step
            return cand + z * (h - cand)


@functools.cache
def _tree(n: int) -> tuple[int, tuple[int, ...]]:
    """(ops, sizes): how many SPLITs of at most FAN outputs cut n steps into single steps, and the sizes of the groups
    the first one cuts. Equal groups wherever n has a factor <= FAN (every SPLIT even), the fewest ops among those."""
    if n <= FAN:
        return 1, (1,) * n
    even = [(1 + k * _tree(n // k)[0], (n // k,) * k) for k in range(2, FAN + 1) if n % k == 0]
    if even:
        return min(even)
    k = min(FAN, -(-n // FAN))
    sizes = tuple(n // k + (i < n % k) for i in range(k))
    return 1 + sum(_tree(g)[0] for g in sizes), sizes


def split_steps(tf, x, n: int) -> list:
    """``x`` [B, n, C] cut into n steps [B, 1, C] by SPLITs of at most FAN outputs each."""
    if n <= FAN:
        return tf.split(x, n, axis=1)
    sizes = _tree(n)[1]
    parts = tf.split(x, len(sizes), axis=1) if len(set(sizes)) == 1 else tf.split(x, list(sizes), axis=1)
    return [step for part, size in zip(parts, sizes) for step in split_steps(tf, part, size)]


def concat_steps(tf, xs: list):
    """The steps ``xs`` [B, 1, C] joined on axis 1 by CONCATENATIONs of at most FAN inputs each."""
    if len(xs) <= FAN:
        return tf.concat(xs, axis=1)
    ends = [int(e) for e in np.cumsum((0,) + _tree(len(xs))[1])]
    return concat_steps(tf, [concat_steps(tf, xs[a:b]) for a, b in zip(ends[:-1], ends[1:])])


def activations(tf) -> dict:
    """Keras activation names -> the TensorFlow ops they lower to (hard_sigmoid as Keras 3 computes it: relu6(x + 3)
    / 6, Keras 2's GRU default)."""
    return {"tanh": tf.tanh, "sigmoid": tf.sigmoid, "relu": tf.nn.relu, "linear": lambda v: v,
            "softmax": tf.nn.softmax, "hard_sigmoid": lambda v: tf.nn.relu6(v + 3.0) * (1.0 / 6.0)}


def run_gru(tf, cell: Cell, x, h0=None, timed: bool = True) -> tuple[list, object]:
    """Run one GRU layer over ``x`` [B, T, F] from the state ``h0`` [B, 1, U] (None: zeros): the states [B, 1, U]
    in the order the layer computes them (reversed in time for go_backwards, as Keras returns them), and the last.
    ``timed``: name each step's ops after its time index (not inside a loop, where each op serves many steps)."""
    projections = cell.project(tf, x)
    with cell.scope(tf, "steps"):
        steps = list(enumerate(zip(*[split_steps(tf, p, int(x.shape[1])) for p in projections])))
    if cell.spec.go_backwards:
        steps = steps[::-1]
    h, outs = h0, []
    for t, xs in steps:
        h = cell.step(tf, xs, h, t if timed else None)
        outs.append(h)
    return outs, h


# Steps of every layer per WHILE iteration. Measured on GRU(64), 4 features, float32, batch 1 (CompiledModel with
# XNNPACK's weight cache; Interpreter): at 200 steps 1, 2, 4, 8, 16 steps per iteration gave -, 1.98, 1.63, 1.59,
# 1.66 µs/step (the unrolled graph 1.84) and files of 60, 64, 72, 103 KB; 4 is within 3% of the fastest and keeps the
# file near its weights (52.5 KB).
PER_ITERATION = 4


def why_unrolled(lowered, recipe=None) -> str | None:
    """Why this model (with this recipe) cannot run in a WHILE loop over time (None: it can)."""
    if lowered.form != "chain":
        return "the model is a graph, not a chain of GRU layers"
    if any(g.go_backwards for g in lowered.grus):
        return "a GRU runs backwards"
    if recipe is not None and recipe.float_fallback:
        return "float_fallback ranks ops with TensorFlow's quantization debugger, which does not look inside a loop"
    return None


def time_form(lowered, recipe) -> int:
    """Steps per iteration of the WHILE loop over time that ``recipe`` gives this model (0: every step in the
    graph). unroll = "auto" loops beyond recipes.LOOP_AFTER steps where the model can; unroll = false on a model
    that cannot is a ModelError. Fewer than two iterations' steps are always unrolled (run_loop does the same)."""
    from gru_edge.recipes import LOOP_AFTER

    why = why_unrolled(lowered, recipe)
    if recipe.unroll is False and why:
        raise ModelError(f"Recipe '{recipe.name}' asks for a loop over time (unroll = false), but {why}; use "
                         "unroll = \"auto\" or true.")
    if (recipe.unroll is True or why or lowered.steps < 2 * PER_ITERATION
            or (recipe.unroll == "auto" and lowered.steps <= LOOP_AFTER)):
        return 0
    return PER_ITERATION


def run_loop(tf, cells: list, x, per_iteration: int):
    """Run a chain of forward GRU layers over ``x`` [B, T, F] in a WHILE loop, ``per_iteration`` steps of every layer
    per iteration (the first T % per_iteration steps before the loop): each weight is stored once, and the graph's
    size does not depend on T. Returns the last layer's last state [B, 1, U]."""
    b, t_total, f = (int(d) for d in x.shape)
    k = min(per_iteration, t_total)
    head = t_total % k

    def block(xb, states, timed=True):
        new = []
        for cell, h in zip(cells, states):
            outs, h = run_gru(tf, cell, xb, h, timed)
            new.append(h)
            xb = join_steps(tf, cell, outs) if cell.spec.return_sequences else h
        return new

    n = (t_total - head) // k
    if n < 2:  # nothing to loop over
        return block(x, [None] * len(cells))[-1]
    states = [tf.zeros([b, 1, c.u]) for c in cells]
    if head:
        with tf.name_scope(names.scope(cells[0].spec.name, "steps")):
            first, x = tf.split(x, [head, t_total - head], axis=1)
        states = block(first, [None] * len(cells))

    # The sequence passes through the loop unchanged and each iteration slices its k steps. It passes as int32 bits:
    # TensorFlow's calibrator logs every float output of WHILE, and WHILE frees the output of a variable that passes
    # through unchanged, so a float one crashes int8 and int16x8 calibration (tensorflow/tensorflow#75140). Turning
    # the float sequence by k steps each iteration instead cost O(T) per iteration: 6.2 µs per step at T=5000 against
    # 1.8 at T=200.
    with tf.name_scope(names.scope(cells[0].spec.name, "steps")):
        bits = tf.bitcast(x, tf.int32)

    def body(i, xs, *states):
        with tf.name_scope(names.scope(cells[0].spec.name, "steps")):
            xb = tf.bitcast(tf.slice(xs, tf.stack([0, i * k, 0]), [b, k, f]), tf.float32)
        return (i + 1, xs, *block(xb, list(states), timed=False))

    return tf.while_loop(lambda i, *_: i < n, body, (tf.constant(0), bits, *states))[-1]


def join_steps(tf, cell: Cell, outs: list):
    """A GRU layer's returned sequence: its states joined in time (concat_steps)."""
    with cell.scope(tf, "steps"):
        return concat_steps(tf, outs)


def build_functions(lowered: LoweredModel, batch_size: int, streaming: bool = False, integer: bool = False,
                    loop: int = 0) -> dict:
    """Return ``{signature key: tf.function}``: the full sequence, and the one-step ``step`` when streaming.

    ``integer``: arrange the graph for full-integer quantization (no per-step bias on the state projection).
    ``loop``: steps of every layer per iteration of a WHILE loop over time (run_loop, time_form); 0: unrolled.
    """
    import tensorflow as tf

    acts = activations(tf)
    b, f = batch_size, lowered.features
    fr = lowered.framing
    cells = [Cell(tf, s, acts, integer) if isinstance(s, GruSpec) else None for s in lowered.layers]
    dense = [(s.name, tf.constant(s.kernel), tf.constant(s.bias), acts[s.activation])
             for s in lowered.layers if isinstance(s, DenseSpec)]

    def head(h):
        x = tf.reshape(h, [b, h.shape[-1]])
        for name, kernel, bias, act in dense:
            with tf.name_scope(names.scope(name, "head")):
                x = act(tf.matmul(x, kernel) + bias)
        return x

    def forward(sequence):
        lx = None if fr is None else raw_ops.log_target(tf, fr, sequence)
        x = sequence if fr is None else raw_ops.frame(tf, fr, lx)
        grus = [c for c in cells if c is not None]
        if loop:
            x = run_loop(tf, grus, x, loop)
        for cell in [] if loop else grus:
            outs, h = run_gru(tf, cell, x)
            x = join_steps(tf, cell, outs) if cell.spec.return_sequences else h
        out = head(x)
        if fr is not None and fr.target:
            with tf.name_scope(RAW):
                last = tf.reshape(lx[:, fr.window:], [b, fr.lag * f]) if fr.lag else None
            out = raw_ops.unframe(tf, fr, out, last)
        return {lowered.output_name: out}

    forward.__name__ = SERVE  # the converter names each signature after its function
    functions = {SERVE: tf.function(forward, autograph=False, input_signature=[
        tf.TensorSpec([b, lowered.time_steps, f], tf.float32, name=lowered.input_name)])}
    if streaming:
        grus = [c for c in cells if c is not None]
        backwards = [c.spec.name for c in grus if c.spec.go_backwards]
        if backwards:
            raise ModelError(f"Streaming needs every GRU to run forwards; layer(s) {', '.join(backwards)} use "
                             "go_backwards=True. Turn streaming off in the recipe.")
        state_names = lowered.state_names()
        lag = fr.lag if fr is not None else 0

        def step(frame, *states):
            new, gate, last = {}, None, None
            if fr is None:
                x = tf.reshape(frame, [b, 1, f])
            else:
                x, gate, last, new = raw_ops.frame_step(tf, fr, frame, states[len(grus):], b)
            for name, cell, state in zip(state_names, grus, states):
                h = tf.reshape(state, [b, 1, cell.u])
                x = cell.step(tf, cell.project(tf, x), h)
                if gate is not None:  # the first ``lag`` frames only fill the ring: the state stays
                    x = h + tf.reshape(gate, [b, 1, 1]) * (x - h)
                new[name] = tf.reshape(x, [b, cell.u])
            out = head(x)
            if fr is not None and fr.target:
                out = raw_ops.unframe(tf, fr, out, last)
            return {lowered.output_name: out, **{names.state_out(k): v for k, v in new.items()}}

        ring = [(RING, [b, lag + 1, f]), (COUNT, [b, 1])] if lag else []
        specs = [tf.TensorSpec([b, f], tf.float32, name=FRAME)] + [
            tf.TensorSpec([b, c.u], tf.float32, name=n) for n, c in zip(state_names, grus)] + [
            tf.TensorSpec(shape, tf.float32, name=n) for n, shape in ring]
        functions[STEP] = tf.function(step, autograph=False, input_signature=specs)
    return functions
