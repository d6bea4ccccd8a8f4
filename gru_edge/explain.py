"""``verify --explain``: where int8 quantization bends a model, in the model's words. TensorFlow only inside
``rank``, which runs TensorFlow's quantization debugger in the process that has already loaded the Keras model.

Each quantized op is ranked by its error against float in quantization steps (rmse / scale) and named by the layer,
gate (update+reset, reset, candidate, update; steps for the SPLITs and CONCATENATIONs between steps; head) and
input time step it computes, read from the name scopes the lowering gives its ops (gru_edge.names). Ops TensorFlow
converts from other Keras layers are named by their layer; the framing's ops on raw values stay in float and are
not ranked.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gru_edge import names
from gru_edge.errors import ConversionError, GruEdgeError
from gru_edge.recipes import Recipe


@dataclass(frozen=True)
class OpError:
    op: str  # the TFLite op
    tensor: str  # its output tensor (the converter's name)
    layer: str | None
    gate: str | None  # names.GATES, None outside a GRU step and head
    t: int | None  # the input time index the op's step reads (0: the window's oldest), None: every step at once
    rmse_over_scale: float
    max_abs_error: float

    @property
    def where(self) -> str:
        """"gru update t=3", "gru candidate all steps" (the input projection), "dense head", "conv1d"."""
        when = f"t={self.t}" if self.t is not None else "all steps" if self.gate not in (None, "head") else ""
        parts = [self.layer or "unnamed op", self.gate or "", when]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class LayerError:
    layer: str
    ops: int
    mean: float  # mean rmse / scale over the layer's ops
    worst: OpError
    gates: dict[str, float]  # gate -> mean rmse / scale over its ops, worst first


@dataclass(frozen=True)
class Explanation:
    recipe: str
    layers: tuple[LayerError, ...]  # worst layer first
    ops: tuple[OpError, ...]  # worst op first
    seconds: float

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "seconds": self.seconds,
                "layers": [{**asdict(x), "worst": asdict(x.worst)} for x in self.layers],
                "ops": [asdict(o) for o in self.ops]}


def check_recipe(recipe: Recipe) -> None:
    """ConversionError unless ``recipe`` makes a full-integer int8 model (what the debugger ranks)."""
    if recipe.quantization != "int8":
        raise ConversionError(f"--explain ranks the ops of full-integer int8 models; recipe '{recipe.name}' is "
                              f"{recipe.quantization} (TensorFlow's quantization debugger handles int8 only).")


def described_recipe(tflite_path: Path, described) -> Recipe:
    """The recipe ``tflite_path`` was converted with (its description), checked to be one --explain ranks."""
    if described is None:
        raise ConversionError(f"--explain needs a model converted by gru-edge: {Path(tflite_path).name} has no "
                              "description naming its recipe. Convert it with 'gru-edge convert'.")
    try:
        recipe = Recipe.from_dict(described.recipe)
    except (KeyError, TypeError, ValueError) as e:
        raise ConversionError(f"{Path(tflite_path).name}'s description holds no recipe gru-edge can read ({e}); "
                              "convert the model again.") from None
    check_recipe(recipe)
    return recipe


def rank(keras_model, recipe: Recipe, windows: np.ndarray, input_range: tuple, log=lambda m: None) -> Explanation:
    """Rank the quantized ops of ``recipe``'s graph of ``keras_model`` (a float32 model, already loaded, so
    TensorFlow is too), calibrated as convert calibrates it from ``windows`` and the edge cases of ``input_range``
    (per feature), and debugged on the same windows. TensorFlow's native log lines are held back."""
    from gru_edge import convert_worker, graph, lowering
    from gru_edge.io import native_stderr

    check_recipe(recipe)
    import tensorflow as tf

    lowered = graph.lower(keras_model)
    unrolled = (" on the unrolled graph (the model loops over time; the debugger does not look inside a WHILE loop)"
                if recipe.lowering == "gru-edge" and lowering.time_form(lowered, recipe) else "")
    log(f"ranking the quantized ops of recipe {recipe.name} with TensorFlow's quantization debugger "
        f"({len(windows)} windows){unrolled}")
    started = time.perf_counter()
    try:
        with native_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation, which the debugger uses
            rows = convert_worker.explain_rows(tf, keras_model, lowered, recipe, windows, input_range)
    except GruEdgeError:
        raise
    except Exception as e:  # TensorFlow's converter and debugger raise many types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConversionError(f"TensorFlow's quantization debugger could not rank recipe '{recipe.name}': "
                              f"{type(e).__name__}: {first[:240]}") from None
    return summarize(recipe.name, rows, convert_worker.scope_layers(keras_model, lowered),
                     round(time.perf_counter() - started, 2))


def explain(model_path: Path, tflite_path: Path, log=lambda m: None) -> Explanation:
    """Where int8 bends ``tflite_path`` (converted by gru-edge from ``model_path``): its recipe's quantized ops ranked
    on the training windows beside the model; ``verify(..., explain=True)``'s explanation."""
    from gru_edge.verification import verify

    return verify(model_path, tflite_path, explain=True, log=log).explanation


def summarize(recipe: str, rows: list[dict], layers: dict[str, str], seconds: float = 0.0) -> Explanation:
    """The debugger's rows (op, tensor, rmse_over_scale, max_abs_error) named by layer, gate and time step, worst
    first, with a summary per layer; ``layers``: name scope -> layer name."""
    ops = tuple(sorted((OpError(r["op"], r["tensor"], **names.read_scope(r["tensor"], layers),
                                rmse_over_scale=r["rmse_over_scale"], max_abs_error=r["max_abs_error"])
                        for r in rows), key=lambda o: (-o.rmse_over_scale, o.tensor)))
    by_layer: dict[str, list[OpError]] = {}
    for o in ops:
        by_layer.setdefault(o.layer or "unnamed ops", []).append(o)
    summary = []
    for layer, mine in by_layer.items():
        gates: dict[str, list[float]] = {}
        for o in mine:
            gates.setdefault(o.gate or "-", []).append(o.rmse_over_scale)
        means = {g: sum(v) / len(v) for g, v in gates.items()}
        summary.append(LayerError(layer, len(mine), sum(o.rmse_over_scale for o in mine) / len(mine), mine[0],
                                  dict(sorted(means.items(), key=lambda kv: -kv[1]))))
    return Explanation(recipe, tuple(sorted(summary, key=lambda x: -x.worst.rmse_over_scale)), ops, seconds)
