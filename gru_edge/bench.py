"""Latency and size side by side, in one run: Keras, TensorFlow's plain converter paths, gru-edge per recipe, ONNX Runtime.

Batch 1, a fixed number of threads, every model timed in interleaved rounds so that machine noise hits all alike.
Each .tflite is timed twice: with ai-edge-litert's Interpreter as it comes (XNNPACK packs the weights of every
FULLY_CONNECTED node separately, so an unrolled graph touches one packed copy per step), and with LiteRT's
CompiledModel on the CPU with XNNPACK's weight cache (``CpuOptions(xnnpack_weight_cache_path=":memory")``, as
the Android demo sets it), which packs identical weights once.
"Weight bytes" is what the weights take in that row's number format (kernels at 4/2/1 bytes for float32/float16/int8,
biases at 4 bytes, int16x8 biases at 8): the floor a file could reach.
"""

from __future__ import annotations

import gc
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from gru_edge import conversion as convert_mod, recipes, tflite_model
from gru_edge.errors import ConversionError
from gru_edge.io import native_stderr, quiet_tensorflow
from gru_edge.names import SERVE, STEP

PLAIN = {  # TensorFlow's own conversion of the Keras layers, for comparison
    "plain-while-float32": ("float32", False),
    "plain-unrolled-float32": ("float32", True),
    "plain-unrolled-dynamic-int8": ("dynamic-int8", True),
    "plain-unrolled-int8": ("int8", True),
    "plain-while-int8": ("int8", False),
}
CACHED = " [weight cache]"
XNNPACK_IN_MEMORY_CACHE = ":memory"  # XNNPACK's name for a cache that lives in memory only
_KERNEL_BYTES = {"float32": 4, "float16": 2, "dynamic-int8": 1, "int8": 1, "int16x8": 1}


@dataclass(frozen=True)
class BenchRow:
    name: str
    quantization: str
    size_bytes: int | None
    weight_bytes: int
    median_us: float | None
    p90_us: float | None
    note: str = ""
    cached_median_us: float | None = None  # CompiledModel CPU with XNNPACK's weight cache

    @property
    def size_ratio(self) -> float | None:
        return self.size_bytes / self.weight_bytes if self.size_bytes else None

    def to_dict(self) -> dict:
        return asdict(self) | {"size_ratio": self.size_ratio}


@dataclass(frozen=True)
class BenchResult:
    model: str
    threads: int
    rows: tuple[BenchRow, ...]
    convert_seconds: float
    streaming: dict | None

    def row(self, name: str) -> BenchRow:
        return next(r for r in self.rows if r.name == name)

    def to_dict(self) -> dict:
        return {"model": self.model, "threads": self.threads, "convert_seconds": self.convert_seconds,
                "streaming": self.streaming, "rows": [r.to_dict() for r in self.rows]}

    def markdown(self) -> str:
        base = next((r for r in self.rows if r.name == "plain-unrolled-float32" and r.median_us), None)
        lines = ["| path | file | weights | file ÷ weights | median µs | p90 µs | vs plain unrolled fp32 | "
                 "weight cache: median µs | vs plain unrolled fp32 | note |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        kb = lambda n: f"{n / 1024:.1f} KiB" if n else "-"  # noqa: E731
        us = lambda v: f"{v:.1f}" if v else "-"  # noqa: E731
        for r in self.rows:
            vs = f"{r.median_us / base.median_us:.2f}×" if base and r.median_us else "-"
            vs_cached = (f"{r.cached_median_us / base.cached_median_us:.2f}×"
                         if base and base.cached_median_us and r.cached_median_us else "-")
            ratio = f"{r.size_ratio:.2f}" if r.size_ratio else "-"
            lines.append(f"| {r.name} | {kb(r.size_bytes)} | {kb(r.weight_bytes)} | {ratio} | {us(r.median_us)} | "
                         f"{us(r.p90_us)} | {vs} | {us(r.cached_median_us)} | {vs_cached} | {r.note} |")
        if self.streaming:
            s = self.streaming
            lines.append("")
            lines.append(f"Streaming ({s['recipe']}): step {s['step_us']:.1f} µs × {s['time_steps']} steps = "
                         f"{s['step_us'] * s['time_steps']:.1f} µs vs full sequence {s['full_us']:.1f} µs "
                         f"(ratio {s['ratio']:.2f}).")
        lines.append(f"Converting to the {len([r for r in self.rows if r.name.startswith('gru-edge')])} gru-edge "
                     f"recipes took {self.convert_seconds:.1f} s.")
        return "\n".join(lines)


def weight_bytes(keras_model, quantization: str) -> int:
    total = 0
    for w in keras_model.weights:
        is_bias = "bias" in w.path
        size = int(np.prod(w.shape))
        if is_bias:
            total += size * (8 if quantization == "int16x8" else 4)
        else:
            total += size * _KERNEL_BYTES[quantization]
    return total


def plain_recipe(name: str) -> recipes.Recipe:
    q, unroll = PLAIN[name]
    tol = {"atol": 0.1, "rtol": 0.1, "min_psnr_db": 0.0, "max_task_metric_delta": 0.5}  # bench checks no parity
    return recipes.parse({"description": f"TensorFlow's converter on the Keras layers ({name})",
                          "convert": {"quantization": q, "lowering": "keras", "unroll": unroll},
                          "verify": tol}, name)


def _time(fns: dict[str, callable], iterations: int, rounds: int) -> dict[str, tuple[float, float]]:
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        for _ in range(20):  # warm-up
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            ts = []
            for _ in range(iterations):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            samples[name].extend(ts)
    return {k: (float(np.median(v)) * 1e6, float(np.percentile(v, 90)) * 1e6) for k, v in samples.items()}


def time_files(paths: dict[str, Path], threads: int = 1, iterations: int = 200,
               rounds: int = 5) -> dict[str, tuple[float, float]]:
    """Median µs of each .tflite with the Interpreter and with CompiledModel + weight cache, timed interleaved."""
    timers: dict[str, callable] = {}
    for name, path in paths.items():
        _timers_for(name, path, threads, timers)
    timed = _time(timers, iterations, rounds)
    _release(timers)
    return {name: (timed[name][0], timed[name + CACHED][0]) for name in paths}


def _release(timers: dict) -> None:
    """Drop the loaded models now, quietly: each CompiledModel logs a line per accelerator when it goes."""
    with native_stderr():
        timers.clear()
        gc.collect()


def _probe(shape) -> np.ndarray:
    """Timing input: uniform in [0, 1), valid for every model (a token id reads as 0; latency does not depend on
    the values)."""
    return np.random.default_rng(0).random(shape).astype(np.float32)


def _interpreter_call(path: Path, threads: int, signature: str = SERVE):
    from ai_edge_litert.interpreter import Interpreter

    with native_stderr():  # "Created TensorFlow Lite XNNPACK delegate for CPU."
        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
    runner = interp.get_signature_runner(signature)
    feeds = {k: _probe(d["shape"]) for k, d in runner.get_input_details().items()}
    runner(**feeds)  # sets the inputs and allocates once
    # Time the graph alone: the signature runner's Python call re-sizes and re-allocates on every call.
    wrapper, subgraph = interp._interpreter, runner._subgraph_index  # noqa: SLF001
    return lambda: wrapper.Invoke(subgraph)


def _compiled_call(path: Path, threads: int):
    """A CompiledModel run on the CPU with XNNPACK's weight cache, kept in memory (as the Android demo does)."""
    from ai_edge_litert.compiled_model import CompiledModel, CpuOptions, HardwareAccelerator, Options

    with native_stderr():  # the accelerator registry's and the buffers' environment log lines
        opts = Options(hardware_accelerators=HardwareAccelerator.CPU,
                       cpu_options=CpuOptions(num_threads=threads, xnnpack_weight_cache_path=XNNPACK_IN_MEMORY_CACHE))
        model = CompiledModel.from_file(str(path), options=opts)
        ins, outs = model.create_input_buffers(0), model.create_output_buffers(0)
        for name, buf in zip(model.get_signature_list()[SERVE]["inputs"], ins):
            shape = model.get_input_tensor_details(SERVE)[name]["shape"]
            buf.write(_probe(int(np.prod(shape))))
        model.run_by_index(0, ins, outs)  # builds the cache
    return lambda: model.run_by_index(0, ins, outs)


def _timers_for(name: str, path: Path, threads: int, timers: dict) -> None:
    timers[name] = _interpreter_call(path, threads)
    timers[name + CACHED] = _compiled_call(path, threads)


def bench(model_path: Path, recipe_names: list[str] | None = None, threads: int = 1, iterations: int = 200,
          rounds: int = 5, log=lambda msg: None) -> BenchResult:
    """Convert ``model_path`` every way, time each at batch 1, and return the rows."""
    from gru_edge.card import load as load_card
    from gru_edge.runs import load_model

    model_path = Path(model_path)
    names = recipe_names or recipes.shipped_names()
    with quiet_tensorflow():
        import tensorflow as tf
    try:  # only possible before TensorFlow's first op in this process
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log("note: TensorFlow was already running; its thread count is its own")
    keras_model = load_model(model_path)
    shape = tuple(keras_model.inputs[0].shape[1:])  # [T, F], or [T] token ids
    has_card = load_card(model_path) is not None
    rows: list[BenchRow] = []
    timers: dict[str, callable] = {}
    with tempfile.TemporaryDirectory(prefix="gru-edge-bench-") as tmp:
        tmp = Path(tmp)
        log(f"converting {model_path.name} with gru-edge: {', '.join(names)} (+ streaming float32)")
        streaming = replace(recipes.load("float32"), name="float32-streaming", streaming=True)
        ours = convert_mod.convert(model_path, names + [streaming], tmp / "gru-edge")
        for name, why in ours.failed:  # e.g. int8 without calibration windows: a row saying why
            q = recipes.load(name).quantization if name != streaming.name else "float32"
            rows.append(BenchRow(f"gru-edge {name}", q, None, weight_bytes(keras_model, q), None, None,
                                 f"not made: {why[:80]}"))
        convert_seconds = sum(m.seconds for m in ours.models if m.recipe != "float32-streaming")
        for m in ours.models:
            if m.recipe == "float32-streaming":
                continue
            q = recipes.load(m.recipe).quantization
            # the weights stored in the file, as convert and inspect report them (the lowering merges the GRU's two
            # bias vectors of the update and reset gates, so this can be below the Keras parameters' bytes)
            rows.append(BenchRow(f"gru-edge {m.recipe}", q, m.size_bytes, m.weight_bytes, None, None))
            _timers_for(rows[-1].name, m.path, threads, timers)
        stream = next((m for m in ours.models if m.recipe == streaming.name), None)
        if stream and any(s.key == STEP for s in tflite_model.read(stream.path).signatures):  # chains only
            timers["stream-full"] = _interpreter_call(stream.path, threads)
            timers["stream-step"] = _interpreter_call(stream.path, threads, STEP)

        for name in PLAIN:
            q = PLAIN[name][0]
            if q == "int8" and not has_card:
                rows.append(BenchRow(name, q, None, weight_bytes(keras_model, q), None, None,
                                     "needs the training card for calibration"))
                continue
            log(f"converting with TensorFlow's plain path: {name}")
            try:
                got = convert_mod.convert(model_path, [plain_recipe(name)], tmp / "plain").require_all().models[0]
            except ConversionError as e:
                note = "converter crashed" if "crashed" in str(e) else f"conversion failed: {str(e)[:80]}"
                rows.append(BenchRow(name, q, None, weight_bytes(keras_model, q), None, None, note))
                continue
            rows.append(BenchRow(name, q, got.size_bytes, weight_bytes(keras_model, q), None, None))
            _timers_for(name, got.path, threads, timers)

        spec = tf.TensorSpec([1, *shape], tf.float32)
        keras_fn = tf.function(lambda x: keras_model(x, training=False), input_signature=[spec])
        x = tf.constant(_probe((1, *shape)))
        timers["keras tf.function"] = lambda: keras_fn(x).numpy()
        rows.append(BenchRow("keras tf.function", "float32", None, weight_bytes(keras_model, "float32"), None, None,
                             f"TensorFlow {tf.__version__}, includes the Python call"))
        rows.append(_onnx_row(keras_model, tmp, threads, timers))

        paths = [n for n in timers if not n.endswith(CACHED) and not n.startswith("stream-")]
        cached = sum(1 for n in timers if n.endswith(CACHED))
        log(f"timing {len(paths)} rows ({cached} also through CompiledModel with the weight cache"
            f"{', and the streaming step' if 'stream-step' in timers else ''}): {rounds} rounds x {iterations} runs, "
            f"{threads} thread(s)")
        timed = _time(timers, iterations, rounds)
        _release(timers)
    rows = [BenchRow(r.name, r.quantization, r.size_bytes, r.weight_bytes, *timed.get(r.name, (None, None)), r.note,
                     timed.get(r.name + CACHED, (None,))[0]) for r in rows]
    streaming = None
    if "stream-step" in timed:
        (full, _), (step, _), t = timed["stream-full"], timed["stream-step"], shape[0]
        streaming = {"recipe": "float32 + streaming", "time_steps": t, "full_us": full, "step_us": step,
                     "ratio": step * t / full}
    return BenchResult(str(model_path), threads, tuple(rows), round(convert_seconds, 2), streaming)


def _onnx_row(keras_model, tmp: Path, threads: int, timers: dict) -> BenchRow:
    name = "onnxruntime (Keras ONNX export)"
    wb = weight_bytes(keras_model, "float32")
    try:
        import onnxruntime as ort
        import tf2onnx  # noqa: F401  (Keras' ONNX export needs it)
    except ImportError:
        return BenchRow(name, "float32", None, wb, None, None, "not installed: pip install 'gru-edge[bench]'")
    x = _probe((1, *keras_model.inputs[0].shape[1:]))
    keras_model(x)
    path = tmp / "model.onnx"
    try:
        with quiet_tensorflow():  # tf2onnx warns about NumPy 2 aliases
            keras_model.export(str(path), format="onnx", verbose=False)
    except Exception as e:  # the exporter's failures are many and not ours to classify
        return BenchRow(name, "float32", None, wb, None, None, f"export failed: {str(e)[:80]}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    timers[name] = lambda: session.run(None, feed)
    return BenchRow(name, "float32", path.stat().st_size, wb, None, None, f"onnxruntime {ort.__version__}")
