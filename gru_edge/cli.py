"""Command-line interface: each command parses options, calls one library function and renders its result.

Heavy libraries (TensorFlow, Keras, LiteRT) are imported inside the commands, so ``gru-edge --help`` is fast.
"""

from __future__ import annotations

import atexit
import functools
import os
import sys
from pathlib import Path

import click

from gru_edge import __version__, text
from gru_edge.errors import GruEdgeError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


def _progress(quiet: bool):
    return (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))


def _emit_json(result: dict | None, exit_code: int = 0, error: str | None = None) -> None:
    click.echo(text.json_document(result, exit_code, error))


def command(fn):
    """Shared ``--json`` and ``--quiet`` options; library errors become one-line messages with exit status 1."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout")
    @click.option("-q", "--quiet", is_flag=True, help="No progress messages on stderr")
    @functools.wraps(fn)
    def wrapper(*args, as_json: bool, quiet: bool, **kwargs):
        if quiet:
            atexit.register(_silence_native_stderr)
        try:
            return fn(*args, as_json=as_json, log=_progress(quiet or as_json), **kwargs)
        except GruEdgeError as e:
            error = click.ClickException(str(e))
            error.exit_code = getattr(e, "exit_code", 1)  # 3: a GPU check that could not run
        except OSError as e:  # a disk that is full, read-only or gone: the outputs were left as they were
            where = f" ({e.filename})" if e.filename else ""
            error = click.ClickException(f"{e.strerror or e}{where}; nothing was written.")
        except MemoryError:
            error = click.ClickException("Out of memory; nothing was written. Try a smaller input.")
        raise error from None

    return wrapper


def _silence_native_stderr() -> None:
    """-q: LiteRT's accelerator registry logs "INFO: … DestroyAccelerator" from native destructors after Python has
    finished; point file descriptor 2 at /dev/null at exit (errors were printed before)."""
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


class Cli(click.Group):
    """The command group; under --json every outcome, usage errors included, is one JSON document on stdout."""

    def format_commands(self, ctx, formatter):
        """Each command's whole first sentence, wrapped in its column rather than cut with "..."."""
        rows = [(name, self.get_command(ctx, name).get_short_help_str(limit=1000)) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv or not standalone_mode:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            return super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as e:
            _emit_json(None, e.exit_code, e.format_message())
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            _emit_json(None, 1, "Aborted.")
            sys.exit(1)


@click.group(cls=Cli, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="gru-edge")
def cli():
    """Train a Keras GRU, convert it to builtin-ops TFLite/LiteRT, and verify the two agree.

    Start with: gru-edge quickstart -o quickstart-out
    """


# ---- train ------------------------------------------------------------------------------------------------------

@cli.command(context_settings=CONTEXT)
@click.option("--data", default="airline", show_default=True,
              help="'airline' (built in), a CSV file with a header, or shards streamed from disk: a pattern such as "
              "'logs/*.csv' (quote it), a folder, .parquet files; each shard is one series")
@click.option("--column", help="Target column (default: the dataset's target, or a CSV's last column)")
@click.option("--features", default="", help="Extra input columns, comma-separated")
@click.option("--window", type=click.IntRange(min=1),
              help="Time steps per input (default: 12; with --transform auto and no season, 4 or 12)")
@click.option("--horizon", type=click.IntRange(min=1), default=1, show_default=True, help="Steps predicted at once")
@click.option("--units", type=click.IntRange(min=1), default=32, show_default=True, help="GRU units per layer")
@click.option("--layers", type=click.IntRange(min=1, max=8), default=1, show_default=True, help="Stacked GRU layers")
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True,
              help="At most; training stops when the validation loss has not improved for --patience epochs")
@click.option("--patience", type=click.IntRange(min=0), default=20, show_default=True, help="0: no early stopping")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=3e-3,
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same weights")
@click.option("--task", type=click.Choice(["regression", "classification"]), default="regression", show_default=True,
              help="classification: --column holds class indices, --features are the inputs, softmax head")
@click.option("--transform", help="auto, none, log, diff, diffN, combined as in 'log,diff12' or 'diff1,diff12' "
              "(default: airline's log,diff12; CSV: auto; shards: none; see README)")
@click.option("--test-size", type=click.IntRange(min=1),
              help="Values held out at the end (airline: 24; CSV: 20%), of each shard for shards")
@click.option("--season", type=click.IntRange(min=1),
              help="Season length: for the seasonal-naive baseline and the seasonal difference 'auto' may choose")
@click.option("--distribute", type=click.Choice(["none", "mirrored", "multi-worker"]),
              help="Data parallelism (tf.distribute): mirrored over this machine's GPUs (or --devices CPU devices), "
              "multi-worker over the processes in TF_CONFIG; --batch-size is the global batch")
@click.option("--devices", type=click.IntRange(min=1), help="--distribute mirrored: how many devices (default: "
              "every GPU; without GPUs the CPU split into this many)")
@click.option("-o", "--out", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder for model.keras and training.json")
@click.argument("stray", nargs=-1, metavar="")
@command
def train(data, column, features, window, horizon, units, layers, epochs, patience, batch_size, learning_rate, seed,
          task, transform, test_size, season, distribute, devices, run_dir, stray, as_json, log):
    """Train a GRU forecaster and report held-out RMSE beside naive baselines.

    \b
    Example:
      gru-edge train --data airline -o runs/airline
      gru-edge train --data 'logs/*.csv' --column temp --transform none -o runs/fleet
      gru-edge train --data 'logs/*.csv' --distribute mirrored -o runs/fleet
    """
    from gru_edge.model import TrainConfig, train as train_model

    if devices is not None and distribute != "mirrored":
        raise click.UsageError("--devices is for --distribute mirrored (multi-worker uses each process's devices).")
    if stray:
        expanded = " The shell expanded a pattern into several files: quote it, as in --data 'logs/*.csv'." \
            if Path(data).is_file() and all(Path(s).is_file() for s in stray) else ""
        raise click.UsageError(f"Got unexpected extra arguments ({' '.join(stray)}).{expanded}")
    cfg = TrainConfig(data=data, column=column, features=tuple(f.strip() for f in features.split(",") if f.strip()),
                      window=window, horizon=horizon, units=units, layers=layers, epochs=epochs, seed=seed,
                      task=task, transform=transform, test_size=test_size, season=season, patience=patience,
                      batch_size=batch_size, learning_rate=learning_rate, distribute=distribute, devices=devices)
    result = train_model(cfg, run_dir, log=log)
    if as_json:
        return _emit_json(result.to_dict())
    click.echo("\n".join(text.train_summary(result)))


# ---- recipes / convert ------------------------------------------------------------------------------------------

@cli.command("recipes", context_settings=CONTEXT)
@command
def recipes_cmd(as_json, log):
    """List the shipped conversion recipes.

    \b
    Example:
      gru-edge recipes
    """
    from gru_edge import recipes
    from gru_edge.api import list_recipes

    found = list_recipes()
    if as_json:
        return _emit_json({"dir": str(recipes.shipped_dir()), "recipes": [r.to_dict() for r in found]})
    click.echo(text.table(["recipe", "quantization", "unroll", "gpu", "description"],
                          [[r.name, r.quantization, str(r.unroll).lower(), r.gpu.precision if r.gpu else "-",
                            r.description] for r in found]))


def _budget(ctx, param, value):
    if value is None:
        return None
    from gru_edge.budget import parse_budget

    try:
        return parse_budget(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a budget; give a relative change such as 1% or 0.01.") from None


@cli.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--to", "to", help="Recipe names or .toml paths, comma-separated (see 'gru-edge recipes')")
@click.option("--budget", callback=_budget,
              help="Keep the smallest model whose held-out task metric changes by at most this much (e.g. 1%); "
                   "--to then lists the candidates")
@click.option("--calibration", type=click.Path(dir_okay=False, path_type=Path),
              help="Windows shaped like the model's input (.npy, .npz, .csv) for int8 / int16x8; default: the "
                   "training windows 'gru-edge train' wrote beside the model")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for model.RECIPE.tflite and model.RECIPE.json")
@command
def convert(model, to, budget, calibration, out_dir, as_json, log):
    """Convert a .keras GRU model to one .tflite per recipe, builtin ops only; exit 1 if a recipe could not be made
    (the others are written).

    \b
    Examples:
      gru-edge convert runs/airline/model.keras --to float32,int8,android-gpu -o out
      gru-edge convert my/gru.keras --to float32,int8 --calibration windows.npy -o out
      gru-edge convert runs/airline/model.keras --budget 1% -o out
    """
    names = [t.strip() for t in to.split(",") if t.strip()] if to else None
    if budget is not None:
        if calibration:
            raise click.UsageError("--budget measures the task metric on the training card's held-out windows; "
                                   "it takes no --calibration.")
        return _convert_with_budget(model, names, budget, out_dir, as_json, log)
    if not names:
        raise click.UsageError("Give --to RECIPE[,RECIPE...] or --budget.")
    from gru_edge.conversion import convert as run_convert

    result = run_convert(model, names, out_dir, calibration=calibration, log=log)
    failure = "; ".join(f"{r}: not made" for r, _ in result.failed) or None
    if as_json:
        _emit_json(result.to_dict(), 1 if failure else 0, failure)
        sys.exit(1 if failure else 0)
    click.echo(text.table(["recipe", "file", "size", "weights", "ops"],
                          [[m.recipe, str(m.path), f"{m.size_bytes / 1024:.1f} KiB", f"{m.weight_bytes / 1024:.1f} KiB",
                            str(sum(m.ops.values()))] for m in result.models]))
    for m in result.models:
        for note in m.notes:
            click.echo(f"note: {m.recipe}: {note}")
    click.echo(f"converted in {result.seconds:.1f} s")
    for recipe, why in result.failed:
        click.echo(f"Error: {why}", err=True)
    sys.exit(1 if failure else 0)


def _convert_with_budget(model, names, budget, out_dir, as_json, log):
    from gru_edge.budget import search

    result = search(model, budget, out_dir, names, log=log)
    failure = result.failure
    if as_json:
        _emit_json(result.to_dict(), 1 if failure else 0, failure)
        sys.exit(1 if failure else 0)
    click.echo(text.table(["try", "recipe", "size", "max abs error", "task metric change", "within budget"],
                          [[str(i), t.recipe, f"{t.size_bytes / 1024:.1f} KiB", text.err(t.max_abs_error),
                            text.delta(t.task_delta), "yes" if t.accepted else "no"]
                           for i, t in enumerate(result.tries, start=1)]))
    if failure:
        raise click.ClickException(failure)
    click.echo(f"kept {result.chosen.recipe}: {result.chosen.path} ({result.chosen.size_bytes / 1024:.1f} KiB)\n"
               f"bundle: {result.bundle} (gru-edge verify --bundle {result.bundle})")


# ---- verify -----------------------------------------------------------------------------------------------------

@cli.command(context_settings=CONTEXT)
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option("--bundle", "bundle", type=click.Path(file_okay=False, path_type=Path),
              help="Re-check a parity bundle (no TensorFlow needed) instead of comparing with Keras")
@click.option("--model", "bundle_model", type=click.Path(dir_okay=False, path_type=Path),
              help="With --bundle: the .tflite to check (default: the bundle's own copy)")
@click.option("--recipe", help="Limits from this recipe (a shipped name or a .toml) instead of the sidecar's or the "
                              "bundle's")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write a parity bundle to this folder")
@click.option("--accelerator", type=click.Choice(["cpu", "gpu"]), default="cpu", show_default=True,
              help="gpu: run through LiteRT's CompiledModel GPU accelerator (exit 3 when no GPU is usable)")
@click.option("--runtime", type=click.Choice(["litert", "tflite-runtime", "tensorflow", "litert-compiled"]),
              default="litert", show_default=True,
              help="What runs the .tflite: ai-edge-litert's Interpreter, tflite-runtime (e.g. 2.14 on a Raspberry "
                   "Pi), TensorFlow's tf.lite, or ai-edge-litert's CompiledModel on the CPU with the weight cache (as "
                   "the Android demo); each imported only when chosen")
@click.option("--explain", is_flag=True, help="int8: rank the quantized ops by their error against float, each named by "
              "its layer, gate and time step")
@click.option("--samples", type=click.Path(dir_okay=False, path_type=Path),
              help="Sample windows shaped like the model's input (.npy, .npz, .csv); default: the training card's "
                   "held-out windows, or generated ones")
@click.option("--targets", type=click.Path(dir_okay=False, path_type=Path),
              help="With --samples: the true outputs (or class indices), for the task-metric delta")
@command
def verify(models, bundle, bundle_model, recipe, out_dir, accelerator, runtime, explain, samples, targets, as_json,
           log):
    """Check a .tflite gives the original model's outputs; exit 0 pass, 1 fail, 3 no GPU.

    \b
    Examples:
      gru-edge verify runs/airline/model.keras out/model.int8.tflite -o bundle-int8
      gru-edge verify --bundle bundle-int8
      gru-edge verify --bundle bundle-int8 --runtime tflite-runtime
      gru-edge verify runs/airline/model.keras out/model.android-gpu.tflite --accelerator gpu
    """
    if targets and not samples:
        raise click.UsageError("--targets needs --samples (the windows they belong to).")
    if accelerator == "gpu" and runtime != "litert":
        raise click.UsageError("--accelerator gpu runs ai-edge-litert's CompiledModel; --runtime applies to the CPU "
                               "interpreter.")
    if bundle is not None:
        if models or out_dir or explain or samples:
            raise click.UsageError("--bundle takes no MODEL arguments, -o, --explain or --samples; use --model to "
                                   "pick a .tflite.")
        from gru_edge.parity import check_bundle

        report = check_bundle(bundle, bundle_model, accelerator=accelerator, recipe=recipe, runtime=runtime)
        doc, header = {"bundle": str(bundle), **report.to_dict()}, f"bundle {bundle}"
    else:
        if len(models) != 2 or bundle_model:
            raise click.UsageError("Give MODEL.keras and MODEL.tflite (or --bundle DIR [--model X.tflite]).")
        from gru_edge.verification import verify as run_verify

        if accelerator == "gpu" and out_dir:
            raise click.UsageError("-o writes a bundle from the CPU run; run --accelerator gpu without -o.")
        result = run_verify(models[0], models[1], out_dir, recipe, accelerator, samples=samples, targets=targets,
                            runtime=runtime, explain=explain, log=log)
        report, doc = result.report, result.to_dict()
        header = f"{models[1]} vs {models[0]} (recipe {result.recipe}; {result.samples.source})"
        if result.bundle:
            header += f"\nbundle: {result.bundle}"
    if as_json:
        _emit_json(doc, 0 if report.passed else 1)
    else:
        click.echo(text.parity_report(report, header))
        if explain:
            click.echo(text.explanation(result.explanation))
    sys.exit(0 if report.passed else 1)


# ---- inspect ----------------------------------------------------------------------------------------------------

def _known_runtime(value: str | None) -> str | None:
    from gru_edge.errors import GruEdgeError
    from gru_edge.runtimes import known_runtime

    try:
        return known_runtime(value) if value else None
    except GruEdgeError as e:
        raise click.BadParameter(str(e)) from None


@cli.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--runtime", metavar="RUNTIME", callback=lambda ctx, param, value: _known_runtime(value),
              help="Predict from the op versions what this runtime refuses at load (tflite-runtime==2.14); exit 1 "
                   "if it would")
@command
def inspect(model, runtime, as_json, log):
    """Show a .tflite's description, signatures, ops, size split and GPU findings (no TensorFlow needed).

    \b
    Examples:
      gru-edge inspect out/model.android-gpu.tflite
      gru-edge inspect out/model.int8.tflite --runtime tflite-runtime==2.14
    """
    from gru_edge.api import inspect as read

    found = read(model, runtime)
    code = 1 if found.runtime is not None and not found.runtime.loads else 0
    if as_json:
        _emit_json(found.to_dict(), code)
        sys.exit(code)
    click.echo(text.inspection(model.name, found.model, list(found.gpu_findings), found.description, found.runtime))
    sys.exit(code)


# ---- bench ------------------------------------------------------------------------------------------------------

@cli.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--to", "to", help="gru-edge recipes to include, comma-separated (default: all shipped)")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--iterations", type=click.IntRange(min=10), default=200, show_default=True,
              help="Timed runs per model per round")
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True)
@command
def bench(model, to, threads, iterations, rounds, as_json, log):
    """Time Keras, TensorFlow's plain converter paths, gru-edge's recipes and ONNX Runtime at batch 1.

    \b
    Example:
      gru-edge bench runs/airline/model.keras --threads 1
    """
    from gru_edge.bench import bench as run_bench

    names = [t.strip() for t in to.split(",") if t.strip()] if to else None
    result = run_bench(model, names, threads, iterations, rounds, log=log)
    if as_json:
        return _emit_json(result.to_dict())
    click.echo(result.markdown())


# ---- android ----------------------------------------------------------------------------------------------------

@cli.command(context_settings=CONTEXT)
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--bundle", "bundle", type=click.Path(file_okay=False, path_type=Path),
              help="Parity bundle made for this model (gru-edge verify ... -o DIR)")
@click.option("--demo", type=click.Path(file_okay=False, path_type=Path), default="android_demo", show_default=True,
              help="The Android demo project")
@click.option("--init", "init_dir", type=click.Path(file_okay=False, path_type=Path),
              help="First write the demo project (shipped with gru-edge) into this new folder; with MODEL, then put "
                   "the model in it")
@command
def android(model, bundle, demo, init_dir, as_json, log):
    """Check a model against the demo's pinned LiteRT and GPU rules, then copy it and its bundle in.

    \b
    Examples:
      gru-edge android --init my-demo
      gru-edge android out/model.android-gpu.tflite --bundle bundles/android-gpu --demo my-demo
    """
    from gru_edge.android import ASSETS, init, install

    if model is None and init_dir is None:
        raise click.UsageError("Give MODEL --bundle DIR (to put a model in the demo), or --init DIR (to write the "
                               "demo project).")
    if model is not None and bundle is None:
        raise click.UsageError("MODEL needs --bundle DIR: the parity bundle made for it (gru-edge verify -o DIR).")
    if init_dir is not None:
        demo = init(init_dir)
        log(f"wrote the Android demo project to {demo}")
        if model is None:
            doc = {"demo": str(demo), "next": [f"gru-edge android MODEL.tflite --bundle BUNDLE --demo {demo}",
                                               f"bash {demo}/jvm-test.sh"]}
            if as_json:
                return _emit_json(doc)
            click.echo(f"{demo}: the gru-edge Android demo (default model: android-gpu on the airline series)\n"
                       f"next: gru-edge android MODEL.tflite --bundle BUNDLE --demo {demo}; open {demo} in Android "
                       f"Studio (README: the Android demo)")
            return
    result = install(model, bundle, demo)
    if as_json:
        return _emit_json(result.to_dict())
    click.echo(f"{demo / ASSETS}: {', '.join(result.assets)}")
    click.echo(f"LiteRT pinned by the demo: {result.litert_pinned} (model loaded with ai-edge-litert "
               f"{result.litert_checked})")
    for w in result.warnings:
        click.echo(f"warning: {w}")


# ---- quickstart -------------------------------------------------------------------------------------------------

@cli.command(context_settings=CONTEXT)
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default="quickstart-out",
              show_default=True, help="Folder for the run, the models and the bundles")
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@command
def quickstart(out_dir, epochs, seed, as_json, log):
    """Train on the airline data, convert to every shipped recipe, verify each, draw the report.

    \b
    Example:
      gru-edge quickstart -o quickstart-out
    """
    from gru_edge.model import TrainConfig
    from gru_edge.quickstart import run

    result = run(out_dir, TrainConfig(epochs=epochs, seed=seed), log=log)
    if as_json:
        _emit_json(result.to_dict(), 0 if result.passed else 1)
    else:
        click.echo(text.quickstart_summary(result.to_dict()))
    sys.exit(0 if result.passed else 1)


# ---- report -----------------------------------------------------------------------------------------------------

@cli.command(context_settings=CONTEXT)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path),
              help="For a folder of converted models: the run folder that trained their model (default: the one "
                   "their descriptions name)")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="The page to write (default: FOLDER/report.html)")
@command
def report(folder, run_dir, out, as_json, log):
    """Draw a one-page HTML report on a quickstart folder or on a folder of converted models: the series and the
    forecasts, every model against the original, errors, streaming error per time step, size, latency.

    \b
    Examples:
      gru-edge report quickstart-out
      gru-edge report out --run runs/airline
    """
    from gru_edge.report import write

    result = write(folder, log=log, run=run_dir, out=out)
    if as_json:
        return _emit_json(result.to_dict())
    click.echo(f"{result.path}: {len(result.figures)} pictures ({'; '.join(result.figures)}) and the table of "
               f"{len(result.recipes)} recipes")


def main() -> None:
    cli.main(prog_name="gru-edge")
