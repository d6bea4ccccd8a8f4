"""Recipe + Keras model -> ``model.RECIPE.tflite`` and its sidecar JSON, with TensorFlow kept in a child process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from gru_edge import __version__, errors, outputs, recipes, runtime, tflite_model
from gru_edge.compact import compact
from gru_edge.step_ranges import share_step_ranges
from gru_edge.errors import ConversionError, GruEdgeError, ModelError, ParityError
from gru_edge.io import child_command, sha256_file, signal_name
from gru_edge.runs import WINDOWS, load_card, windows_file
from gru_edge.recipes import Recipe

SIDECAR_FORMAT = "gru-edge-sidecar/2"  # /2: names the .tflite's sha256


@dataclass(frozen=True)
class ConvertedModel:
    recipe: str
    path: Path
    sidecar: Path
    size_bytes: int
    weight_bytes: int
    ops: dict
    seconds: float

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "path": str(self.path), "sidecar": str(self.sidecar),
                "size_bytes": self.size_bytes, "weight_bytes": self.weight_bytes, "ops": self.ops,
                "seconds": self.seconds}


@dataclass(frozen=True)
class ConversionResult:
    source: Path
    out_dir: Path
    models: tuple[ConvertedModel, ...]
    seconds: float

    def to_dict(self) -> dict:
        return {"source": str(self.source), "out_dir": str(self.out_dir), "seconds": self.seconds,
                "models": [m.to_dict() for m in self.models]}


def model_file(out_dir: Path, recipe_name: str) -> Path:
    return Path(out_dir) / f"model.{recipe_name}.tflite"


def sidecar_file(tflite_path: Path) -> Path:
    return Path(tflite_path).with_suffix(".json")


def load_sidecar(tflite_path: Path) -> dict | None:
    """Return the sidecar beside ``tflite_path`` (None when there is none), after checking it describes that file."""
    path = sidecar_file(tflite_path)
    if not path.is_file():
        return None
    try:
        sidecar = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ConversionError(f"{path} is not valid JSON ({getattr(e, 'msg', type(e).__name__)}); convert the "
                              "model again.") from None
    fmt = sidecar.get("format") if isinstance(sidecar, dict) else None
    if fmt != SIDECAR_FORMAT:
        raise ConversionError(f"{path} is not a gru-edge sidecar of this version (format {fmt!r}, expected "
                              f"'{SIDECAR_FORMAT}'); convert the model again.")
    made_from = sidecar.get("source_model")
    if not isinstance(sidecar.get("recipe"), dict) or not isinstance(made_from, dict) or \
            not isinstance(made_from.get("sha256"), str) or not isinstance(made_from.get("path"), str):
        raise ConversionError(f"{path} lacks the recipe or source model a gru-edge sidecar names; convert the model "
                              "again.")
    if sidecar.get("model_sha256") != sha256_file(tflite_path):
        raise ConversionError(f"{path.name} describes another {Path(tflite_path).name} (sha256 differs): the two "
                              "files do not belong together. Convert again, or remove the sidecar.")
    return sidecar


def convert(model_path: Path, recipe_names: list[str | Recipe], out_dir: Path, log=lambda msg: None) -> ConversionResult:
    """Convert ``model_path`` once per recipe (a shipped name, a .toml path, or a Recipe); every output file appears
    whole or not at all."""
    model_path, out_dir = Path(model_path), Path(out_dir)
    # Cheap checks first: paths, recipes, calibration data; TensorFlow starts only after they pass.
    if not model_path.is_file():
        raise ModelError(f"Model file not found: {model_path}. Give the model.keras written by 'gru-edge train'.")
    if model_path.suffix != ".keras":
        raise ModelError(f"{model_path.name} is not a .keras file; gru-edge converts Keras 3 '.keras' models.")
    if not recipe_names:
        raise ConversionError(f"No recipe given. Shipped: {', '.join(recipes.shipped_names())}.")
    chosen = [r if isinstance(r, Recipe) else recipes.load(r) for r in recipe_names]
    names = [r.name for r in chosen]
    if len(set(names)) != len(names):
        raise ConversionError(f"Recipe names repeat: {', '.join(names)}; give each recipe once.")
    card = load_card(model_path)
    windows = windows_file(model_path, card) if card and (model_path.parent / WINDOWS).is_file() else None
    for r in chosen:
        if r.needs_calibration and windows is None:
            raise ConversionError(f"Recipe '{r.name}' ({r.quantization}) needs calibration data: the training card "
                                  f"and {WINDOWS} written by 'gru-edge train' beside {model_path.name}. "
                                  "Float recipes (float32, float16, dynamic-int8) need none.")
    started = time.perf_counter()
    with outputs.staged(out_dir, outputs.MODELS) as stage, \
            tempfile.TemporaryDirectory(prefix="gru-edge-convert-") as scratch:
        log(f"converting {model_path} to {', '.join(names)} (TensorFlow converter in a child process)")
        proc = _run_worker(model_path, chosen, card, windows, scratch)
        done = _read_events(proc, {r.name: r for r in chosen})
        source = {"path": str(model_path), "sha256": sha256_file(model_path)}
        results = [_finish(r, Path(done[r.name]["file"]), done[r.name], source, stage, card) for r in chosen]
    results = [replace(m, path=out_dir / m.path.name, sidecar=out_dir / m.sidecar.name) for m in results]
    for m in results:
        log(f"  {m.recipe}: {m.path} ({m.size_bytes / 1024:.1f} KiB, {sum(m.ops.values())} ops)")
    return ConversionResult(model_path, out_dir, tuple(results), round(time.perf_counter() - started, 2))


def _run_worker(model_path: Path, chosen: list[Recipe], card: dict | None, windows: Path | None, scratch: str,
                explain: bool = False) -> subprocess.CompletedProcess:
    request = Path(scratch) / "request.json"
    request.write_text(json.dumps({"model": str(Path(model_path).resolve()), "scratch": scratch, "explain": explain,
                                   "windows": str(Path(windows).resolve()) if windows else None,
                                   "input_range": [card["input_range"]["min"], card["input_range"]["max"]]
                                   if card else None,
                                   "recipes": [r.to_dict() for r in chosen]}))
    return subprocess.run(child_command("gru_edge.convert_worker", request), cwd=scratch, capture_output=True,
                          text=True)


def explain(model_path: Path, recipe: Recipe) -> list[dict]:
    """Rank the quantized ops of ``recipe``'s graph by their error against float (TensorFlow's debugger), worst
    first."""
    if recipe.quantization != "int8":
        raise ConversionError(f"--explain ranks the ops of full-integer int8 models; recipe '{recipe.name}' is "
                              f"{recipe.quantization} (TensorFlow's quantization debugger handles int8 only).")
    card = load_card(model_path)
    if card is None:
        raise ConversionError(f"--explain needs the training card and {WINDOWS} beside {Path(model_path).name} "
                              "(calibration and debug data).")
    with tempfile.TemporaryDirectory(prefix="gru-edge-explain-") as scratch:
        proc = _run_worker(model_path, [recipe], card, windows_file(model_path, card), scratch, explain=True)
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event["event"] == "explain":
                return event["ops"]
            if event["event"] == "error":
                raise ConversionError(event["message"])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise ConversionError(f"The quantization debugger exited with status {proc.returncode}: {tail[:300]}")


def _read_events(proc: subprocess.CompletedProcess, by_name: dict[str, Recipe]) -> dict[str, dict]:
    done, current = {}, None
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event["event"] == "error":
            kind = getattr(errors, event.get("kind", ""), None)
            raise (kind if isinstance(kind, type) and issubclass(kind, GruEdgeError) else ConversionError)(
                event["message"])
        if event["event"] == "start":
            current = event["recipe"]
        elif event["event"] == "done":
            done[event["recipe"]] = event
            current = None
    if proc.returncode == 0 and len(done) == len(by_name):
        return done
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


def _finish(recipe: Recipe, produced: Path, event: dict, source: dict, out_dir: Path,
            card: dict | None) -> ConvertedModel:
    """Check the converted bytes (builtin ops only, loads and runs in LiteRT), then write model and sidecar into
    ``out_dir`` (the staging folder: the models folder is swapped in whole once every recipe is done)."""
    converted = produced.read_bytes()
    # lowering = "keras" stands for TensorFlow's converter as it is (the comparison path): left untouched.
    payload, packed = converted, None
    if recipe.lowering == "gru-edge":
        if recipe.quantization in ("int8", "int16x8"):
            payload, _ = share_step_ranges(payload)
        payload, packed = compact(payload)
    info = tflite_model.parse(payload, produced.name)
    if info.custom_ops:
        raise ConversionError(f"Recipe '{recipe.name}' produced ops outside the TFLite builtins "
                              f"({', '.join(info.custom_ops)}); the standard LiteRT runtime cannot run them.")
    if info.nonfinite_scales:
        raise ConversionError(f"Recipe '{recipe.name}': {info.nonfinite_scales} tensors got NaN or infinite "
                              "quantization scales (calibration met non-finite values); use a float recipe.")
    try:  # the standard runtime must load and run it; a crash there stays in a child process
        runtime.run_isolated(payload, None, name=f"the '{recipe.name}' model")
    except ParityError as e:
        raise ConversionError(f"Recipe '{recipe.name}': {e}") from None
    sig = info.signature("serving_default")
    target = model_file(out_dir, recipe.name)
    sidecar = {
        "format": SIDECAR_FORMAT,
        "tool": f"gru-edge {__version__}",
        "model_file": target.name,
        "model_sha256": hashlib.sha256(payload).hexdigest(),  # binds the sidecar to its .tflite
        "recipe": recipe.to_dict(),
        "source_model": source,
        "signature": sig.to_dict(),
        "signatures": [s.key for s in info.signatures],
        "step_signature": info.signature("step").to_dict() if any(s.key == "step" for s in info.signatures)
        else None,
        "gpu": recipe.to_dict()["gpu"],
        "framing": card["framing"] if card else None,  # inside the model: raw units in and out
        "task": card["task"] if card else None,
        "window": card["window"] if card else sig.inputs[0].shape[1],  # time steps the GRU runs
        "input_steps": sig.inputs[0].shape[1],  # of the raw input: window + the framing's lag
        "size_bytes": info.size_bytes,
        "weight_bytes": info.weight_bytes,
        "ops": info.op_counts,
        "op_versions": info.op_versions,
        "converter_bytes": len(converted),
        "calibration_samples": event["calibration_samples"],
        "level_margin": event.get("level_margin"),  # int16x8 on a differencing model: raw levels it reads unclipped
        "convert_seconds": event["seconds"],
    }
    target.write_bytes(payload)
    sidecar_file(target).write_text(json.dumps(sidecar, indent=2) + "\n")
    return ConvertedModel(recipe.name, target, sidecar_file(target), info.size_bytes, info.weight_bytes,
                          info.op_counts, event["seconds"])
