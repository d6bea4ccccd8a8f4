"""Copy a converted model and its parity bundle into the Android demo's assets, after checking them.

No TensorFlow. The demo pins its LiteRT version in android_demo/gradle/libs.versions.toml; the model must load in
LiteRT's standard runtime (the same LiteRT release on the desktop), use builtin ops only, pass gru-edge's GPU rules
when its recipe asks for the GPU, and be the model the bundle was made with.
"""

from __future__ import annotations

import shutil
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from gru_edge import gpu, outputs, runtime, tflite_model
from gru_edge.bundle import bundle_file, read_bundle
from gru_edge.description import load as load_description
from gru_edge.errors import GruEdgeError
from gru_edge.io import sha256_file, shipped_folder

ASSETS = Path("app/src/main/assets/gru_edge")  # the demo reads model.tflite (which describes itself) and bundle/


class AndroidError(GruEdgeError):
    """The model, bundle or demo folder cannot be used for the Android demo."""


@dataclass(frozen=True)
class AndroidResult:
    demo: Path
    litert_pinned: str
    litert_checked: str
    assets: tuple[str, ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"demo": str(self.demo), "litert_pinned": self.litert_pinned, "litert_checked": self.litert_checked,
                "assets": list(self.assets), "warnings": list(self.warnings)}


def template() -> Path:
    """The demo project shipped with gru-edge (in the wheel, or the source tree's android_demo/)."""
    return shipped_folder("android_demo")


def init(folder: Path) -> Path:
    """Write the demo project (Kotlin app, its parity package and JUnit tests, the default model and bundle) into
    ``folder``, a new or empty folder; nothing is written if it cannot be written whole."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise AndroidError(f"{folder} exists and is not an empty folder; name a new folder for the demo project.")
    source = template()
    if not (source / "gradle" / "libs.versions.toml").is_file():
        raise AndroidError(f"The Android demo template is missing from this installation ({source}); reinstall "
                           "gru-edge.")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{folder.name}.gru-edge-init"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", "build", ".gradle", "*.pyc"))
        (staging / "jvm-test.sh").chmod(0o755)
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def pinned_litert(demo: Path) -> str:
    catalog = demo / "gradle" / "libs.versions.toml"
    if not catalog.is_file():
        raise AndroidError(f"{demo} is not the gru-edge Android demo: {catalog} is missing.")
    try:
        pinned = tomllib.loads(catalog.read_text())["versions"]["litert"]
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise AndroidError(f"{catalog} does not pin LiteRT: it needs a TOML table [versions] with litert = "
                           f"\"2.x.y\" ({type(e).__name__}: {str(e)[:80]}).") from None
    if not isinstance(pinned, str) or not pinned.split(".")[0].isdigit():
        raise AndroidError(f"{catalog}: versions.litert is {pinned!r}; expected a version such as \"2.3.0\".")
    return pinned


def install(model: Path, bundle_dir: Path, demo: Path) -> AndroidResult:
    """Check ``model`` and ``bundle_dir`` against the demo's pinned LiteRT and GPU rules, then put them in the demo's
    assets/gru_edge folder, replacing the previous one whole."""
    model, bundle_dir, demo = Path(model), Path(bundle_dir), Path(demo)
    pinned = pinned_litert(demo)
    info = tflite_model.read(model)
    if info.custom_ops:
        raise AndroidError(f"{model.name} uses ops outside the TFLite builtins ({', '.join(info.custom_ops)}); "
                           f"LiteRT {pinned} on Android cannot run them.")
    try:
        installed = version("ai-edge-litert")
    except PackageNotFoundError:
        installed = "unknown"
    runtime.run_isolated(model, None)  # every op and op version must load in LiteRT's standard runtime
    warnings = []
    if installed.split(".")[:2] != pinned.split(".")[:2]:
        warnings.append(f"checked with ai-edge-litert {installed}; the demo pins LiteRT {pinned}")
    sidecar = load_description(model, info)  # the model's own, checked against its sidecar when there is one
    if sidecar is None:
        raise AndroidError(f"{model.name} carries no gru-edge description (the demo reads its GPU settings, units "
                           "and states from it): convert it with 'gru-edge convert'.")
    findings = gpu.check(info)
    if findings and sidecar.gpu:
        raise AndroidError(f"{model.name}'s recipe asks for the GPU but {len(findings)} op(s) break the GPU "
                           f"rules; the first: {findings[0]}. 'gru-edge inspect {model}' lists them all. gru-edge's "
                           "lowered GRUs have none; the other layers are TensorFlow's ops: replace the layer, or use "
                           "a recipe without [gpu].")
    if findings:
        warnings.append(f"{len(findings)} GPU finding(s): the demo's GPU run will fall back to the CPU")
    bundle = read_bundle(bundle_dir)
    if bundle.manifest.model.sha256 != sha256_file(model):
        raise AndroidError(f"The bundle in {bundle_dir} was made for {bundle.manifest.model.file}, not for "
                           f"{model.name} (sha256 differs). Make it with 'gru-edge verify MODEL.keras {model.name} "
                           "-o DIR'.")
    names = ["manifest.json"] + bundle.manifest.files  # what the validated manifest names (plain names, no links)
    with outputs.staged(demo / ASSETS, outputs.ASSETS) as staging:
        shutil.copyfile(model, staging / "model.tflite")
        (staging / "bundle").mkdir()
        for name in names:
            shutil.copyfile(bundle_file(bundle_dir, name, "bundle file"), staging / "bundle" / name)
    copied = ["model.tflite"] + [f"bundle/{n}" for n in sorted(names)]
    return AndroidResult(demo, pinned, installed, tuple(copied), tuple(warnings))
