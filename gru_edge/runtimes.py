"""Which runtime runs a ``.tflite``: the Python runtimes a parity check can use, and what an older runtime
will refuse at load. No TensorFlow unless it is the runtime chosen.

- ``litert``: ai-edge-litert (the default; the runtime gru-edge installs).
- ``tflite-runtime``: tflite-runtime, the package Raspberry Pi images and older boards still ship. Its last release,
  2.14.0 (2023), imports only with numpy<2: install it in its own environment (``benchmarks/runtimes.py`` does).
- ``tensorflow``: TensorFlow's own ``tf.lite.Interpreter``.
- ``litert-compiled``: ai-edge-litert's CompiledModel on the CPU with XNNPACK's in-memory weight cache: the API and
  settings the Android demo uses.

A runtime refuses at load every operator version newer than it registers ("Didn't find op for builtin opcode 'X'
version 'N'"). ``predict`` tells, from a model's op versions, what a known older runtime will refuse.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import NamedTuple

from gru_edge.errors import GruEdgeError

class Runtime(NamedTuple):
    module: str  # holds its Interpreter class
    dists: tuple[str, ...]  # the packages it comes from (the first installed one names its version)
    install: str
    api: str = "Interpreter"


_LITERT = ("ai_edge_litert.interpreter", ("ai-edge-litert",), "pip install ai-edge-litert")
RUNTIMES = {
    "litert": Runtime(*_LITERT),
    "tflite-runtime": Runtime("tflite_runtime.interpreter", ("tflite-runtime",),
                              "pip install tflite-runtime==2.14.0 'numpy<2' (in an environment of its own: it "
                              "cannot import with numpy 2)"),
    "tensorflow": Runtime("tensorflow.lite.python.interpreter", ("tensorflow", "tensorflow-cpu"),
                          "pip install tensorflow-cpu"),
    # its Interpreter reads the signatures; gpu.run_compiled runs it
    "litert-compiled": Runtime(*_LITERT, api="CompiledModel (CPU, XNNPACK weight cache)"),
}


class RuntimeMissing(GruEdgeError):
    """The runtime asked for is not installed."""


def check_installed(name: str) -> None:
    """RuntimeMissing, naming what to install, when runtime ``name`` is not there (without importing it)."""
    from importlib.util import find_spec

    if name not in RUNTIMES:
        raise GruEdgeError(f"Unknown runtime '{name}': choose one of {', '.join(RUNTIMES)}.")
    if find_spec(RUNTIMES[name].module.split(".")[0]) is None:
        raise RuntimeMissing(f"The {name} runtime is not installed here: {RUNTIMES[name].install}.")


def interpreter_class(name: str):
    """The ``Interpreter`` class of runtime ``name``, imported only now; RuntimeMissing naming what to install."""
    check_installed(name)
    try:
        return importlib.import_module(RUNTIMES[name].module).Interpreter
    except ImportError as e:  # tflite-runtime 2.14 under numpy 2 raises ImportError too
        raise RuntimeMissing(f"The {name} runtime cannot be imported here ({str(e).splitlines()[0][:120]}): "
                             f"{RUNTIMES[name].install}.") from None


def describe(name: str) -> str:
    """"ai-edge-litert 2.3.0 Interpreter": the package and version that runtime ``name`` runs from."""
    from importlib.metadata import PackageNotFoundError, version

    runtime = RUNTIMES[name]
    for dist in runtime.dists:
        try:
            return f"{dist} {version(dist)} {runtime.api}"
        except PackageNotFoundError:
            continue
    return f"{runtime.dists[0]} {runtime.api}"


# ---- what an older runtime refuses ------------------------------------------------------------------------------
# tflite-runtime 2.14.0: the highest version of each builtin its op resolver registers (every op from version 1,
# BROADCAST_TO from 2), measured by loading a one-op-code model per op and version into the official 2.14.0 wheel;
# it agrees with tensorflow/lite/core/kernels/register.cc of the r2.14 cut except LOG (v2 came after). Builtin codes
# above 161 do not exist in 2.14 ("Op builtin_code out of range").
_TFLITE_2_14 = """
ADD 5, AVERAGE_POOL_2D 3, CONCATENATION 4, CONV_2D 7, DEPTHWISE_CONV_2D 7, DEPTH_TO_SPACE 2, DEQUANTIZE 5
EMBEDDING_LOOKUP 3, FLOOR 1, FULLY_CONNECTED 10, HASHTABLE_LOOKUP 1, L2_NORMALIZATION 2, L2_POOL_2D 1
LOCAL_RESPONSE_NORMALIZATION 1, LOGISTIC 3, LSH_PROJECTION 1, LSTM 4, MAX_POOL_2D 3, MUL 7, RELU 3
RELU_N1_TO_1 1, RELU6 3, RESHAPE 1, RESIZE_BILINEAR 4, RNN 3, SOFTMAX 3, SPACE_TO_DEPTH 2, SVDF 4, TANH 3
SKIP_GRAM 1, EMBEDDING_LOOKUP_SPARSE 1, PAD 4, UNIDIRECTIONAL_SEQUENCE_RNN 3, GATHER 6, BATCH_TO_SPACE_ND 4
SPACE_TO_BATCH_ND 4, TRANSPOSE 6, MEAN 3, SUB 5, DIV 2, SQUEEZE 2, UNIDIRECTIONAL_SEQUENCE_LSTM 4
STRIDED_SLICE 8, BIDIRECTIONAL_SEQUENCE_RNN 3, EXP 2, TOPK_V2 3, SPLIT 4, LOG_SOFTMAX 2
BIDIRECTIONAL_SEQUENCE_LSTM 3, CAST 5, PRELU 1, MAXIMUM 4, ARG_MAX 3, MINIMUM 4, LESS 3, NEG 1, PADV2 4
GREATER 2, GREATER_EQUAL 3, LESS_EQUAL 2, SELECT 4, SLICE 6, SIN 1, TRANSPOSE_CONV 4, SPARSE_TO_DENSE 3, TILE 3
EXPAND_DIMS 1, EQUAL 4, NOT_EQUAL 3, LOG 1, SUM 2, SQRT 1, RSQRT 2, SHAPE 1, POW 1, ARG_MIN 3, FAKE_QUANT 2
REDUCE_PROD 2, REDUCE_MAX 3, PACK 4, LOGICAL_OR 1, ONE_HOT 1, LOGICAL_AND 1, LOGICAL_NOT 1, UNPACK 4
REDUCE_MIN 3, FLOOR_DIV 3, REDUCE_ANY 1, SQUARE 1, ZEROS_LIKE 1, FILL 4, FLOOR_MOD 2, RANGE 2
RESIZE_NEAREST_NEIGHBOR 4, LEAKY_RELU 2, SQUARED_DIFFERENCE 2, MIRROR_PAD 3, ABS 5, SPLIT_V 2, UNIQUE 1, CEIL 1
REVERSE_V2 3, ADD_N 1, GATHER_ND 4, COS 1, WHERE 2, RANK 1, ELU 1, REVERSE_SEQUENCE 1, MATRIX_DIAG 1, QUANTIZE 3
MATRIX_SET_DIAG 1, ROUND 1, HARD_SWISH 1, IF 1, WHILE 1, NON_MAX_SUPPRESSION_V4 1, NON_MAX_SUPPRESSION_V5 1
SCATTER_ND 1, SELECT_V2 2, DENSIFY 1, SEGMENT_SUM 1, BATCH_MATMUL 4, CUMSUM 1, CALL_ONCE 1, BROADCAST_TO 3
RFFT2D 1, CONV_3D 1, IMAG 1, REAL 1, COMPLEX_ABS 1, HASHTABLE 1, HASHTABLE_FIND 1, HASHTABLE_IMPORT 1
HASHTABLE_SIZE 1, REDUCE_ALL 1, CONV_3D_TRANSPOSE 1, VAR_HANDLE 1, READ_VARIABLE 1, ASSIGN_VARIABLE 1
BROADCAST_ARGS 1, RANDOM_STANDARD_NORMAL 1, BUCKETIZE 1, RANDOM_UNIFORM 1, MULTINOMIAL 1, GELU 2
DYNAMIC_UPDATE_SLICE 1, RELU_0_TO_1 1, UNSORTED_SEGMENT_PROD 1, UNSORTED_SEGMENT_MAX 1, UNSORTED_SEGMENT_SUM 1
ATAN2 1, UNSORTED_SEGMENT_MIN 1, SIGN 2, BITCAST 1, BITWISE_XOR 1, RIGHT_SHIFT 1
"""
_MAX_2_14 = {name: int(v) for name, v in re.findall(r"([A-Z0-9_]+) (\d+)", _TFLITE_2_14)}
KNOWN = {"tflite-runtime==2.14": (_MAX_2_14, {"BROADCAST_TO": 2})}


@dataclass(frozen=True)
class Prediction:
    runtime: str
    refused: tuple[str, ...]  # "FULLY_CONNECTED v11 (2.14 registers v1-v10)", one per op and version

    @property
    def loads(self) -> bool:
        return not self.refused

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "loads": self.loads, "refused": list(self.refused)}

    def __str__(self) -> str:
        if self.loads:
            return f"{self.runtime}: loads (every op version is one it registers)"
        return f"{self.runtime}: refused at load: {'; '.join(self.refused)}"


def known_runtime(spec: str) -> str:
    """``tflite-runtime==2.14`` from "tflite-runtime==2.14", "tflite-runtime==2.14.0" or "tflite-runtime"."""
    m = re.fullmatch(r"\s*tflite[-_]runtime\s*(?:==\s*2\.14(?:\.0)?)?\s*", spec)
    if not m:
        raise GruEdgeError(f"No op-version table for runtime '{spec}': gru-edge knows {', '.join(KNOWN)} (the last "
                           "tflite-runtime release).")
    return "tflite-runtime==2.14"


def predict(info, spec: str) -> Prediction:
    """What runtime ``spec`` (see ``known_runtime``) will refuse when it loads the model ``info``
    (tflite_model.TfliteModel), from the model's op codes and versions."""
    name = known_runtime(spec)
    max_version, min_version = KNOWN[name]
    refused = []
    for op, versions in info.op_versions.items():
        if op.startswith("CUSTOM:"):
            refused.append(f"{op} (a custom op: no builtin runtime has it)")
            continue
        top = max_version.get(op)
        low = min_version.get(op, 1)
        if top is None:  # newer than 2.14 (builtin code above 161) or never registered
            refused.append(f"{op} ({name} has no such builtin)")
            continue
        refused += [f"{op} v{v} ({name.split('==')[1]} registers v{low}-v{top})" for v in versions
                    if not low <= v <= top]
    return Prediction(name, tuple(refused))
