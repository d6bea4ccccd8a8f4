"""The child process that runs TensorFlow's converter, so a converter crash cannot take the caller down with it.

Protocol: ``python -m gru_edge.convert_worker REQUEST.json``. The request names the model, the recipes and a scratch
folder. For each recipe the worker prints one JSON line ``{"recipe", "event": "start"}`` before converting, then
``{"recipe", "event": "done", "file", "seconds", "calibration_samples"}`` or ``{"event": "error", "kind",
"message"}`` (kind: the gru_edge.errors class).
A line missing after "start" means the converter killed the process.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from gru_edge import arrays, data, graph, loop_int16, lowering, names, runs
from gru_edge.errors import ConversionError, GruEdgeError
from gru_edge.io import quiet_tensorflow
from gru_edge.recipes import LOOP_AFTER, Recipe


def _emit(**event) -> None:
    print(json.dumps(event), flush=True)


def _converter(tf, keras_model, lowered, recipe: Recipe, loop: int = 0):
    """Return a TFLiteConverter for the recipe's graph (gru-edge's lowering, or Keras' own WHILE loop) and gru-edge's
    functions by signature key (none for Keras'). ``loop``: steps per iteration of gru-edge's loop over time
    (lowering.time_form), 0: unrolled. Keras' layers unroll unless the recipe says unroll = false ("auto" is about
    gru-edge's lowering)."""
    b = recipe.batch_size
    unroll = recipe.unroll is not False
    if recipe.lowering == "keras" and isinstance(lowered, graph.GraphModel):
        import keras

        # TensorFlow's plain path on the whole graph: its WHILE loops, or Keras' own unroll.
        plain = keras.models.clone_model(keras_model, clone_function=lambda layer: layer.__class__.from_config(
            _unrolled(layer.get_config(), unroll)))
        plain.set_weights(keras_model.get_weights())
        return tf.lite.TFLiteConverter.from_keras_model(plain), {}
    if recipe.lowering == "keras":
        import keras

        # TensorFlow's plain path, kept for comparison: a WHILE loop, or Keras' own unroll (weights copied per
        # step). Same weights and a fixed batch, like gru-edge's lowering.
        inputs = keras.Input((lowered.time_steps, lowered.features), batch_size=b, name=lowered.input_name)
        x = inputs
        for layer in keras_model.layers:
            if type(layer).__name__ == "InputLayer":
                continue
            cfg = layer.get_config()
            if type(layer).__name__ == "GRU":
                cfg["unroll"] = unroll
            clone = type(layer).from_config(cfg)
            x = clone([x, inputs]) if type(layer).__name__ == "Unframe" else clone(x)
            clone.set_weights(layer.get_weights())
        fixed = keras.Model(inputs, {lowered.output_name: x})
        return tf.lite.TFLiteConverter.from_keras_model(fixed), {}
    # Measured on R2: for int16x8 the unfused candidate bias gives 128 KiB instead of 156 KiB and 66 dB instead of
    # 42 dB PSNR; for int8 it saves 5% of the file but costs 14% in latency, so int8 keeps the fused bias.
    integer = recipe.quantization == "int16x8"
    functions = (graph.build_function(lowered, b, integer) if isinstance(lowered, graph.GraphModel) else
                 lowering.build_functions(lowered, b, streaming=recipe.streaming and streams(lowered),
                                          integer=integer, loop=loop))
    holder = tf.Module()  # the converter writes a signature for each function this object tracks
    for key, fn in functions.items():
        setattr(holder, key, fn)
    return tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function() for fn in functions.values()],
                                                           holder), functions


def _unrolled(cfg, unroll: bool):
    """A layer config with every recurrent layer's ``unroll`` set (Bidirectional's inner layers too)."""
    if isinstance(cfg, dict):
        return {k: unroll if k == "unroll" else _unrolled(v, unroll) for k, v in cfg.items()}
    return [_unrolled(v, unroll) for v in cfg] if isinstance(cfg, list) else cfg


def streams(lowered) -> bool:
    """Whether the model can get a one-step ``step`` signature: a chain of GRUs that all run forwards."""
    return not isinstance(lowered, graph.GraphModel) and not any(g.go_backwards for g in lowered.grus)


def notes_for(lowered, recipe: Recipe) -> list[str]:
    """What the recipe asks and this model cannot have (the model is still made)."""
    notes = []
    if recipe.streaming and not streams(lowered):
        why = lowering.why_unrolled(lowered)
        notes.append(f"no streaming 'step' signature: {why}, so the state after each step is not the model's state")
    if recipe.lowering == "gru-edge" and lowered.steps > LOOP_AFTER and not lowering.time_form(lowered, recipe):
        why = lowering.why_unrolled(lowered, recipe) or "the recipe says unroll = true"
        notes.append(f"unrolled although the window has {lowered.steps} steps ({why}): the file and the conversion "
                     "time grow with the window")
    return notes


# A recipe's calibration_size counts windows of up to CALIBRATION_STEPS time steps: longer windows are fewer, down to
# MIN_CALIBRATION_WINDOWS. The calibrator's time grows with the steps it runs (int8, GRU(64): ~20 µs per step, so
# 200 windows of 5000 steps would take 20 s, 200 of 50 take 0.2 s), and one long window's states cover ranges that
# many short ones would; fewer distinct windows than that cost accuracy (int8, T=1000, sine windows of 64 different
# rhythms: max error 0.168 with 10 windows, 0.008 with 20 and 0.007 with 48).
CALIBRATION_STEPS = 50
MIN_CALIBRATION_WINDOWS = 32


def calibration_windows(recipe: Recipe, steps: int) -> int:
    """How many training windows of ``steps`` time steps a recipe calibrates on (before the edge cases)."""
    budget = recipe.calibration_size * CALIBRATION_STEPS // max(1, steps)
    return min(recipe.calibration_size, max(MIN_CALIBRATION_WINDOWS, budget))


def _calibration(recipe: Recipe, windows: np.ndarray | None, input_range: tuple[float, float] | None,
                 seed: int = 0, lag: int = 0) -> np.ndarray:
    """Shuffled training windows (calibration_windows) plus the edge cases of the training range (so saturating
    inputs do not clip).
    For a differencing model (``lag``) in int8 only the constant ones: a step across the whole range is a difference
    ~10x larger than any in the data, and calibrating on it costs the core that much int8 resolution (the trend
    test's int8 RMSE: +8.2% with it); int16 has the resolution to spare (the airline's int16x8 model clipped the
    step by 43.6 passengers without it)."""
    if windows is None or len(windows) == 0:
        raise ConversionError(f"Recipe '{recipe.name}' ({recipe.quantization}) needs calibration data: the training "
                              "windows (windows.npz beside the model, written by 'gru-edge train').")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(windows))
    n = min(calibration_windows(recipe, windows.shape[1]), len(windows))
    picked = windows[order[:n]]
    if input_range is None:
        return picked
    edges = data.edge_windows(windows.shape[1:], *input_range)
    return np.concatenate([picked, edges[:2] if lag and recipe.quantization == "int8" else edges])


# int16x8 quantizes the raw-valued ops too, so their calibrated ranges decide which levels the model can read: the
# widest of these margins (times the training levels, above and below) whose model still matches Keras on the
# training windows and the range's edge cases is kept. Measured: lynx (values 39-6991, log,diff1) loses its small
# values at 2x and more (the int16 LOG over a wider range: train_min forecast 573 instead of 34; 4x: +4.4% RMSE,
# 23 dB) and holds at 1.5x (+0.01%, 53.5 dB); JohnsonJohnson's held-out forecasts reach 1.7x its training maximum
# and clip at 1.5x (-11% RMSE) but hold at 2x and 4x.
DRIFTS = (4.0, 2.0, 1.5, 1.0)


def _drifted(cal: np.ndarray, fr, drift: float) -> np.ndarray:
    """The windows plus copies with the target's level moved (x drift and / drift on the log, by drift times the
    training range otherwise). Differencing makes the core's inputs the same for these copies, so only the raw
    ranges widen."""
    if drift == 1.0:
        return cal
    target = cal[:, :, 0]
    span = float(target.max() - target.min()) or 1.0
    copies = []
    for moved in ([target * drift, target / drift] if fr.log else [target + drift * span, target - drift * span]):
        copies.append(cal.copy())
        copies[-1][:, :, 0] = moved
    return np.concatenate([cal, *copies]).astype(np.float32)


def _int16_headroom(tf, conv, keras_model, lowered, recipe: Recipe, cal: np.ndarray,
                    make) -> tuple[bytes, int, float]:
    """int16x8 for a differencing model: the widest DRIFTS margin whose model holds on ``cal`` within the recipe's
    verify limits (the narrowest otherwise; verify judges it)."""
    from gru_edge import parity, runtime

    expected = {lowered.output_name: graph.predict(keras_model, cal)}
    for drift in DRIFTS:
        wide = _drifted(cal, lowered.framing, drift)
        _feed(tf, conv, lowered, recipe, wide, None)
        payload = make()
        if drift == DRIFTS[-1] or parity.compare(expected, runtime.Runner(payload).run(cal), recipe.verify).passed:
            return payload, len(wide), drift


def _feed(tf, conv, lowered, recipe: Recipe, cal: np.ndarray, step) -> None:
    """Set the converter's representative dataset: ``cal`` in batches of the recipe's size, and for a streaming
    model (``step``: its step function) the frames its step graph sees on them."""
    b = recipe.batch_size
    chunks = [np.concatenate([cal[i: i + b], cal[: max(0, i + b - len(cal))]]).astype(np.float32)
              for i in range(0, len(cal), b)]  # the last batch padded by repeating windows: shapes are static
    steps = _step_samples(tf, lowered, step, chunks) if step is not None else []

    def representative():
        for chunk in chunks:
            yield (names.SERVE, {lowered.input_name: chunk}) if steps else [chunk]
        yield from ((names.STEP, feed) for feed in steps)

    conv.representative_dataset = representative


def _check_finite(keras_model, cal: np.ndarray, recipe: Recipe) -> None:
    """Refuse to calibrate on windows the model maps to NaN or Inf: the quantization ranges would be NaN, and a
    model with NaN scales crashes LiteRT when it loads."""
    out = graph.predict(keras_model, cal)
    bad = int((~np.isfinite(out)).any(axis=tuple(range(1, out.ndim))).sum())
    if bad:
        raise ConversionError(f"Recipe '{recipe.name}' ({recipe.quantization}): the model's outputs are NaN or "
                              f"infinite on {bad} of the {len(cal)} calibration windows (the training windows and "
                              "the edge cases of their range), so they cannot be quantized. Use a float recipe, or "
                              "a model whose outputs stay finite (e.g. bounded GRU activations).")


def _step_samples(tf, lowered, step, chunks: list[np.ndarray]) -> list[dict]:
    """The inputs the ``step`` function meets when the calibration windows are fed one step at a time (frame and
    the states so far), so that a streaming integer model calibrates its step graph too."""
    specs = step.input_signature[1:]  # after the frame: every state, zeros to start
    feeds = []
    for chunk in chunks:
        states = {s.name: np.zeros(s.shape, np.float32) for s in specs}
        for t in range(lowered.time_steps):
            feed = {names.FRAME: chunk[:, t], **states}
            feeds.append(feed)
            out = step(tf.constant(feed[names.FRAME]), *[tf.constant(states[s.name]) for s in specs])
            states = {n: out[names.state_out(n)].numpy() for n in states}
    return feeds


def convert_one(tf, keras_model, lowered, recipe: Recipe, train_x: np.ndarray | None,
                input_range: tuple[float, float] | None = None) -> tuple[bytes, dict]:
    """The converted model and what its graph and calibration are: ``loop_steps`` (lowering.time_form),
    ``calibration_samples`` and, for int16x8 on a differencing model, ``level_margin`` (see DRIFTS)."""
    graph.check_recipe(lowered, recipe.quantization)
    loop = lowering.time_form(lowered, recipe) if recipe.lowering == "gru-edge" else 0
    conv, functions = _converter(tf, keras_model, lowered, recipe, loop)
    # Builtin ops only: SELECT_TF_OPS (Flex) is never enabled, whatever the recipe says.
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    n_cal = 0
    q = recipe.quantization
    if q != "float32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if q == "float16":
        conv.target_spec.supported_types = [tf.float16]
    cal = None
    if recipe.needs_calibration:
        cal = _calibration(recipe, train_x, input_range, lag=lowered.framing.lag if lowered.framing else 0)
        n_cal = len(cal)
        _check_finite(keras_model, cal, recipe)
        # A streaming int8 model calibrates its `step` graph too (else it stays float, with a float copy of every
        # weight). int16x8 cannot stream (the recipe check refuses it): calibrating both signatures breaks the
        # converter's int16x8 output (R2: PSNR 12 dB on the full sequence), and without it the converter stops.
        _feed(tf, conv, lowered, recipe, cal, functions.get(names.STEP))
        conv.inference_input_type = tf.float32
        conv.inference_output_type = tf.float32
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8 if q == "int8" else
                                          tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    make = conv.convert if not (loop and q == "int16x8") else lambda: loop_int16.convert(tf, conv)
    try:
        if q == "int16x8" and lowered.framing is not None and lowered.framing.lag:
            payload, wide, drift = _int16_headroom(tf, conv, keras_model, lowered, recipe, cal, make)
            return payload, {"calibration_samples": wide, "level_margin": drift, "loop_steps": loop}
        about = {"calibration_samples": n_cal, "loop_steps": loop}
        if q != "int8" or (lowered.framing is None and recipe.float_fallback == 0):
            return make(), about
        calibrated = _calibrated(conv)  # once: it names the raw ops, and is what the quantizer quantizes
        raw = _raw_nodes(calibrated) if lowered.framing else []
        if recipe.float_fallback > 0:
            return _selective(tf, conv, calibrated, cal, recipe.float_fallback, raw), about
        return _quantize_except(conv, calibrated, raw), about
    except GruEdgeError:
        raise
    except Exception as e:
        text = str(e)
        flex = sorted(set(re.findall(r"\btf\.([A-Za-z0-9_]+)", text)))
        if flex:
            raise ConversionError(f"Recipe '{recipe.name}': the graph needs TensorFlow ops that are not TFLite "
                                  f"builtins ({', '.join(flex)}); gru-edge never enables Flex (SELECT_TF_OPS). "
                                  "Use lowering = \"gru-edge\" (the default).") from None
        first = next((line.strip() for line in text.splitlines() if "error" in line.lower()), text.strip()[:300])
        raise ConversionError(f"Recipe '{recipe.name}': the TFLite converter failed: {first[:300]}") from None


def op_errors(tf, conv, calibrated: bytes, windows: np.ndarray, raw: list[str] | None = None) -> list[dict]:
    """Every quantized op with its error against float, worst first (rmse / scale: error in quantization steps);
    ``raw``: ops kept in float anyway. TensorFlow's quantization debugger runs a copy of the quantized model whose
    ops each compare their output with float; it is quantized here from the ``calibrated`` model the caller already
    has (the debugger would calibrate the model again)."""
    import csv
    import io

    debug_model = _quantize_except(conv, calibrated, raw or [], numeric_verify=True)
    data = lambda: ([windows[i: i + 1].astype(np.float32)] for i in range(len(windows)))  # noqa: E731
    debugger = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=debug_model, debug_dataset=data)
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(r["scale"] or 0) or 1.0
        rows.append({"op": r["op_name"], "tensor": r["tensor_name"], "rmse_over_scale":
                     float(np.sqrt(float(r["mean_squared_error"]))) / scale,
                     "mean_squared_error": float(r["mean_squared_error"]),
                     "max_abs_error": float(r["max_abs_error"])})
    return sorted(rows, key=lambda r: (-r["rmse_over_scale"], r["tensor"]))


def _selective(tf, conv, calibrated: bytes, windows: np.ndarray, share: float, raw: list[str]) -> bytes:
    """Keep the ``share`` of quantized ops with the largest error in float (and the ``raw`` ones); quantize the
    rest."""
    ranked = op_errors(tf, conv, calibrated, windows, raw)
    keep = [r["tensor"] for r in ranked[: max(1, round(share * len(ranked)))]]
    return _quantize_except(conv, calibrated, keep + raw)


_RAW_NAME = re.compile(rf"(^|;){names.RAW}(_\d+)?/")


def explain_rows(tf, keras_model, lowered, recipe: Recipe, train_x, input_range) -> list[dict]:
    """``verify --explain``: op_errors of the int8 graph, calibrated as convert calibrates it; always the unrolled
    graph, whose ops are the loop's, step by step (TensorFlow's debugger compares the main graph's ops only)."""
    conv, _ = _converter(tf, keras_model, lowered, recipe)  # unrolled: the debugger does not look inside a WHILE
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    cal = _calibration(recipe, train_x, input_range, lag=lowered.framing.lag if lowered.framing else 0)
    conv.representative_dataset = lambda: ([cal[i: i + 1]] for i in range(len(cal)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.float32
    calibrated = _calibrated(conv)
    return op_errors(tf, conv, calibrated, cal, _raw_nodes(calibrated) if lowered.framing else None)


def scope_layers(keras_model, lowered) -> dict[str, str]:
    """Name scope -> layer name for every layer an op of the converted graph may be named after (gru_edge.names):
    the Keras layers, and the GRU cells and Dense heads the lowering names (a Bidirectional's two directions as
    LAYER.forward and LAYER.backward)."""
    if lowered.form == "chain":
        specs = lowered.layers
        last = specs[-1]
        if lowered.framing is not None and lowered.framing.target:
            output = names.RAW
        elif isinstance(last, lowering.GruSpec):  # a chain that ends in its last GRU's state
            output = names.scope(last.name, "update", 0 if last.go_backwards else lowered.steps - 1)
        else:
            output = names.scope(last.name, "head")
    else:
        specs = [s for v in lowered.specs.values() for s in (v if isinstance(v, tuple) else (v,))]
        output = names.scope_layer(keras_model.outputs[0]._keras_history[0].name)
    return {names.scope_layer(n): n for n in [layer.name for layer in graph.all_layers(keras_model)]
            + [s.name for s in specs]} | {names.OUTPUT: output}


def _calibrated(conv) -> bytes:
    """The float model with the calibration statistics (the converter's first half of full-integer quantization)."""
    import copy

    probe = copy.copy(conv)
    probe._experimental_calibrate_only = True
    return probe.convert()


def _raw_nodes(calibrated: bytes) -> list[str]:
    """The output tensors of the ops that compute on raw values or their log (names.RAW), and of the ops that
    return the forecast in the data's units: int8 keeps them in float, so that a series that drifts beyond its
    training range is not clipped. Read from the calibrated float model, every signature's subgraph."""
    from ai_edge_litert import schema_py_generated as schema

    found = []
    for sg in schema.ModelT.InitFromPackedBuf(calibrated, 0).subgraphs:
        tensor = [t.name.decode() if isinstance(t.name, bytes) else (t.name or "") for t in sg.tensors]
        outputs = {int(i) for i in sg.outputs}
        for op in sg.operators or []:
            raw_input = any(_RAW_NAME.search(tensor[j]) for j in op.inputs if j >= 0)
            found += [tensor[i] for i in op.outputs
                      if _RAW_NAME.search(tensor[i]) or (int(i) in outputs and raw_input)]
    return found


def _quantize_except(conv, calibrated: bytes, nodes: list[str], numeric_verify: bool = False) -> bytes:
    """The second half of the converter's int8 quantization (TensorFlow's MLIR quantizer), with ``nodes`` left in
    float; ``numeric_verify``: the debugger's copy, each quantized op followed by its comparison with float."""
    from tensorflow.lite.python import convert

    return convert.mlir_quantize(calibrated, disable_per_channel=conv._experimental_disable_per_channel,
                                 enable_numeric_verify=numeric_verify, denylisted_nodes=nodes or None)


def main(request_path: str) -> int:
    req = json.loads(Path(request_path).read_text())
    out_dir = Path(req["scratch"])
    try:
        with quiet_tensorflow():
            import tensorflow as tf
        original = runs.load_model(Path(req["model"]))
        keras_model, policy_note = graph.float32_twin(original)
        lowered = graph.lower(keras_model)
        train_x = None
        input_range = tuple(req["input_range"]) if req.get("input_range") else None
        if req.get("windows"):
            with np.load(req["windows"]) as z:
                train_x = z["train_x"]
            where = req.get("windows_source") or "the calibration data"
            train_x = arrays.as_windows(train_x, lowered.input_shape, "calibration windows", where)
            arrays.check_tokens(train_x, graph.vocabulary(keras_model), "calibration windows", where)
            if input_range is None:  # the user's own windows: the edge cases of their range, per feature
                input_range = tuple(v.tolist() for v in arrays.value_range(train_x))
    except GruEdgeError as e:
        _emit(event="error", kind=type(e).__name__, message=str(e))
        return 3
    _emit(event="model", form="graph" if isinstance(lowered, graph.GraphModel) else "chain",
          weights_sha256=runs.fingerprint(original), notes=[policy_note] if policy_note else [])
    failed = False
    for raw in req["recipes"]:
        recipe = Recipe.from_dict(raw)
        _emit(recipe=recipe.name, event="start")
        started = time.perf_counter()
        try:
            payload, calibration = convert_one(tf, keras_model, lowered, recipe, train_x, input_range)
            path = out_dir / f"{recipe.name}.tflite"
            path.write_bytes(payload)
        except GruEdgeError as e:  # this recipe cannot be made: say why, go on with the others
            _emit(recipe=recipe.name, event="error", kind=type(e).__name__, message=str(e))
            failed = True
            continue
        except Exception as e:  # tracing the graph or calibrating it failed (TensorFlow's errors are many)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            _emit(recipe=recipe.name, event="error", kind="ConversionError",
                  message=f"Recipe '{recipe.name}': the model could not be lowered or calibrated "
                          f"({type(e).__name__}: {first[:240]})")
            failed = True
            continue
        except OSError as e:
            _emit(recipe=recipe.name, event="error", kind="OutputError",
                  message=f"Cannot write the converted model ({e.strerror}); nothing was written.")
            return 3
        _emit(recipe=recipe.name, event="done", file=str(path), seconds=round(time.perf_counter() - started, 3),
              notes=notes_for(lowered, recipe), **calibration)
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
