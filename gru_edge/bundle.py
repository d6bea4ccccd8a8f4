"""The parity bundle format ``gru-edge-parity/1``: writing a bundle, and the one reader contract. No TensorFlow.

docs/parity-bundle.md is the specification; the Android demo's Kotlin reader (``parity/Bundle.kt``, ``Npy.kt``,
``Json.kt``) implements the same contract, and tests/test_kotlin_parity.py checks that both accept and refuse the
same bundles. Everything a reader takes from the manifest is checked before it is used: file names stay inside the
bundle (no paths, no symbolic links), sizes are checked against the files before anything is allocated, tolerances
are finite and within their documented ranges.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gru_edge import __version__, outputs
from gru_edge.card import TASKS
from gru_edge.errors import ParityError
from gru_edge.io import sha256_file
from gru_edge.names import SERVE
from gru_edge.recipes import Tolerances, finite

FORMAT = "gru-edge-parity/1"
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1 << 20
MAX_DEPTH = 16  # nesting of JSON objects and arrays; a manifest needs 4
MAX_FILE_BYTES = 1 << 30
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SHA256 = re.compile(r"[0-9a-f]{64}")
GPU_KEYS = {"precision": ("fp16", "fp32"), "fallback": ("cpu", "none")}


@dataclass(frozen=True)
class Task:
    """How to score outputs against targets: RMSE after mapping outputs by ``x * scale + offset``."""

    kind: str
    metric: str
    scale: float = 1.0
    offset: float = 0.0
    units: str = "model output"


@dataclass(frozen=True)
class Tensor:
    """An input or output array of the bundle: its tensor's name and the .npy file that holds it."""

    name: str
    file: str
    shape: tuple[int, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class ModelEntry:
    file: str  # the bundle's copy of the model
    sha256: str
    recipe: str
    signature: str = SERVE
    gpu: dict | None = None  # precision, fallback: the recipe's GPU settings, for the GPU run


@dataclass(frozen=True)
class Manifest:
    """manifest.json, typed; made by ``write_bundle_files`` and read by ``parse_manifest`` only."""

    model: ModelEntry
    inputs: tuple[Tensor, ...]  # exactly one: [N, T, F]
    outputs: tuple[Tensor, ...]  # [N, O] each
    samples: dict  # count, kinds, source
    tolerances: Tolerances
    task: dict | None = None  # kind, metric, targets (file), output_scale, output_offset, units, reference
    tool: str | None = None
    format: str = FORMAT

    @property
    def files(self) -> list[str]:
        """Every file the manifest names besides the model: the arrays."""
        return [t.file for t in self.inputs + self.outputs] + ([self.task["targets"]] if self.task else [])

    def to_dict(self) -> dict:
        return {"format": self.format, "tool": self.tool, "model": asdict(self.model),
                "inputs": [asdict(t) | {"shape": list(t.shape)} for t in self.inputs],
                "outputs": [asdict(t) | {"shape": list(t.shape)} for t in self.outputs],
                "samples": self.samples, "tolerances": asdict(self.tolerances), "task": self.task}


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest
    inputs: np.ndarray
    expected: dict[str, np.ndarray]
    targets: np.ndarray | None
    task: Task | None

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model.file

    @property
    def recipe(self) -> str:
        return self.manifest.model.recipe

    @property
    def tolerances(self) -> Tolerances:
        return self.manifest.tolerances


def bundle_file_name(model_path: Path) -> str:
    """The name a model's copy gets inside a bundle: its own when that is a plain ``.tflite`` file name (so it cannot
    stand for one of the bundle's arrays), else model.tflite."""
    name = Path(model_path).name
    return name if FILE_NAME.fullmatch(name) and name.endswith(".tflite") else "model.tflite"


def write_bundle(out_dir: Path, model_path: Path, recipe: str, signature: str, input_name: str,
                 inputs: np.ndarray, expected: dict[str, np.ndarray], tolerances: Tolerances,
                 sample_kinds: dict[str, int], sample_source: str, targets: np.ndarray | None = None,
                 task: Task | None = None, reference: float | None = None, gpu: dict | None = None) -> Path:
    """Write a bundle folder (with a copy of the model): it replaces a previous bundle whole, never anything else."""
    with outputs.staged(out_dir, outputs.BUNDLE) as tmp:
        write_bundle_files(tmp, model_path, recipe, signature, input_name, inputs, expected, tolerances,
                           sample_kinds, sample_source, targets, task, reference, gpu)
    return Path(out_dir)


def write_bundle_files(folder: Path, model_path: Path, recipe: str, signature: str, input_name: str,
                       inputs: np.ndarray, expected: dict[str, np.ndarray], tolerances: Tolerances,
                       sample_kinds: dict[str, int], sample_source: str, targets: np.ndarray | None = None,
                       task: Task | None = None, reference: float | None = None, gpu: dict | None = None) -> None:
    """The bundle's files, written into an existing (staging) folder."""
    np.save(folder / "inputs.npy", np.ascontiguousarray(inputs, dtype="<f4"))
    outs = []
    for i, (name, arr) in enumerate(sorted(expected.items())):
        fname = "expected.npy" if i == 0 else f"expected_{i}.npy"
        np.save(folder / fname, np.ascontiguousarray(arr, dtype="<f4"))
        outs.append(Tensor(name, fname, tuple(arr.shape)))
    scored = None
    if targets is not None and task is not None:
        np.save(folder / "targets.npy", np.ascontiguousarray(targets, dtype="<f4"))
        scored = {"kind": task.kind, "metric": task.metric, "targets": "targets.npy", "output_scale": task.scale,
                  "output_offset": task.offset, "units": task.units, "reference": reference}
    manifest = Manifest(ModelEntry(bundle_file_name(model_path), sha256_file(model_path), recipe, signature, gpu),
                        (Tensor(input_name, "inputs.npy", tuple(inputs.shape)),), tuple(outs),
                        {"count": int(len(inputs)), "kinds": sample_kinds, "source": sample_source}, tolerances,
                        scored, f"gru-edge {__version__}")
    shutil.copyfile(model_path, folder / manifest.model.file)
    (folder / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")


# ---- reading --------------------------------------------------------------------------------------------------


def bundle_file(folder: Path, name: str, what: str) -> Path:
    """The file ``name`` (a plain name, checked by parse_manifest) of a bundle: a regular file inside the folder, not
    a link, not huge."""
    path = Path(folder) / name
    if path.is_symlink():
        raise ParityError(f"Bundle file {name} ({what}) is a symbolic link; a bundle's files stay inside it.")
    if not path.is_file():
        raise ParityError(f"Bundle file missing: {name} ({what}).")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ParityError(f"Bundle file {name} ({what}) is {path.stat().st_size} bytes; at most {MAX_FILE_BYTES} "
                          "are read.")
    return path


_HEADER_TOKEN = re.compile(r"[ \t\n\r]*(?:(?P<str>'[^'\\]*'|\"[^\"\\]*\")|(?P<int>[0-9]+)|(?P<word>True|False)|"
                           r"(?P<punct>[{}():,]))")


def _npy_header(text: str, name: str) -> dict:
    """The .npy header's dict, read with the grammar of docs/parity-bundle.md (the Kotlin reader's): string keys;
    values a string, True/False or a tuple of integers; trailing commas allowed."""
    tokens, pos = [], 0
    while pos < len(text.rstrip(" \t\n\r")):
        m = _HEADER_TOKEN.match(text, pos)
        if not m:
            raise ParityError(f"{name} has an unreadable .npy header.")
        kind = m.lastgroup
        tokens.append((kind, m[kind][1:-1] if kind == "str" else m[kind]))
        pos = m.end()
    tokens.append(("end", ""))
    at = 0

    def take(kind: str, value: str | None = None) -> str | None:
        nonlocal at
        if tokens[at][0] == kind and value in (None, tokens[at][1]):
            at += 1
            return tokens[at - 1][1]
        return None

    def need(kind: str, value: str | None = None) -> str:
        got = take(kind, value)
        if got is None:
            raise ParityError(f"{name} has an unreadable .npy header.")
        return got

    def items(close: str, read):
        out = []
        while take("punct", close) is None:
            out.append(read())
            if take("punct", ",") is None:
                need("punct", close)
                break
        return out

    def value():
        if take("punct", "(") is not None:
            return tuple(items(")", lambda: int(need("int"))))
        word = take("word")
        return word == "True" if word is not None else need("str")

    def entry():
        key = need("str")
        need("punct", ":")
        return key, value()

    need("punct", "{")
    header = dict(items("}", entry))
    need("end")
    return header


def read_npy(path: Path, name: str | None = None) -> np.ndarray:
    """Read a ``.npy`` file of format 1.0, dtype ``<f4``, C order, whose size matches its header exactly."""
    name = name or Path(path).name
    with open(path, "rb") as fh:
        head = fh.read(10)
        if len(head) < 10 or head[:6] != b"\x93NUMPY":
            raise ParityError(f"{name} is not a .npy file (no \\x93NUMPY magic).")
        if head[6:8] != b"\x01\x00":
            raise ParityError(f"{name} is .npy format {head[6]}.{head[7]}; only format 1.0 is read.")
        length = int.from_bytes(head[8:10], "little")
        text = fh.read(length)
        if len(text) < length:
            raise ParityError(f"{name} has an unreadable .npy header (truncated).")
        header = _npy_header(text.decode("latin-1"), name)
        if set(header) != {"descr", "fortran_order", "shape"}:
            raise ParityError(f"{name} has an unreadable .npy header (keys {sorted(header)}).")
        if header["descr"] != "<f4":
            raise ParityError(f"{name} has dtype {header['descr']}; a parity bundle stores little-endian float32 "
                              "(<f4).")
        if header["fortran_order"] is not False:
            raise ParityError(f"{name} is in Fortran order; a parity bundle stores C order.")
        shape = header["shape"]
        if not isinstance(shape, tuple):
            raise ParityError(f"{name} has an unreadable .npy header (shape).")
        if any(d > 2**31 - 1 for d in shape):
            raise ParityError(f"{name} declares a dimension past 2147483647.")
        count = math.prod(shape)
        found = Path(path).stat().st_size - 10 - length
        if found != 4 * count:
            raise ParityError(f"{name} is truncated or padded: shape {list(shape)} needs {4 * count} bytes of data, "
                              f"the file has {found}.")
        return np.fromfile(fh, dtype="<f4", count=count).reshape(shape)


def _reject_constant(token: str):
    raise ValueError(f"{token} is not JSON")


def _depth(value) -> int:
    """How deeply objects and arrays nest in ``value`` (an object of numbers: 1)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, level = todo.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, level)
            todo += [(c, level + 1) for c in (v.values() if isinstance(v, dict) else v)]
    return deepest


def parse_manifest(raw: bytes) -> Manifest:
    """Validate the bytes of a manifest.json against the reader contract; the manifest, defaults filled in."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ParityError(f"manifest.json is {len(raw)} bytes; at most {MAX_MANIFEST_BYTES} are read.")
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise ParityError(f"manifest.json is not valid JSON: {str(e)[:120]}.") from None
    except RecursionError:
        doc = None
    if doc is None or _depth(doc) > MAX_DEPTH:
        raise ParityError(f"manifest.json nests deeper than {MAX_DEPTH} levels.")
    m = _Checker("manifest.json")
    root = m.obj(doc, "the manifest")
    missing = [k for k in ("format", "model", "inputs", "outputs", "samples", "tolerances") if k not in root]
    if missing:
        raise ParityError(f"manifest.json misses required key(s): {', '.join(missing)}.")
    if root["format"] != FORMAT:
        raise ParityError(f"manifest.json: format {root['format']!r} is not supported; expected '{FORMAT}'.")
    model = m.obj(root["model"], "model")
    m.name(model, "file")
    if not isinstance(model.get("sha256"), str) or not SHA256.fullmatch(model["sha256"]):
        raise ParityError("manifest.json: 'model.sha256' must be 64 lowercase hexadecimal digits.")
    m.text(model, "recipe")
    model.setdefault("signature", SERVE)
    m.text(model, "signature")
    if model.get("gpu") is not None:
        gpu = m.obj(model["gpu"], "model.gpu")
        for key, allowed in GPU_KEYS.items():
            if gpu.get(key) not in allowed:
                raise ParityError(f"manifest.json: 'model.gpu.{key}' must be one of {', '.join(allowed)}.")
    inputs = m.entries(root["inputs"], "inputs")
    outs = m.entries(root["outputs"], "outputs")
    if len(inputs) != 1 or len(outs) < 1:
        raise ParityError("manifest.json: 'inputs' must list exactly one tensor and 'outputs' at least one.")
    if len(inputs[0]["shape"]) != 3 or any(len(o["shape"]) != 2 for o in outs):
        raise ParityError("manifest.json: the input's shape must be [N, T, F] and each output's [N, O].")
    if len({o["name"] for o in outs}) != len(outs):
        raise ParityError("manifest.json: output names repeat.")
    m.obj(root["samples"], "samples")
    tolerances = Tolerances.checked(root["tolerances"], "manifest.json", ParityError)
    if root.get("task") is not None:
        task = m.obj(root["task"], "task")
        kind = task.get("kind")
        if not isinstance(kind, str) or TASKS.get(kind) != task.get("metric"):
            raise ParityError("manifest.json: 'task' must have kind regression with metric rmse, or kind "
                              "classification with metric accuracy.")
        m.name(task, "targets")
        for key, default in (("output_scale", 1.0), ("output_offset", 0.0)):
            task[key] = m.number(task.get(key, default), f"task.{key}")
        if task.get("reference") is not None:
            m.number(task["reference"], "task.reference")
    tensors = lambda entries: tuple(Tensor(e["name"], e["file"], tuple(e["shape"])) for e in entries)  # noqa: E731
    return Manifest(ModelEntry(model["file"], model["sha256"], model["recipe"], model["signature"], model.get("gpu")),
                    tensors(inputs), tensors(outs), root["samples"], tolerances, root.get("task"),
                    root.get("tool") if isinstance(root.get("tool"), str) else None)


class _Checker:
    def __init__(self, where: str):
        self.where = where

    def fail(self, what: str):
        raise ParityError(f"{self.where}: {what}.")

    def obj(self, value, what: str) -> dict:
        return value if isinstance(value, dict) else self.fail(f"'{what}' must be an object")

    def text(self, d: dict, key: str) -> str:
        return d[key] if isinstance(d.get(key), str) and d[key] else self.fail(f"'{key}' must be a non-empty string")

    def name(self, d: dict, key: str) -> str:
        """A file name the bundle refers to: plain, so that it cannot point outside the bundle."""
        if not isinstance(d.get(key), str) or not FILE_NAME.fullmatch(d[key]):
            self.fail(f"'{key}' {d.get(key)!r} is not a plain file name (letters, digits, '.', '_', '-'; no folders): "
                      "a bundle's files stay inside the bundle")
        return d[key]

    def number(self, value, what: str) -> float:
        x = finite(value)
        return x if x is not None else self.fail(f"'{what}' must be a finite number")

    def entries(self, value, what: str) -> list[dict]:
        if not isinstance(value, list):
            self.fail(f"'{what}' must be a list of tensor entries")
        for e in value:
            self.obj(e, f"{what} entry")
            self.text(e, "name")
            self.name(e, "file")
            shape = e.get("shape")
            if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and
                                                      0 <= d < 2**31 for d in shape):
                self.fail(f"a '{what}' entry's shape must be a list of integers from 0 to 2147483647")
            if e.get("dtype", "float32") != "float32":
                self.fail(f"a '{what}' entry's dtype must be float32")
        return value


def read_bundle(path: Path) -> Bundle:
    """Read and validate a bundle folder; ParityError names the first problem found."""
    path = Path(path)
    mpath = path / MANIFEST
    if mpath.is_symlink() or not mpath.is_file():
        raise ParityError(f"No {MANIFEST} in {path}: not a parity bundle (written by 'gru-edge verify -o DIR').")
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise ParityError(f"{MANIFEST} is {mpath.stat().st_size} bytes; at most {MAX_MANIFEST_BYTES} are read.")
    manifest = parse_manifest(mpath.read_bytes())
    spec_in = manifest.inputs[0]
    inputs = read_npy(bundle_file(path, spec_in.file, "inputs"))
    if inputs.shape != spec_in.shape:
        raise ParityError(f"{spec_in.file} has shape {list(inputs.shape)}; the manifest says {list(spec_in.shape)} "
                          "([N, T, F]).")
    expected = {}
    for spec in manifest.outputs:
        arr = read_npy(bundle_file(path, spec.file, f"expected output {spec.name}"))
        if arr.shape != spec.shape or len(arr) != len(inputs):
            raise ParityError(f"{spec.file} has shape {list(arr.shape)}; the manifest says {list(spec.shape)} "
                              f"with N = {len(inputs)} samples.")
        expected[spec.name] = arr
    targets, task = None, None
    if manifest.task:
        t = manifest.task
        targets = read_npy(bundle_file(path, t["targets"], "targets"))
        first = expected[manifest.outputs[0].name]
        if targets.shape != first.shape:
            raise ParityError(f"{t['targets']} has shape {list(targets.shape)}; expected {list(first.shape)}.")
        task = Task(t["kind"], t["metric"], t["output_scale"], t["output_offset"],
                    t["units"] if isinstance(t.get("units"), str) else "model output")
    return Bundle(path, manifest, inputs, expected, targets, task)
