"""Recipe + Keras model -> ``model.RECIPE.tflite`` and its sidecar JSON, with TensorFlow kept in a child process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gru_edge import __version__, arrays, errors, outputs, recipes, runtime, tflite_model
from gru_edge.compact import compact
from gru_edge.description import ModelDescription, embed, sidecar_file
from gru_edge.step_ranges import share_step_ranges
from gru_edge.errors import ConversionError, GruEdgeError, ModelError, ParityError
from gru_edge.io import child_command, sha256_file, signal_name
from gru_edge.names import SERVE, STEP
from gru_edge.card import WINDOWS, TrainingCard, load as load_card, windows_file
from gru_edge.recipes import Recipe



@dataclass(frozen=True)
class ConvertedModel:
    recipe: str
    path: Path
    sidecar: Path
    size_bytes: int
    weight_bytes: int
    ops: dict
    seconds: float
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "path": str(self.path), "sidecar": str(self.sidecar),
                "size_bytes": self.size_bytes, "weight_bytes": self.weight_bytes, "ops": self.ops,
                "seconds": self.seconds, "notes": list(self.notes)}


@dataclass(frozen=True)
class ConversionResult:
    source: str
    out_dir: Path
    models: tuple[ConvertedModel, ...]
    seconds: float
    failed: tuple[tuple[str, str], ...] = ()  # (recipe, why it could not be made); the others were made

    @property
    def ok(self) -> bool:
        return not self.failed

    def model(self, recipe: str) -> ConvertedModel:
        """The model made for ``recipe``; ConversionError saying why when it was not made."""
        found = [m for m in self.models if m.recipe == recipe]
        if found:
            return found[0]
        why = dict(self.failed).get(recipe, f"it was not asked for (made: {', '.join(m.recipe for m in self.models)})")
        raise ConversionError(f"No '{recipe}' model: {why}")

    def require_all(self) -> "ConversionResult":
        """This result, or ConversionError naming the recipes that could not be made."""
        if self.failed:
            raise ConversionError(_failure_text(self.failed))
        return self

    def to_dict(self) -> dict:
        return {"source": self.source, "out_dir": str(self.out_dir), "seconds": self.seconds,
                "models": [m.to_dict() for m in self.models],
                "failed": [{"recipe": r, "error": e} for r, e in self.failed]}


def _failure_text(failed) -> str:
    if len(failed) == 1:
        return failed[0][1]
    return f"{len(failed)} recipes could not be made: " + " | ".join(f"{r}: {e}" for r, e in failed)


def model_file(out_dir: Path, recipe_name: str) -> Path:
    return Path(out_dir) / f"model.{recipe_name}.tflite"


def convert(model, recipe_names: list[str | Recipe], out_dir: Path, calibration=None,
            log=lambda msg: None) -> ConversionResult:
    """Convert ``model`` (a .keras path, or a keras.Model in memory) once per recipe (a shipped name, a .toml path,
    or a Recipe). ``calibration``: windows shaped like the model's input (an array, or a .npy / .npz / .csv file;
    gru_edge.arrays) for the recipes that quantize activations; without it they use the training windows
    'gru-edge train' wrote beside the model. A recipe that cannot be made is named in ``failed`` with the reason,
    and the others are still made; every output file appears whole or not at all."""
    out_dir = Path(out_dir)
    if not recipe_names:
        raise ConversionError(f"No recipe given. Shipped: {', '.join(recipes.shipped_names())}.")
    chosen = [r if isinstance(r, Recipe) else recipes.load(r) for r in recipe_names]
    names = [r.name for r in chosen]
    if len(set(names)) != len(names):
        raise ConversionError(f"Recipe names repeat: {', '.join(names)}; give each recipe once.")
    needed = calibration is not None and any(r.needs_calibration for r in chosen)  # only read when used
    cal = arrays.load(calibration, "calibration windows") if needed else None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gru-edge-convert-") as scratch:
        model_path, source = _source(model, scratch)
        # Cheap checks first: paths, recipes, calibration data; TensorFlow starts only after they pass.
        card = load_card(model_path) if source["kind"] == "file" else None
        windows = windows_file(model_path, card) if card and (model_path.parent / WINDOWS).is_file() else None
        if cal is not None:  # the user's windows, with the edge cases of their range (the card's range is not used)
            windows = Path(scratch) / "calibration.npz"
            np.savez(windows, train_x=cal.values)
        failed = [(r.name, f"Recipe '{r.name}' ({r.quantization}) needs calibration data: give --calibration FILE "
                           "(windows shaped like the model's input; the API's calibration=), or convert a model "
                           f"'gru-edge train' wrote (its {WINDOWS}). Float recipes (float32, float16, dynamic-int8) "
                           "need none.") for r in chosen if r.needs_calibration and windows is None]
        todo = [r for r in chosen if r.name not in dict(failed)]
        if not todo:
            raise ConversionError(_failure_text(failed))
        with outputs.staged(out_dir, outputs.MODELS) as stage:
            log(f"converting {source['path']} to {', '.join(r.name for r in todo)} (TensorFlow converter in a "
                "child process)")
            proc = _run_worker(model_path, todo, None if cal is not None else card, windows, scratch,
                               windows_source=cal.where if cal is not None else None, log=log)
            done, errors_, about = _read_events(proc, {r.name: r for r in todo})
            failed += errors_
            if not done:
                raise ConversionError(_failure_text(failed))
            source |= {"weights_sha256": about.get("weights_sha256"), "form": about.get("form")}
            results = []
            for r in [r for r in todo if r.name in done]:
                try:
                    results.append(_finish(r, Path(done[r.name]["file"]), done[r.name], source, stage, card,
                                           about.get("notes", []), cal.source if cal is not None else None))
                except ConversionError as e:
                    failed.append((r.name, str(e)))
            if not results:
                raise ConversionError(_failure_text(failed))
    results = [replace(m, path=out_dir / m.path.name, sidecar=out_dir / m.sidecar.name) for m in results]
    for m in results:
        log(f"  {m.recipe}: {m.path} ({m.size_bytes / 1024:.1f} KiB, {sum(m.ops.values())} ops)")
    order = {n: i for i, n in enumerate(names)}
    return ConversionResult(source["path"], out_dir, tuple(results), round(time.perf_counter() - started, 2),
                            tuple(sorted(failed, key=lambda f: order[f[0]])))


def _source(model, scratch: str) -> tuple[Path, dict]:
    """(the .keras file the child process loads, what the sidecar names as the source). A model held in memory is
    saved into ``scratch`` and named by its weights' fingerprint."""
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"Model file not found: {path}. Give a .keras file ('gru-edge train' writes one, "
                             "keras.Model.save another).")
        if path.suffix != ".keras":
            raise ModelError(f"{path.name} is not a .keras file; gru-edge converts Keras 3 '.keras' models.")
        return path, {"kind": "file", "path": str(path), "sha256": sha256_file(path)}
    if not (hasattr(model, "save") and hasattr(model, "get_weights")):
        raise ModelError(f"Cannot convert a {type(model).__name__}; give a keras.Model or the path of a .keras file.")
    from gru_edge.runs import fingerprint

    path = Path(scratch) / "model.keras"
    try:
        model.save(path)
        named = fingerprint(model)
    except Exception as e:  # a layer Keras cannot serialize (custom classes, lambdas): Keras' own words
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"Cannot save {model.name} for conversion: {first[:200]}. gru-edge converts models Keras "
                         "can save and load with safe_mode (no Lambda layers; custom layers registered).") from None
    return path, {"kind": "memory", "path": f"(in memory) {model.name}", "sha256": named}


def _run_worker(model_path: Path, chosen: list[Recipe], card: TrainingCard | None, windows: Path | None,
                scratch: str, windows_source: str | None = None, log=lambda msg: None) -> subprocess.CompletedProcess:
    """Run convert_worker on ``chosen`` in a child process; ``log`` hears of each recipe as the child starts it."""
    request = Path(scratch) / "request.json"
    request.write_text(json.dumps({"model": str(Path(model_path).resolve()), "scratch": scratch,
                                   "windows_source": windows_source,
                                   "windows": str(Path(windows).resolve()) if windows else None,
                                   "input_range": list(card.value_range) if card else None,
                                   "recipes": [r.to_dict() for r in chosen]}))
    command = child_command("gru_edge.convert_worker", request)
    lines = []
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: TensorFlow's log cannot block the child
        child = subprocess.Popen(command, cwd=scratch, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            started = 0
            for line in child.stdout:
                lines.append(line)
                if line.startswith('{"recipe"') and '"event": "start"' in line:
                    started += 1
                    log(f"  {json.loads(line)['recipe']}: converting ({started}/{len(chosen)})")
            child.wait()
        except BaseException:  # interrupted: the child goes too
            child.kill()
            child.wait()
            raise
        finally:
            child.stdout.close()
        err.seek(0)
        return subprocess.CompletedProcess(command, child.returncode, "".join(lines), err.read())


def _read_events(proc: subprocess.CompletedProcess,
                 by_name: dict[str, Recipe]) -> tuple[dict[str, dict], list[tuple[str, str]], dict]:
    """(done events by recipe, (recipe, error) for the recipes that could not be made, the model event)."""
    done, failed, about, current = {}, [], {}, None
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event["event"] == "error" and event.get("recipe") in by_name and event.get("kind") != "OutputError":
            failed.append((event["recipe"], event["message"]))
            current = None
            continue
        if event["event"] == "error":
            kind = getattr(errors, event.get("kind", ""), None)
            raise (kind if isinstance(kind, type) and issubclass(kind, GruEdgeError) else ConversionError)(
                event["message"])
        if event["event"] == "model":
            about = event
        elif event["event"] == "start":
            current = event["recipe"]
        elif event["event"] == "done":
            done[event["recipe"]] = event
            current = None
    if proc.returncode in (0, 3) and len(done) + len(failed) == len(by_name):
        return done, failed, about
    if proc.returncode < 0 or current is not None:
        how = (f"was killed by {signal_name(proc.returncode)}" if proc.returncode < 0
               else f"exited with status {proc.returncode}")
        recipe = by_name.get(current)
        hint = ("TensorFlow's converter is known to crash on full-integer Keras GRUs; use lowering = \"gru-edge\" "
                "(the default) or a float recipe" if recipe and recipe.lowering == "keras"
                else "try a float recipe (float32, float16) and report the model")
        what = (f"recipe '{current}' ({recipe.quantization}, lowering = {recipe.lowering}, unroll = "
                f"{str(recipe.unroll).lower()})" if recipe else "the model")
        raise ConversionError(f"The TFLite converter crashed: the child process {how} while converting {what}. "
                              f"{hint}.")
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise ConversionError(f"The conversion process exited with status {proc.returncode}: {tail[:300]}")


def finish_bytes(recipe: Recipe, converted: bytes) -> bytes:
    """What gru-edge writes for the converter's bytes: shared step ranges (integer recipes), then compacted.
    lowering = "keras" stands for TensorFlow's converter as it is (the comparison path): its graph is left
    untouched (only the description is added, by rewriting the flatbuffer, as for every recipe)."""
    if recipe.lowering != "gru-edge":
        return converted
    payload = share_step_ranges(converted)[0] if recipe.quantization in ("int8", "int16x8") else converted
    return compact(payload)[0]


def _finish(recipe: Recipe, produced: Path, event: dict, source: dict, out_dir: Path, card: TrainingCard | None,
            notes: list[str], calibration: str | None) -> ConvertedModel:
    """Check the converted bytes (builtin ops only, loads and runs in LiteRT), describe the model inside itself
    (gru_edge.description), then write model and sidecar into
    ``out_dir`` (the staging folder: the models folder is swapped in whole once every recipe is done)."""
    converted = produced.read_bytes()
    info = tflite_model.parse(converted, produced.name)
    if info.custom_ops:
        raise ConversionError(f"Recipe '{recipe.name}' produced ops outside the TFLite builtins "
                              f"({', '.join(info.custom_ops)}); the standard LiteRT runtime cannot run them.")
    if info.nonfinite_scales:
        raise ConversionError(f"Recipe '{recipe.name}': {info.nonfinite_scales} tensors got NaN or infinite "
                              "quantization scales (calibration met non-finite values); use a float recipe.")
    sig = info.signature(SERVE)
    target = model_file(out_dir, recipe.name)
    described = ModelDescription(
        tool=f"gru-edge {__version__}",
        recipe=recipe.to_dict(),
        source_model=source,
        signature=sig.to_dict(),
        signatures=[s.key for s in info.signatures],
        step_signature=info.signature(STEP).to_dict() if any(s.key == STEP for s in info.signatures) else None,
        gpu=recipe.to_dict()["gpu"],
        framing=card.framing if card else None,
        task=card.task if card else None,
        window=card.window if card else sig.inputs[0].shape[1],
        input_steps=sig.inputs[0].shape[1],
        converter_bytes=len(converted),
        calibration_samples=event["calibration_samples"],
        calibration_source=calibration or (f"training windows ({WINDOWS})" if card and recipe.needs_calibration
                                           else None),
        form=source.get("form"),
        loop_steps=event.get("loop_steps"),
        notes=notes + event.get("notes", []),
        level_margin=event.get("level_margin"),
        convert_seconds=event["seconds"],
    )
    payload = finish_bytes(recipe, embed(converted, described))  # the model carries its own description
    info = tflite_model.parse(payload, produced.name)
    try:  # the standard runtime must load and run it; a crash there stays in a child process
        runtime.run_isolated(payload, None, name=f"the '{recipe.name}' model")
    except ParityError as e:
        raise ConversionError(f"Recipe '{recipe.name}': {e}") from None
    described = replace(described, model_file=target.name,
                        model_sha256=hashlib.sha256(payload).hexdigest(),  # binds the sidecar to its .tflite
                        size_bytes=info.size_bytes, weight_bytes=info.weight_bytes, ops=info.op_counts,
                        op_versions=info.op_versions)
    target.write_bytes(payload)
    sidecar_file(target).write_text(json.dumps(described.to_dict(), indent=2) + "\n")
    return ConvertedModel(recipe.name, target, sidecar_file(target), info.size_bytes, info.weight_bytes,
                          info.op_counts, event["seconds"], tuple(described.notes))
