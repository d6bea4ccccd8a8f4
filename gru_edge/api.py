"""The Python API: one function per CLI command, taking Keras models and numpy arrays as well as paths, returning the
dataclasses the CLI prints (each has ``to_dict()``). Errors are gru_edge.errors.GruEdgeError subclasses with the
CLI's one-line messages. Heavy libraries load inside the functions, so ``import gru_edge`` stays light.

    import gru_edge
    result = gru_edge.convert(keras_model, ["float32", "int8"], "out", calibration=windows)
    report = gru_edge.verify(keras_model, result.model("int8").path, samples=windows).report
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gru_edge.description import ModelDescription


def _log(log):
    return log or (lambda msg: None)


def train(out: str | Path, data: str | Path = "airline", log=None, **options):
    """Train a GRU forecaster (or classifier) into the run folder ``out``; ``options`` are TrainConfig's fields
    (column, features, window, horizon, units, layers, epochs, seed, task, transform, test_size, season, ...).
    Returns model.TrainResult (run_dir, model_path, card with the held-out metrics)."""
    from gru_edge.errors import DataError
    from gru_edge.model import TrainConfig, train as run

    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise DataError(f"Unknown training option(s) {', '.join(unknown)}; known: "
                        f"{', '.join(sorted(known - {'data'}))}.")
    if isinstance(options.get("features"), (list, str)):
        options["features"] = tuple([options["features"]] if isinstance(options["features"], str)
                                    else options["features"])
    return run(TrainConfig(data=str(data), **options), Path(out), log=_log(log))


def convert(model, to, out: str | Path, calibration=None, log=None):
    """Convert ``model`` (a keras.Model or a .keras path) to one .tflite per recipe in ``to`` (names, .toml paths or
    recipes.Recipe; a string may list several, comma-separated) in the folder ``out``. ``calibration``: windows
    shaped like the model's input (numpy array, or .npy / .npz / .csv path) for int8 / int16x8. Returns
    conversion.ConversionResult; recipes that could not be made are in ``.failed`` (``.require_all()`` raises)."""
    from gru_edge.conversion import convert as run

    names = [t.strip() for t in to.split(",") if t.strip()] if isinstance(to, str) else list(to)
    return run(model, names, Path(out), calibration=calibration, log=_log(log))


def verify(model, tflite: str | Path, samples=None, targets=None, bundle: str | Path | None = None,
           recipe: str | None = None, accelerator: str = "cpu", runtime: str = "litert"):
    """Compare ``tflite`` with ``model`` (a keras.Model or a .keras path) on ``samples`` (array or file; default:
    the training card's held-out windows, or generated ones) plus edge cases; ``targets`` give the task-metric
    delta; ``bundle``: also write a parity bundle there. Returns verification.VerifyResult (``.report.passed``)."""
    from gru_edge.verification import verify as run

    return run(model, Path(tflite), Path(bundle) if bundle else None, recipe, accelerator, samples=samples,
               targets=targets, runtime=runtime)


def check_bundle(bundle: str | Path, model: str | Path | None = None, accelerator: str = "cpu",
                 recipe: str | None = None, runtime: str = "litert"):
    """Re-check a parity bundle (no TensorFlow needed) with ``runtime``: litert, tflite-runtime or tensorflow.
    Returns parity.ParityReport."""
    from gru_edge.parity import check_bundle as run

    return run(Path(bundle), Path(model) if model else None, accelerator=accelerator, recipe=recipe,
               runtime=runtime)


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` reads from a .tflite: the model (signatures, ops, sizes) and the GPU findings."""

    model: object  # tflite_model.TfliteModel
    gpu_findings: tuple
    description: ModelDescription | None = None  # what gru-edge wrote into the model (gru_edge.description)
    runtime: object = None  # runtimes.Prediction, when a runtime was named

    def to_dict(self) -> dict:
        return {**self.model.to_dict(), "gpu_findings": [f.to_dict() for f in self.gpu_findings],
                "description": self.description.to_dict() if self.description else None,
                "runtime": self.runtime.to_dict() if self.runtime else None}


def inspect(tflite: str | Path, runtime: str | None = None) -> Inspection:
    """Signatures, ops, op versions, size split, GPU-delegate findings and gru-edge's description of a .tflite (no
    TensorFlow needed); ``runtime`` (e.g. "tflite-runtime==2.14"): what that runtime will refuse at load."""
    from gru_edge import description, gpu, runtimes, tflite_model

    prediction_for = runtimes.known_runtime(runtime) if runtime else None  # a bad name before the file is read
    info = tflite_model.read(Path(tflite))
    return Inspection(info, tuple(gpu.check(info)), description.load(Path(tflite), info),
                      runtimes.predict(info, prediction_for) if prediction_for else None)


def list_recipes() -> list:
    """The shipped conversion recipes (recipes.Recipe)."""
    from gru_edge import recipes

    return [recipes.load(n) for n in recipes.shipped_names()]


def benchmark(model: str | Path, to=None, threads: int = 1, iterations: int = 200, rounds: int = 5, log=None):
    """Latency and size of Keras, TensorFlow's plain converter paths and gru-edge's recipes (``gru-edge bench``)."""
    from gru_edge.bench import bench as run

    return run(Path(model), list(to) if to else None, threads, iterations, rounds, log=_log(log))


def add_to_android(tflite: str | Path, bundle: str | Path, demo: str | Path = "android_demo"):
    """Check a model and its parity bundle against the demo's LiteRT and GPU rules and copy them into its assets."""
    from gru_edge.android import install

    return install(Path(tflite), Path(bundle), Path(demo))
