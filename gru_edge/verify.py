"""Desktop parity: run the Keras original and the ``.tflite`` on the same sample sequences, compare, write a bundle."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gru_edge import data, framing, outputs, parity, recipes, runs, tflite_model
from gru_edge.bundle import Task, write_bundle_files
from gru_edge.convert import load_sidecar
from gru_edge.errors import ParityError
from gru_edge.io import sha256_file
from gru_edge.runtime import run_isolated

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


def make_samples(model_path: Path, card: dict | None, time_steps: int, features: int, n_outputs: int,
                 seed: int = 0, framing_: framing.Framing | None = None) -> Samples:
    """Held-out windows from the training card plus edge cases; generated sequences when there is no card (in the
    model's own scale when it has a Frame layer: ``framing_``)."""
    if card is not None:
        win = runs.load_windows(model_path, card)
        base, targets = win["test_x"], win["test_y"]
        if card["task"]["kind"] == "classification":  # class indices -> one-hot, shaped like the outputs
            targets = np.eye(n_outputs, dtype=np.float32)[targets[:, 0].astype(np.int64)]
        lo, hi = card["input_range"]["min"], card["input_range"]["max"]
        source, first = "training card: held-out windows + edge cases", "heldout"
    else:
        rng = np.random.default_rng(seed)
        targets, source, first = None, "generated: no training card beside the model, random normal sequences" \
            f"{' mapped to raw values by its Frame layer' if framing_ else ''} + edge cases", "generated"
        if framing_ is None:
            base = rng.standard_normal((GENERATED_SAMPLES, time_steps, features)).astype(np.float32)
            lo, hi = -2.0, 2.0
        else:
            base = framing.raw_windows(framing_, rng.standard_normal((GENERATED_SAMPLES, framing_.window, features)))
            lo, hi = base.min(axis=(0, 1)), base.max(axis=(0, 1))
    edges = data.edge_cases(time_steps, features, lo, hi)
    inputs = np.concatenate([base.astype(np.float32), edges])
    kinds = {first: len(base), **{name: 1 for name in data.EDGE_CASES}}
    if targets is not None:
        targets = np.concatenate([targets, np.full((len(edges), n_outputs), np.nan, np.float32)]).astype(np.float32)
    return Samples(inputs, targets, kinds, source)


def tolerances_for(tflite_path: Path, sidecar: dict | None,
                   recipe_name: str | None) -> tuple[recipes.Tolerances, str, str, list[str]]:
    """The limits to apply: (tolerances, recipe name, where they came from, notes)."""
    if recipe_name:
        r = recipes.load(recipe_name)
        return r.verify, r.name, f"recipe {r.name}, given with --recipe", []
    if sidecar:
        try:
            r = recipes.Recipe.from_dict(sidecar["recipe"])
        except (TypeError, KeyError) as e:
            raise ParityError(f"The sidecar of {tflite_path.name} holds no recipe gru-edge can read ({e}); convert "
                              "the model again.") from None
        return r.verify, r.name, f"recipe {r.name}, named by the sidecar of {tflite_path.name}", \
            recipes.looser_than_shipped(r.name, r.verify, "the sidecar's")
    r = recipes.load("float32")
    return r.verify, "unknown", "recipe float32, the strictest shipped limits (no sidecar)", [
        f"no sidecar beside {tflite_path.name}: using the float32 recipe's tolerances (pass --recipe to choose)"]


def check_identity(keras_path: Path, tflite_path: Path, sidecar: dict | None) -> list[str]:
    """ParityError when the sidecar says ``tflite_path`` was converted from another model than ``keras_path``."""
    if sidecar is None:
        return [f"no sidecar beside {tflite_path.name}: gru-edge cannot confirm it was made from {keras_path.name}"]
    made_from = sidecar["source_model"]
    if made_from["sha256"] != sha256_file(keras_path):
        raise ParityError(f"{tflite_path} was converted from another model than {keras_path} (its sidecar names "
                          f"{made_from['path']}, sha256 {made_from['sha256'][:12]}…): comparing them says nothing. "
                          f"Verify it against that model, or convert {keras_path.name} again.")
    return []


def verify(keras_path: Path, tflite_path: Path, bundle_dir: Path | None = None,
           recipe_name: str | None = None, accelerator: str = "cpu", keras_model=None) -> VerifyResult:
    """Compare ``tflite_path`` against the Keras model on held-out windows and edge cases.

    ``keras_model``: the model at ``keras_path`` already loaded, when one caller verifies several conversions.
    The bundle folder, if asked for, is checked before the work and written whole at the end (gru_edge.outputs).
    """
    keras_path, tflite_path = Path(keras_path), Path(tflite_path)
    if not tflite_path.is_file():
        raise ParityError(f"TFLite file not found: {tflite_path}.")
    if not keras_path.is_file():
        raise ParityError(f"Model file not found: {keras_path}.")
    info = tflite_model.read(tflite_path)
    sidecar = load_sidecar(tflite_path)
    notes = check_identity(keras_path, tflite_path, sidecar)
    tol, recipe, source, more = tolerances_for(tflite_path, sidecar, recipe_name)
    notes += more
    with outputs.staged(bundle_dir, outputs.BUNDLE) if bundle_dir is not None else nullcontext() as stage:
        keras_model = keras_model or runs.load_model(keras_path)
        _, t, f = keras_model.inputs[0].shape
        o = int(keras_model.outputs[0].shape[-1])
        taken = [list(i.shape) for i in info.main_signature().inputs]
        if len(taken) != 1 or tuple(taken[0][1:]) != (t, f):
            raise ParityError(f"{tflite_path.name} takes input {' and '.join(map(str, taken)) or 'nothing'} but "
                              f"{keras_path.name} takes [N, {t}, {f}]: they are not the same model. Convert "
                              f"{keras_path.name} again.")
        card = runs.load_card(keras_path)
        samples = make_samples(keras_path, card, int(t), int(f), o, framing_=framing.of_model(keras_model))
        expected_arr = np.asarray(keras_model(samples.inputs, training=False), np.float32)
        precision = ((sidecar or {}).get("gpu") or {}).get("precision", "fp16")
        run = run_isolated(tflite_path, samples.inputs, accelerator="gpu" if accelerator == "gpu" else "interpreter",
                           precision=precision)
        if len(run.output_names) != 1 or run.outputs[run.output_names[0]].shape != expected_arr.shape:
            shapes = {k: list(v.shape) for k, v in run.outputs.items()}
            raise ParityError(f"{tflite_path.name} outputs {shapes} but {keras_path.name} outputs "
                              f"{list(expected_arr.shape)}: they are not the same model.")
        expected = {run.output_names[0]: expected_arr}
        task = _task(card)
        if samples.source.startswith("generated"):
            notes.append(samples.source)
        report = parity.judge(expected, run, tol, source, samples.targets, task, precision).with_notes(notes)
        if stage is not None:
            write_bundle_files(stage, tflite_path, recipe, run.signature, run.input_name, samples.inputs, expected,
                               tol, samples.kinds, samples.source, samples.targets if task else None, task,
                               report.task.reference if report.task else None, (sidecar or {}).get("gpu"))
    return VerifyResult(report, recipe, samples, Path(bundle_dir) if bundle_dir is not None else None)


def _task(card: dict | None) -> Task | None:
    if card is None:
        return None
    if card["task"]["kind"] == "classification":
        return Task("classification", "accuracy", 1.0, 0.0, "fraction of held-out windows")
    # The model returns the data's units (gru_edge.framing): the metric needs no rescaling.
    return Task(card["task"]["kind"], card["task"]["metric"], 1.0, 0.0,
                f"data units: {card['task'].get('units') or card['data']['column']}")
