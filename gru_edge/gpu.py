"""GPU readiness: gru-edge's own rule checker, and a real run through LiteRT's CompiledModel GPU accelerator.

The classic rules follow TensorFlow Lite's ``lite/tools/versioning/gpu_compatibility.cc`` (the checks the GPU delegate
applies per op). The LiteRT GPU rules are the ones measured for this project (see README): control flow, variable
tensors and dynamic shapes keep a model off LiteRT's GPU accelerator. TensorFlow's own analyzer said "compatible" for
a WHILE model the GPU refused, so gru-edge checks for itself. No TensorFlow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gru_edge.errors import GpuUnavailable
from gru_edge.io import native_stderr
from gru_edge.names import SERVE, STEP
from gru_edge.runtime import in_batches, run_steps
from gru_edge.tflite_model import OpUse, TfliteModel

CLASSIC, LITERT = "classic GPU delegate", "LiteRT GPU"

# Ops the classic delegate accepts with no condition beyond "one runtime input" (elementwise) or none at all.
_UNARY = {"ABS", "CEIL", "COS", "ELU", "EXP", "FLOOR", "GELU", "LOG", "LOGISTIC", "NEG", "RSQRT", "SIGN", "SIN",
          "SQRT", "SQUARE", "TANH"}
_BINARY = {"ATAN2", "DIV", "EQUAL", "FLOOR_DIV", "FLOOR_MOD", "GREATER", "GREATER_EQUAL", "LOGICAL_AND", "LESS",
           "LESS_EQUAL", "MAXIMUM", "MINIMUM", "NOT_EQUAL", "POW", "SQUARED_DIFFERENCE", "SUB"}
_ALWAYS = {"PACK", "SPLIT", "SPLIT_V", "CONCATENATION", "RESHAPE", "QUANTIZE", "RELU", "RELU6", "LEAKY_RELU",
           "RELU_N1_TO_1", "PRELU", "TRANSPOSE", "TILE", "HARD_SWISH", "AVERAGE_POOL_2D", "MAX_POOL_2D", "CONV_2D",
           "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "BATCH_MATMUL",
           "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "PAD", "PADV2", "MIRROR_PAD", "SELECT",
           "SELECT_V2", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "CUMSUM", "ONE_HOT", "EMBEDDING_LOOKUP", "CAST",
           "DENSIFY", "LSTM", "ADD_N", "DYNAMIC_UPDATE_SLICE"}
_CONTROL_FLOW = {"WHILE", "IF", "CALL_ONCE"}
_VARIABLES = {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"}
# A GPU shader binds each runtime tensor of an op as a storage buffer; WebGPU guarantees 8 per shader stage. Past the
# adapter's limit LiteRT's GPU accelerator still reports the model fully accelerated but computes wrong outputs
# (measured: a 24-way SPLIT on an H200, whose limit is 16).
MAX_BUFFERS = 8


@dataclass(frozen=True)
class Finding:
    rules: str
    subgraph: int
    index: int
    op: str
    reason: str

    def __str__(self) -> str:
        return f"[{self.rules}] op #{self.index} {self.op}: {self.reason}"

    def to_dict(self) -> dict:
        return asdict(self)


def _broadcast_ok(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    for x, y in zip(reversed(a), reversed(b)):
        if x != y and x != 1 and y != 1:
            return False
    return True


def _classic_reason(op: OpUse) -> str | None:
    """Why the classic GPU delegate would refuse ``op``, or None when it accepts it."""
    name, shapes, const = op.name, op.input_shapes, op.input_const
    runtime = sum(1 for c in const if not c)
    if name.startswith("CUSTOM:"):
        return "custom op (Flex or vendor): not supported"
    if name in ("ADD", "MUL"):
        if len(shapes) != 2:
            return f"{name} needs two inputs"
        a, b = shapes
        if len(a) > 1 and len(b) > 1 and len(a) != len(b) and not _broadcast_ok(a, b):
            return f"cannot broadcast {list(a)} with {list(b)}"
        if name == "MUL" and len(a) == len(b):
            smaller_a = any(x < y for x, y in zip(a, b))
            smaller_b = any(y < x for x, y in zip(a, b))
            if smaller_a and smaller_b:
                return f"MUL needs one input not smaller than the other in every dimension ({list(a)} x {list(b)})"
        return None
    if name in _UNARY:
        return None if runtime == 1 and len(const) == 1 else f"{name} takes exactly one runtime input"
    if name in _BINARY:
        ok = (runtime == 2 and len(const) == 2) or (runtime == 1 and len(const) == 2)
        return None if ok else f"{name} takes two inputs, at most one of them constant"
    if name == "FULLY_CONNECTED":
        if op.options.get("weightsFormat", 0) != 0:
            return "shuffled weights format is not supported"
        if runtime > 2:
            return "more than 2 runtime inputs"
        if const and const[0]:
            return "constant input is not supported"
        if op.options.get("keepNumDims") and len(shapes[0]) != len(op.output_shapes[0]):
            return "keep_num_dims with different input and output ranks"
        return None
    if name in ("STRIDED_SLICE", "SLICE"):
        if len(shapes[0]) not in (3, 4):
            return f"{name} on a {len(shapes[0])}-D tensor (only 3-D or 4-D are supported)"
        for mask in ("ellipsisMask", "newAxisMask", "shrinkAxisMask"):
            if op.options.get(mask):
                return f"{name} with {mask} is not supported"
        return None
    if name == "GATHER":
        if op.input_types and op.input_types[0] == "int32":
            return "GATHER of int32 data is not supported"
        if len(shapes) > 1 and len(shapes[1]) != 1:
            return "GATHER needs 1-D indices"
        return None
    if name == "DEQUANTIZE":
        return "int16 dequantization is not supported" if op.input_types[:1] == ("int16",) else None
    if name == "SOFTMAX":
        return None if op.options.get("beta", 1.0) == 1.0 else "SOFTMAX with beta != 1"
    if name in _ALWAYS:
        return None
    return f"{name} is not supported by the GPU delegate"


def _litert_reason(op: OpUse) -> str | None:
    """Why LiteRT's GPU accelerator would refuse ``op`` or compute it wrongly, or None."""
    if op.name in _CONTROL_FLOW:
        return "control flow: the GPU accelerator refuses the model ('Failed to modify graph')"
    if op.name in _VARIABLES:
        return "variable tensors: CompiledModel refuses them; pass state explicitly"
    buffers = sum(not c for c in op.input_const) + len(op.output_shapes)
    if buffers > MAX_BUFFERS:
        return (f"{buffers} runtime tensors: WebGPU guarantees {MAX_BUFFERS} storage buffers per shader; past the "
                "GPU's limit it runs 'fully accelerated' with wrong outputs")
    return None


def check(model: TfliteModel) -> list[Finding]:
    """Return one finding per op (or model property) that keeps the model off a GPU, under both rule sets."""
    findings = []
    for op in model.ops:
        for rules, reason in ((CLASSIC, _classic_reason(op)), (LITERT, _litert_reason(op))):
            if reason:
                findings.append(Finding(rules, op.subgraph, op.index, op.name, reason))
    if model.dynamic_tensors:
        findings.append(Finding(LITERT, -1, -1, "-", f"{model.dynamic_tensors} tensors have dynamic shapes; GPU "
                                                     "delegates need static shapes (fixed batch)"))
    if model.variable_tensors:
        findings.append(Finding(LITERT, -1, -1, "-", f"{model.variable_tensors} variable tensors; CompiledModel "
                                                     "refuses them"))
    return findings


# ---- running on a real GPU ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuRun:
    available: bool
    reason: str  # why the GPU could not be used, or "" when it was
    fully_accelerated: bool
    outputs: dict[str, np.ndarray]
    stepped: dict[str, np.ndarray] | None = None  # the ``step`` signature fed one time step at a time, if it has one


_NO_GPU_MARKERS = ("No adapters found", "Couldn't load Vulkan", "Failed to initialize WebGPU", "No GPU",
                   "could not be loaded")


def run_compiled(model_path: Path, inputs: np.ndarray, precision: str = "fp16", accelerator: str = "gpu") -> GpuRun:
    """Run ``inputs`` [N, T, F] through LiteRT's CompiledModel on the GPU accelerator (CPU fallback), or on the CPU
    with XNNPACK's in-memory weight cache (as the Android demo runs it). The GPU precision: GpuOptions(enforce_f32)
    for "fp32", LiteRT's default (fp16 where the GPU supports it) for "fp16"; the demo's GpuSettings.kt maps the
    same recipe settings to the Kotlin API."""
    from ai_edge_litert.compiled_model import CompiledModel, CpuOptions, GpuOptions, HardwareAccelerator, Options

    accel = HardwareAccelerator.GPU | HardwareAccelerator.CPU if accelerator == "gpu" else HardwareAccelerator.CPU
    cpu = CpuOptions(num_threads=1) if accelerator == "gpu" else CpuOptions(num_threads=1,
                                                                             xnnpack_weight_cache_path=":memory")
    opts = Options(hardware_accelerators=accel, gpu_options=GpuOptions(enforce_f32=precision == "fp32"),
                   cpu_options=cpu)
    with native_stderr() as log:  # LiteRT's native log lines (accelerator registry, WebGPU) stay off the terminal
        try:
            model = CompiledModel.from_file(str(model_path), options=opts)
        except RuntimeError as e:
            model, error = None, str(e)
        if model is not None:
            try:
                return _run(model, inputs)
            finally:
                model.close()
    text = log[0] if log else ""
    marker = next((m for m in _NO_GPU_MARKERS if m in text), None)
    reason = (f"no usable GPU on this machine (LiteRT: {marker})" if marker
              else f"LiteRT could not compile the model for the GPU: {error.strip().splitlines()[-1][:200]}")
    return GpuRun(False, reason, False, {})


def _run(model, inputs: np.ndarray) -> GpuRun:
    sigs = model.get_signature_list()
    key = SERVE if SERVE in sigs else next(iter(sigs))
    run, (name, detail) = _signature(model, key), next(iter(model.get_input_tensor_details(key).items()))
    outputs = in_batches(inputs, detail["shape"][0], lambda chunk: run({name: chunk}))
    stepped = None
    if STEP in sigs:
        stepped = run_steps(_signature(model, STEP), model.get_input_tensor_details(STEP), inputs)
    return GpuRun(True, "", bool(model.is_fully_accelerated()), outputs, stepped)


def _signature(model, key: str):
    """A function from {input name: array} to {output name: array} for one signature, its buffers made once."""
    ins = {k: model.create_input_buffer_by_name(key, k) for k in model.get_input_tensor_details(key)}
    out_details = model.get_output_tensor_details(key)
    outs = {k: model.create_output_buffer_by_name(key, k) for k in out_details}

    def run(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for k, v in feed.items():
            ins[k].write(np.ascontiguousarray(v, np.float32))
        model.run_by_name(key, ins, outs)
        return {k: np.asarray(buf.read(int(np.prod(out_details[k]["shape"])), np.float32))
                .reshape(out_details[k]["shape"]) for k, buf in outs.items()}

    return run


def gpu_outputs(model_path: Path, inputs: np.ndarray, precision: str) -> GpuRun:
    """Outputs from the GPU (full sequence, and streamed through ``step`` if the model has it); GpuUnavailable when
    no GPU can be used here."""
    run = run_compiled(model_path, inputs, precision)
    if not run.available:
        raise GpuUnavailable(f"GPU check not run: {run.reason}. This is not a pass: run it where a GPU is "
                             "available (exit status 3).")
    return run
