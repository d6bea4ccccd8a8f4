"""Conversion recipes: TOML files in ``converters/`` validated into frozen dataclasses. No TensorFlow."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

from gru_edge.errors import RecipeError
from gru_edge.io import shipped_folder

QUANTIZATIONS = ("float32", "float16", "dynamic-int8", "int8", "int16x8")
LOWERINGS = ("gru-edge", "keras")  # gru-edge's own graph, or TensorFlow's conversion of the Keras layers
CALIBRATED = ("int8", "int16x8")
UNROLLS = (True, False, "auto")
# unroll = "auto": sequences longer than this run in a WHILE loop (gru_edge.lowering.time_form). Measured on GRU(64),
# 4 features, batch 1 (benchmarks/long.py): at 50 steps the unrolled graph is 25% faster per step; at 200 the loop
# is within 11% of it with XNNPACK's weight cache and 2.4x faster with the Interpreter, in a third of the file.
LOOP_AFTER = 100
GPU_PRECISIONS = ("fp16", "fp32")
GPU_FALLBACKS = ("cpu", "none")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # recipe names become file names (model.NAME.tflite)


# Each parity limit's allowed range (docs/parity-bundle.md), [low, high): a limit outside it, or not a finite number,
# could let anything pass (atol = 1e9; NaN, since every comparison with NaN is false) and is refused wherever it comes
# from. atol and rtol stay below 0.5, so that even together they cannot excuse an output of zeros at the peak; a
# task metric may not lose all of itself.
TOLERANCE_RANGES = {"atol": (0.0, 0.5), "rtol": (0.0, 0.5), "min_psnr_db": (0.0, 200.0),
                    "max_task_metric_delta": (0.0, 1.0)}


def finite(value) -> float | None:
    """``value`` as a float if it is a finite number (not a bool, not an integer too large for a float), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Tolerances:
    """Parity limits. ``atol`` is relative to the output's peak magnitude; see docs/parity-bundle.md."""

    atol: float
    rtol: float
    min_psnr_db: float
    max_task_metric_delta: float

    @classmethod
    def checked(cls, values, where: str, error: type[Exception] = RecipeError) -> "Tolerances":
        """Tolerances from a mapping with exactly the four keys, each finite and within TOLERANCE_RANGES."""
        if not isinstance(values, dict) or set(values) != set(TOLERANCE_RANGES):
            raise error(f"{where}: tolerances must have exactly {', '.join(sorted(TOLERANCE_RANGES))}.")
        checked = {}
        for key, (lo, hi) in TOLERANCE_RANGES.items():
            v = finite(values[key])
            if v is None or not lo <= v < hi:
                shown = repr(values[key]) if len(repr(values[key])) < 40 else repr(values[key])[:37] + "..."
                raise error(f"{where}: tolerance {key} must be a finite number from {lo:g} up to (not including) "
                            f"{hi:g}, got {shown}.")
            checked[key] = v
        return cls(**checked)

    def looser_than(self, other: "Tolerances") -> list[str]:
        """The limits of ``self`` that let through more than ``other``'s, as 'key a > b' texts."""
        looser = [f"{k} {getattr(self, k):g} > {getattr(other, k):g}" for k in ("atol", "rtol", "max_task_metric_delta")
                  if getattr(self, k) > getattr(other, k)]
        if self.min_psnr_db < other.min_psnr_db:
            looser.append(f"min_psnr_db {self.min_psnr_db:g} < {other.min_psnr_db:g}")
        return looser


@dataclass(frozen=True)
class GpuSettings:
    precision: str
    fallback: str


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    quantization: str
    lowering: str
    unroll: bool | str  # True, False (a WHILE loop over time) or "auto" (gru_edge.lowering.time_form)
    batch_size: int
    calibration_size: int
    streaming: bool
    float_fallback: float  # share of the most error-prone quantized ops kept in float (int8 only)
    verify: Tolerances
    gpu: GpuSettings | None
    source: str

    @property
    def needs_calibration(self) -> bool:
        return self.quantization in CALIBRATED

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        """The inverse of to_dict; keys added since a sidecar was written take their defaults."""
        defaults = {k: v for k, (_, v) in _SCHEMA["convert"].items() if v is not ...}
        return cls(**(defaults | d | {"verify": Tolerances.checked(d["verify"], f"recipe '{d['name']}'"),
                           "gpu": GpuSettings(**d["gpu"]) if d.get("gpu") else None}))


# section -> key -> (type, default); a default of ... means required.
_SCHEMA: dict[str, dict[str, tuple[type, object]]] = {
    "": {"description": (str, ...)},
    "convert": {"quantization": (str, ...), "lowering": (str, "gru-edge"), "unroll": (object, "auto"),
                "batch_size": (int, 1), "calibration_size": (int, 200), "streaming": (bool, False),
                "float_fallback": (float, 0.0)},
    "gpu": {"precision": (str, "fp16"), "fallback": (str, "cpu")},
    "verify": {"atol": (float, ...), "rtol": (float, ...), "min_psnr_db": (float, ...),
               "max_task_metric_delta": (float, ...)},
}


def shipped_dir() -> Path:
    """Return the folder of shipped recipes: inside the installed package, else the source tree's converters/."""
    return shipped_folder("converters")


def looser_than_shipped(name: str, tol: Tolerances, whose: str) -> list[str]:
    """A note when ``tol`` (``whose`` limits, made with recipe ``name``) lets through more than the shipped recipe of
    that name."""
    looser = tol.looser_than(load(name).verify) if name in shipped_names() else []
    return [f"{whose} limits are looser than the shipped recipe {name}'s ({'; '.join(looser)}); --recipe {name} "
            "applies the shipped ones"] if looser else []


def shipped_names() -> list[str]:
    return sorted(p.stem for p in shipped_dir().glob("*.toml"))


def load(name_or_path: str) -> Recipe:
    """Return the recipe named ``name_or_path`` (a shipped name) or read from that ``.toml`` path."""
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        if not path.is_file():
            raise RecipeError(f"Recipe file not found: {path}.")
        if not NAME.fullmatch(path.stem):
            raise RecipeError(f"Recipe file name '{path.name}': a recipe is named after its file, which must use "
                              "letters, digits, '.', '_' and '-' only.")
        source = str(path)
    else:
        path = shipped_dir() / f"{name_or_path}.toml"
        if name_or_path not in shipped_names():  # a name, never a path: '../x' does not reach outside converters/
            raise RecipeError(f"Unknown recipe '{name_or_path}'. Shipped: {', '.join(shipped_names())}; "
                              "or give a path to your own .toml file.")
        source = f"shipped: converters/{path.name}"  # the same on every machine, unlike the install path
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path.name} is not valid TOML: {e}") from None
    return parse(raw, name=path.stem, source=source)


def _check_section(raw: dict, section: str, where: str) -> dict:
    schema = _SCHEMA[section]
    values = {}
    for key, value in raw.items():
        if section == "" and key in _SCHEMA and isinstance(value, dict):
            continue
        if key not in schema:
            allowed = list(schema) + ([f"[{s}]" for s in _SCHEMA if s] if section == "" else [])
            raise RecipeError(f"{where}: unknown key '{key}'{f' in [{section}]' if section else ''}. "
                              f"Allowed: {', '.join(allowed)}.")
        kind = schema[key][0]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = finite(value)
            if value is None:
                raise RecipeError(f"{where}: '{key}' is too large a number.")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise RecipeError(f"{where}: '{key}' must be {kind.__name__}, got {type(value).__name__} {value!r}.")
        values[key] = value
    for key, (_, default) in schema.items():
        if key not in values:
            if default is ...:
                raise RecipeError(f"{where}: missing required key '{key}'"
                                  f"{f' in [{section}]' if section else ''}.")
            values[key] = default
    return values


def _section(raw: dict, section: str, where: str) -> dict:
    if not isinstance(raw.get(section), dict):
        raise RecipeError(f"{where}: missing section [{section}].")
    return raw[section]


def _choice(where: str, key: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise RecipeError(f"{where}: unknown {key} '{value}'. Supported: {', '.join(allowed)}.")
    return value


def parse(raw: dict, name: str, source: str = "<memory>") -> Recipe:
    """Validate a parsed TOML table into a Recipe; every error names the key and what is allowed."""
    where = f"recipe '{name}'"
    top = _check_section(raw, "", where)
    conv, ver = (_check_section(_section(raw, s, where), s, where) for s in ("convert", "verify"))
    _choice(where, "quantization", conv["quantization"], QUANTIZATIONS)
    if conv["batch_size"] < 1:
        raise RecipeError(f"{where}: batch_size must be at least 1, got {conv['batch_size']}.")
    _choice(where, "lowering", conv["lowering"], LOWERINGS)
    if conv["unroll"] not in UNROLLS or not isinstance(conv["unroll"], (bool, str)):
        raise RecipeError(f"{where}: unroll must be true (every step in the graph), false (a WHILE loop over time) or "
                          f"\"auto\" (a loop beyond {LOOP_AFTER} steps), got {conv['unroll']!r}.")
    if conv["streaming"] and conv["lowering"] != "gru-edge":
        raise RecipeError(f"{where}: streaming = true needs lowering = \"gru-edge\" (it adds the step signature).")
    if conv["streaming"] and conv["quantization"] == "int16x8":
        raise RecipeError(f"{where}: streaming = true works with float32, float16, dynamic-int8 and int8; TensorFlow's "
                          "converter cannot calibrate a second int16x8 signature.")
    if not 0.0 <= conv["float_fallback"] <= 1.0:
        raise RecipeError(f"{where}: float_fallback must be between 0 and 1, got {conv['float_fallback']}.")
    if conv["float_fallback"] and conv["quantization"] != "int8":
        raise RecipeError(f"{where}: float_fallback applies to quantization = \"int8\" only (TensorFlow's "
                          f"quantization debugger does not handle {conv['quantization']}).")
    if conv["calibration_size"] < 1:
        raise RecipeError(f"{where}: calibration_size must be at least 1, got {conv['calibration_size']}.")
    tolerances = Tolerances.checked(ver, f"{where} [verify]")
    if "gpu" in raw and "unroll" not in raw["convert"]:
        conv["unroll"] = True  # a GPU recipe never loops (recipes written before "auto" said nothing)
    gpu = None
    if "gpu" in raw:
        g = _check_section(raw["gpu"], "gpu", where)
        gpu = GpuSettings(_choice(where, "gpu precision", g["precision"], GPU_PRECISIONS),
                          _choice(where, "gpu fallback", g["fallback"], GPU_FALLBACKS))
        if conv["unroll"] is not True or conv["batch_size"] != 1:
            raise RecipeError(f"{where}: a [gpu] recipe needs unroll = true and batch_size = 1 (GPU delegates "
                              "refuse WHILE loops and dynamic batches).")
    return Recipe(name=name, description=top["description"], quantization=conv["quantization"],
                  lowering=conv["lowering"],
                  unroll=conv["unroll"], batch_size=conv["batch_size"], calibration_size=conv["calibration_size"],
                  streaming=conv["streaming"], float_fallback=conv["float_fallback"],
                  verify=tolerances, gpu=gpu, source=source)
