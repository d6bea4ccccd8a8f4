"""Bad and odd parity bundles: each is a copy of a good bundle with one change. Both readers (Python's
gru_edge/bundle.py and the demo's Kotlin core) must refuse the same ones and accept the same ones
(tests/test_kotlin_parity.py); every refusal is one line, exit 1, from the CLI (tests/test_bad_inputs.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def edit(folder: Path, fn) -> None:
    """Change the manifest with ``fn`` (which may return a replacement text)."""
    m = json.loads((folder / "manifest.json").read_text())
    out = fn(m)
    (folder / "manifest.json").write_text(out if isinstance(out, str) else json.dumps(m))


def _tol(key, value):
    return lambda f: edit(f, lambda m: m["tolerances"].__setitem__(key, value))


def _set(path: tuple, value):
    def change(m):
        d = m
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return lambda f: edit(f, change)


def _drop(path: tuple):
    def change(m):
        d = m
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
    return lambda f: edit(f, change)


def _npy_header(folder: Path, name: str, header: str, version: bytes = b"\x01\x00", data: bytes | None = None):
    raw = (folder / name).read_bytes()
    old_len = int.from_bytes(raw[8:10], "little")
    body = raw[10 + old_len:] if data is None else data
    text = header.encode("latin-1")
    if version == b"\x01\x00":
        head = b"\x93NUMPY" + version + len(text).to_bytes(2, "little")
    else:
        head = b"\x93NUMPY" + version + len(text).to_bytes(4, "little")
    (folder / name).write_bytes(head + text + body)


def _expected_shape(folder: Path) -> tuple:
    return tuple(json.loads((folder / "manifest.json").read_text())["outputs"][0]["shape"])


def _fortran(f: Path):
    shape = _expected_shape(f)
    _npy_header(f, "expected.npy", f"{{'descr': '<f4', 'fortran_order': True, 'shape': {shape}, }}\n")


def _version(v: bytes):
    def change(f: Path):
        shape = _expected_shape(f)
        _npy_header(f, "expected.npy", f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n", v)
    return change


def _huge(f: Path):
    _npy_header(f, "expected.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }\n")


def _npz(f: Path):
    np.savez(f / "expected.npz", x=np.load(f / "expected.npy"))
    os.replace(f / "expected.npz", f / "expected.npy")


def _symlink_out(f: Path):
    outside = f.parent / f"{f.name}-outside.npy"
    outside.write_bytes((f / "inputs.npy").read_bytes())
    (f / "inputs.npy").unlink()
    (f / "inputs.npy").symlink_to(outside)


def _deep(f: Path):
    edit(f, lambda m: json.dumps(m)[:-1] + ', "x": ' + "[" * 200_000 + "]" * 200_000 + "}")


def _expected_nan(f: Path):
    e = np.load(f / "expected.npy")
    e[0, 0] = np.nan
    np.save(f / "expected.npy", e)


# name -> (change, what both readers must do: "refuse", "pass" or "fail")
CORPUS = {
    "valid": (lambda f: None, "pass"),
    "unknown-key-is-ignored": (_set(("extra",), {"a": [1, 2]}), "pass"),
    "integer-limits": (lambda f: edit(f, lambda m: m["tolerances"].update(min_psnr_db=20)), "pass"),
    "limits-atol-0.5-and-over": (_tol("atol", 0.5), "refuse"),
    "samples-a-5000-digit-integer": (lambda f: edit(f, lambda m: json.dumps(m).replace(
        '"count": ', '"count": ' + "9" * 5000 + ', "_count": ')), "refuse"),  # past Python's 4300 digits
    "unicode-digits-in-an-escape": (lambda f: edit(f, lambda m: json.dumps(m).replace(
        '"tool": "', '"tool": "\\u\u0660\u0660\u0664\u0661')), "refuse"),
    "limits-a-huge-integer": (lambda f: edit(f, lambda m: json.dumps(m).replace('"rtol": ', '"rtol": 1' + "0" * 400
                                                                                + ', "_": ')), "refuse"),
    "expected-has-nan": (_expected_nan, "fail"),
    "limits-nan": (lambda f: edit(f, lambda m: json.dumps(m).replace('"atol": ', '"atol": NaN, "_": ')), "refuse"),
    "limits-infinity": (lambda f: edit(f, lambda m: json.dumps(m).replace('"atol": ', '"atol": Infinity, "_": ')),
                        "refuse"),
    "limits-1e9": (_tol("atol", 1e9), "refuse"),
    "limits-negative": (_tol("rtol", -0.1), "refuse"),
    "limits-psnr-too-high": (_tol("min_psnr_db", 1000.0), "refuse"),
    "limits-as-strings": (_tol("atol", "0.2"), "refuse"),
    "limits-boolean": (_tol("atol", True), "refuse"),
    "limits-as-a-list": (_set(("tolerances",), [0.1, 0.1, 20, 0.05]), "refuse"),
    "limits-as-a-number": (_set(("tolerances",), 0.1), "refuse"),
    "limits-missing-a-key": (_drop(("tolerances", "rtol")), "refuse"),
    "inputs-empty": (_set(("inputs",), []), "refuse"),
    "outputs-an-object": (_set(("outputs",), {}), "refuse"),
    "model-without-file": (_drop(("model", "file")), "refuse"),
    "input-without-shape": (lambda f: edit(f, lambda m: m["inputs"][0].pop("shape")), "refuse"),
    "shape-of-floats": (lambda f: edit(f, lambda m: m["inputs"][0].__setitem__(
        "shape", [float(d) for d in m["inputs"][0]["shape"]])), "refuse"),
    "sha256-not-hex": (_set(("model", "sha256"), "not-a-hash"), "refuse"),
    "gpu-precision-unknown": (_set(("model", "gpu"), {"precision": "fp8", "fallback": "cpu"}), "refuse"),
    "task-kind-unknown": (lambda f: edit(f, lambda m: m["task"].__setitem__("kind", ["regression"])), "refuse"),
    "format-other": (_set(("format",), "gru-edge-parity/2"), "refuse"),
    "missing-samples": (_drop(("samples",)), "refuse"),
    "deep-nesting": (_deep, "refuse"),
    "manifest-not-utf8": (lambda f: (f / "manifest.json").write_bytes(
        (f / "manifest.json").read_bytes().replace(b'"tool"', b'"to\xffol"')), "refuse"),
    "manifest-with-bom": (lambda f: (f / "manifest.json").write_bytes(b"\xef\xbb\xbf" + (f / "manifest.json")
                                                                       .read_bytes()), "refuse"),
    "manifest-trailing-comma": (lambda f: edit(f, lambda m: json.dumps(m)[:-1] + ",}"), "refuse"),
    "name-climbs-out": (lambda f: edit(f, lambda m: m["inputs"][0].__setitem__("file", "../../etc/passwd")),
                        "refuse"),
    "name-absolute": (lambda f: edit(f, lambda m: m["inputs"][0].__setitem__("file", "/etc/passwd")), "refuse"),
    "name-hidden": (lambda f: edit(f, lambda m: m["outputs"][0].__setitem__("file", ".expected.npy")), "refuse"),
    "symlink-out-of-the-bundle": (_symlink_out, "refuse"),
    "npy-fortran-order": (_fortran, "refuse"),
    "npy-format-2": (_version(b"\x02\x00"), "refuse"),
    "npy-format-3": (_version(b"\x03\x00"), "refuse"),
    "npy-declares-1e12-elements": (_huge, "refuse"),
    "npy-padded": (lambda f: (f / "expected.npy").write_bytes((f / "expected.npy").read_bytes() + b"\0" * 4),
                   "refuse"),
    "npy-truncated": (lambda f: (f / "expected.npy").write_bytes((f / "expected.npy").read_bytes()[:-5]), "refuse"),
    "npy-float64": (lambda f: np.save(f / "expected.npy", np.load(f / "expected.npy").astype(np.float64)), "refuse"),
    "npz-named-npy": (_npz, "refuse"),
    "npy-shape-differs": (lambda f: np.save(f / "expected.npy", np.load(f / "expected.npy")[:-1]), "refuse"),
    "targets-missing": (lambda f: (f / "targets.npy").unlink(), "refuse"),
}
