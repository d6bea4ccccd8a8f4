"""Desktop parity: run the Keras original and the ``.tflite`` on the same sample sequences, compare, write a bundle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gru_edge import data, model as model_mod, parity, recipes
from gru_edge.convert import load_sidecar
from gru_edge.errors import ParityError
from gru_edge.runtime import Runner

GENERATED_SAMPLES = 32


@dataclass(frozen=True)
class Samples:
    inputs: np.ndarray  # [N, T, F]
    targets: np.ndarray | None  # [N, O], NaN for rows without ground truth
    kinds: dict[str, int]
    source: str


@dataclass(frozen=True)
class VerifyResult:
    report: parity.ParityReport
    recipe: str
    samples: Samples
    bundle: Path | None

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "sample_source": self.samples.source, "sample_kinds": self.samples.kinds,
                "bundle": str(self.bundle) if self.bundle else None, **self.report.to_dict()}


def make_samples(model_path: Path, card: dict | None, time_steps: int, features: int, outputs: int,
                 seed: int = 0) -> Samples:
    """Held-out windows from the training card plus edge cases; generated sequences when there is no card."""
    if card is not None:
        win = model_mod.load_windows(model_path, card)
        base, targets = win["test_x"], win["test_y"]
        if card["task"]["kind"] == "classification":  # class indices -> one-hot, shaped like the outputs
            targets = np.eye(outputs, dtype=np.float32)[targets[:, 0].astype(np.int64)]
        lo, hi = card["input_range"]["min"], card["input_range"]["max"]
        source, first = "training card: held-out windows + edge cases", "heldout"
    else:
        rng = np.random.default_rng(seed)
        base = rng.standard_normal((GENERATED_SAMPLES, time_steps, features)).astype(np.float32)
        targets, lo, hi = None, -2.0, 2.0
        source, first = "generated: no training card beside the model, random normal sequences + edge cases", \
            "generated"
    edges = data.edge_cases(time_steps, features, lo, hi)
    inputs = np.concatenate([base.astype(np.float32), edges])
    kinds = {first: len(base), **{name: 1 for name in data.EDGE_CASES}}
    if targets is not None:
        targets = np.concatenate([targets, np.full((len(edges), outputs), np.nan, np.float32)]).astype(np.float32)
    return Samples(inputs, targets, kinds, source)


def tolerances_for(tflite_path: Path, recipe_name: str | None) -> tuple[recipes.Tolerances, str, list[str]]:
    if recipe_name:
        r = recipes.load(recipe_name)
        return r.verify, r.name, []
    sidecar = load_sidecar(tflite_path)
    if sidecar:
        return recipes.Tolerances(**sidecar["recipe"]["verify"]), sidecar["recipe"]["name"], []
    r = recipes.load("float32")
    return r.verify, "unknown", [f"no sidecar beside {tflite_path.name}: using the float32 recipe's tolerances "
                                 "(pass --recipe to choose)"]


def gpu_precision(tflite_path: Path) -> str:
    """The GPU precision the model's recipe asks for (fp16 when it names none: the GPU default)."""
    sidecar = load_sidecar(tflite_path)
    gpu = (sidecar or {}).get("gpu") or {}
    return gpu.get("precision", "fp16")


def verify(keras_path: Path, tflite_path: Path, bundle_dir: Path | None = None,
           recipe_name: str | None = None, accelerator: str = "cpu", keras_model=None) -> VerifyResult:
    """Compare ``tflite_path`` against the Keras model on held-out windows and edge cases.

    ``keras_model``: the model at ``keras_path`` already loaded, when one caller verifies several conversions.
    """
    keras_path, tflite_path = Path(keras_path), Path(tflite_path)
    if not tflite_path.is_file():
        raise ParityError(f"TFLite file not found: {tflite_path}.")
    tol, recipe, notes = tolerances_for(tflite_path, recipe_name)
    runner = Runner(tflite_path)
    keras_model = keras_model or model_mod.load_model(keras_path)
    _, t, f = keras_model.inputs[0].shape
    o = int(keras_model.outputs[0].shape[-1])
    if tuple(runner.input_shape[1:]) != (t, f):
        raise ParityError(f"{tflite_path.name} takes input {list(runner.input_shape)} but {keras_path.name} takes "
                          f"[N, {t}, {f}]: they are not the same model. Convert {keras_path.name} again.")
    card = model_mod.load_card(keras_path)
    samples = make_samples(keras_path, card, int(t), int(f), o)
    expected_arr = np.asarray(keras_model(samples.inputs, training=False), np.float32)
    actual = runner.run(samples.inputs)
    if len(runner.output_names) != 1 or actual[runner.output_names[0]].shape != expected_arr.shape:
        shapes = {k: list(v.shape) for k, v in actual.items()}
        raise ParityError(f"{tflite_path.name} outputs {shapes} but {keras_path.name} outputs "
                          f"{list(expected_arr.shape)}: they are not the same model.")
    out_name = runner.output_names[0]
    expected = {out_name: expected_arr}
    task = None
    if card is not None and card["task"]["kind"] == "classification":
        task = parity.Task("classification", "accuracy", 1.0, 0.0, "fraction of held-out windows")
    elif card is not None:
        tr = card["transform"]
        task = parity.Task(card["task"]["kind"], card["task"]["metric"], tr["std"], tr["mean"],
                           f"target after transform '{tr['spec']}'")
    if samples.source.startswith("generated"):
        notes.append(samples.source)
    if accelerator == "gpu":
        report = parity.on_accelerator((expected, tol, samples.targets, task), tflite_path, samples.inputs,
                                       gpu_precision(tflite_path)).with_notes(notes)
        return VerifyResult(report, recipe, samples, None)
    report = parity.compare(expected, actual, tol, samples.targets, task)
    stepped = runner.run_steps(samples.inputs) if runner.has_step else None
    report = parity.check_streaming(report, stepped, expected, actual).with_notes(notes)
    written = None
    if bundle_dir is not None:
        written = parity.write_bundle(bundle_dir, tflite_path, recipe, runner.signature, runner.input_name,
                                      samples.inputs, expected, tol, samples.kinds, samples.source,
                                      samples.targets if task else None, task,
                                      report.task.reference if report.task else None,
                                      (load_sidecar(tflite_path) or {}).get("gpu"))
    return VerifyResult(report, recipe, samples, written)
