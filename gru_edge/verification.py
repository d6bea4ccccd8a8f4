"""Desktop parity: run the Keras original and the ``.tflite`` on the same sample sequences, compare, write a bundle."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gru_edge import arrays, data, framing, graph, outputs, parity, recipes, runs, tflite_model
from gru_edge import card as card_, explain as explain_
from gru_edge.bundle import Task, write_bundle_files
from gru_edge.description import ModelDescription, load as load_sidecar
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
    explanation: object = None  # gru_edge.explain.Explanation, when asked for

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "sample_source": self.samples.source, "sample_kinds": self.samples.kinds,
                "bundle": str(self.bundle) if self.bundle else None, **self.report.to_dict(),
                **({"explain": self.explanation.to_dict()} if self.explanation else {})}


def make_samples(model_path: Path | None, card: card_.TrainingCard | None, input_shape: tuple, n_outputs: int,
                 seed: int = 0, framing_: framing.Framing | None = None, vocabulary: int | None = None) -> Samples:
    """Held-out windows from the training card plus edge cases; generated sequences when there is no card (in the
    model's own scale when it has a Frame layer: ``framing_``; token ids below ``vocabulary`` when its input feeds an
    Embedding)."""
    if card is not None:
        win = runs.load_windows(model_path, card)
        base, targets = win["test_x"], win["test_y"]
        if card.kind == "classification":  # class indices -> one-hot, shaped like the outputs
            targets = np.eye(n_outputs, dtype=np.float32)[targets[:, 0].astype(np.int64)]
        lo, hi = card.value_range
        source, first = "training card: held-out windows + edge cases", "heldout"
    else:
        rng = np.random.default_rng(seed)
        targets, first = None, "generated"
        shape = (GENERATED_SAMPLES, *input_shape)
        if vocabulary:
            base, how = rng.integers(0, vocabulary, shape).astype(np.float32), f"random token ids below {vocabulary}"
        elif framing_ is None:
            base, how = rng.standard_normal(shape).astype(np.float32), "random normal sequences"
        else:
            base = framing.raw_windows(framing_, rng.standard_normal((GENERATED_SAMPLES, framing_.window,
                                                                      input_shape[-1])))
            how = "random normal sequences mapped to raw values by its Frame layer"
        lo, hi = arrays.value_range(base)
        source = f"generated: no training card or samples for the model, {how} + edge cases"
    return _with_edges(base, targets, lo, hi, first, source, n_outputs)


def user_samples(samples: arrays.Loaded, targets: arrays.Loaded | None, input_shape: tuple, n_outputs: int,
                 vocabulary: int | None = None, classes: bool = False) -> Samples:
    """The caller's samples plus the edge cases of their range, and their targets if given (class indices one-hot
    encoded for a softmax model: ``classes``)."""
    base = arrays.as_windows(samples.values, input_shape, "samples", samples.where)
    arrays.check_tokens(base, vocabulary, "samples", samples.where)
    truth = None
    if targets is not None:
        truth = arrays.as_targets(targets.values, len(base), n_outputs, classes, targets.where)
    lo, hi = arrays.value_range(base)
    return _with_edges(base, truth, lo, hi, "samples", f"{samples.source} + edge cases of their range", n_outputs)


def _with_edges(base, targets, lo, hi, first: str, source: str, n_outputs: int) -> Samples:
    shape = base.shape[1:]
    edges = data.edge_windows(shape, lo, hi)
    inputs = np.concatenate([base.astype(np.float32), edges])
    kinds = {first: len(base), **{name: 1 for name in data.EDGE_CASES}}
    if targets is not None:
        targets = np.concatenate([targets, np.full((len(edges), n_outputs), np.nan, np.float32)]).astype(np.float32)
    return Samples(inputs, targets, kinds, source)


def tolerances_for(tflite_path: Path, sidecar: ModelDescription | None,
                   recipe_name: str | None) -> tuple[recipes.Tolerances, str, str, list[str]]:
    """The limits to apply: (tolerances, recipe name, where they came from, notes)."""
    if recipe_name:
        r = recipes.load(recipe_name)
        return r.verify, r.name, f"recipe {r.name}, given with --recipe", []
    if sidecar:
        try:
            r = recipes.Recipe.from_dict(sidecar.recipe)
        except (TypeError, KeyError) as e:
            raise ParityError(f"The sidecar of {tflite_path.name} holds no recipe gru-edge can read ({e}); convert "
                              "the model again.") from None
        return r.verify, r.name, f"recipe {r.name}, named by {tflite_path.name}'s description", \
            recipes.looser_than_shipped(r.name, r.verify, "the sidecar's")
    r = recipes.load("float32")
    return r.verify, "unknown", "recipe float32, the strictest shipped limits (no description)", [
        f"{tflite_path.name} has no gru-edge description (inside or sidecar): using the float32 recipe's tolerances (pass --recipe to choose)"]


def check_identity(keras_path: Path | None, tflite_path: Path, sidecar: ModelDescription | None,
                   keras_model=None) -> list[str]:
    """ParityError when the sidecar says ``tflite_path`` was converted from another model than ``keras_path`` (or,
    for a model held in memory, from other weights)."""
    what = str(keras_path) if keras_path else f"the model in memory ({keras_model.name})"
    if sidecar is None:
        return [f"{tflite_path.name} has no gru-edge description: gru-edge cannot confirm it was made from {what}"]
    made_from = sidecar.source_model
    theirs = made_from["sha256"]
    same = keras_path is not None and theirs == sha256_file(keras_path)
    if not same and (made_from.get("weights_sha256") or keras_path is None):
        # the same weights saved again, or held in memory: compare the fingerprint of architecture and weights
        theirs = made_from.get("weights_sha256") or theirs
        same = theirs == runs.fingerprint(keras_model)
    if not same:
        raise ParityError(f"{tflite_path} was converted from another model than {what} (its description names "
                          f"{made_from['path']}, sha256 {theirs[:12]}…): comparing them says nothing. "
                          f"Verify it against that model, or convert "
                          f"{keras_path.name if keras_path else 'this one'} again.")
    return []


def verify(model, tflite_path: Path, bundle_dir: Path | None = None, recipe_name: str | None = None,
           accelerator: str = "cpu", keras_model=None, samples=None, targets=None,
           runtime: str = "litert", explain: bool = False, log=lambda m: None) -> VerifyResult:
    """Compare ``tflite_path`` against the Keras model (a .keras path, or a keras.Model in memory) on sample
    sequences: ``samples`` (an array or a .npy / .npz / .csv file, with optional ``targets``) plus the edge cases of
    their range; by default the held-out windows of the training card, or generated sequences.

    ``keras_model``: the model at the path already loaded, when one caller verifies several conversions.
    ``runtime``: the interpreter that runs the .tflite (litert, tflite-runtime, tensorflow; gru_edge.runtimes).
    ``explain``: an int8 model's quantized ops ranked by their error, named by layer, gate and time step
    (gru_edge.explain), on the training windows, else on the samples.
    The bundle folder, if asked for, is checked before the work and written whole at the end (gru_edge.outputs).
    """
    keras_path = Path(model) if isinstance(model, (str, Path)) else None
    keras_model = keras_model if keras_path else model
    if targets is not None and samples is None:
        raise ParityError("Targets need their samples: give samples too.")
    # The caller's data is read first: a bad file is named before any model is loaded.
    samples = arrays.load(samples, "samples", prefer="test") if samples is not None else None
    targets = arrays.load(targets, "targets", key="y", prefer="test") if targets is not None else None
    tflite_path = Path(tflite_path)
    if not tflite_path.is_file():
        raise ParityError(f"TFLite file not found: {tflite_path}.")
    if keras_path is not None and not keras_path.is_file():
        raise ParityError(f"Model file not found: {keras_path}.")
    info = tflite_model.read(tflite_path)
    sidecar = load_sidecar(tflite_path, info)
    tol, recipe, source, notes = tolerances_for(tflite_path, sidecar, recipe_name)
    ranked = explain_.described_recipe(tflite_path, sidecar) if explain else None  # refused before any work
    with outputs.staged(bundle_dir, outputs.BUNDLE) if bundle_dir is not None else nullcontext() as stage:
        keras_model = keras_model or runs.load_model(keras_path)
        notes = check_identity(keras_path, tflite_path, sidecar, keras_model) + notes
        reference, policy = graph.float32_twin(keras_model)
        notes += [policy] if policy else []
        input_shape = tuple(int(d) for d in keras_model.inputs[0].shape[1:])
        o = int(np.prod(keras_model.outputs[0].shape[1:]))
        taken = [list(i.shape) for i in info.main_signature().inputs]
        name = keras_path.name if keras_path else keras_model.name
        if len(taken) != 1 or tuple(taken[0][1:]) != input_shape:
            raise ParityError(f"{tflite_path.name} takes input {' and '.join(map(str, taken)) or 'nothing'} but "
                              f"{name} takes [N, {', '.join(map(str, input_shape))}]: they are not the same "
                              f"model. Convert {name} again.")
        card = card_.load(keras_path) if keras_path else None
        if samples is not None:
            smp = user_samples(samples, targets, input_shape, o, graph.vocabulary(keras_model),
                               graph.is_classifier(keras_model))
        else:
            smp = make_samples(keras_path, card, input_shape, o, framing_=framing.of_model(keras_model),
                               vocabulary=graph.vocabulary(keras_model))
        log(f"comparing {tflite_path.name} ({runtime}{', GPU' if accelerator == 'gpu' else ''}) with {name} on "
            f"{len(smp.inputs)} samples ({smp.source})")
        expected_arr = graph.predict(reference, smp.inputs).astype(np.float32).reshape(len(smp.inputs), -1)
        gpu_settings = sidecar.gpu if sidecar else None
        precision = (gpu_settings or {}).get("precision", "fp16")
        flat = smp.inputs.reshape(len(smp.inputs), input_shape[0], -1)  # [N, T, F]; [N, T, 1] for token ids
        run = run_isolated(tflite_path, flat, accelerator="gpu" if accelerator == "gpu" else "interpreter",
                           precision=precision, runtime=runtime)
        if len(run.output_names) != 1 or run.outputs[run.output_names[0]].shape != expected_arr.shape:
            shapes = {k: list(v.shape) for k, v in run.outputs.items()}
            raise ParityError(f"{tflite_path.name} outputs {shapes} but {name} outputs "
                              f"{list(expected_arr.shape)}: they are not the same model.")
        expected = {run.output_names[0]: expected_arr}
        task = _task(card) if samples is None else _user_task(smp.targets, graph.is_classifier(keras_model))
        if smp.source.startswith("generated"):
            notes.append(smp.source)
        report = parity.judge(expected, run, tol, source, smp.targets, task, precision).with_notes(notes)
        if stage is not None:
            write_bundle_files(stage, tflite_path, recipe, run.signature, run.input_name, flat, expected,
                               tol, smp.kinds, smp.source, smp.targets if task else None, task,
                               report.task.reference if report.task else None, gpu_settings)
    explanation = None
    if ranked is not None:
        windows, lo_hi = smp.inputs, arrays.value_range(smp.inputs)
        if card is not None:
            windows, lo_hi = runs.load_windows(keras_path, card)["train_x"], card.value_range
        explanation = explain_.rank(reference, ranked, windows, lo_hi, log)
    return VerifyResult(report, recipe, smp, Path(bundle_dir) if bundle_dir is not None else None, explanation)


def _user_task(targets: np.ndarray | None, classifier: bool) -> Task | None:
    """The caller's targets: accuracy for a softmax classifier with one-hot (or class index) targets, else RMSE."""
    if targets is None:
        return None
    rows = targets[~np.isnan(targets).any(axis=1)]
    onehot = targets.shape[1] > 1 and np.isin(rows, (0.0, 1.0)).all() and (rows.sum(axis=1) == 1).all()
    if classifier and onehot:
        return Task("classification", "accuracy", 1.0, 0.0, "fraction of the samples")
    return Task("regression", "rmse", 1.0, 0.0, "the targets' units")


def _task(card: card_.TrainingCard | None) -> Task | None:
    if card is None:
        return None
    if card.kind == "classification":
        return Task("classification", "accuracy", 1.0, 0.0, "fraction of held-out windows")
    # The model returns the data's units (gru_edge.framing): the metric needs no rescaling.
    return Task(card.kind, card.task["metric"], 1.0, 0.0, f"data units: {card.units}")
