"""Small shared helpers: quiet TensorFlow imports, native stderr capture, hashing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import sys
import tempfile
import warnings
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def native_stderr():
    """Collect what native code (LiteRT, XNNPACK) writes to file descriptor 2; the text is in the list afterwards."""
    captured: list[str] = []
    try:
        saved = os.dup(2)
    except OSError:  # no usable fd 2 (some embedded shells): nothing to silence
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode(errors="replace"))


@contextlib.contextmanager
def quiet_tensorflow():
    """Import TensorFlow/Keras without their start-up chatter on stderr (logs stay on for real errors)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable CPU results between runs
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)


def shipped_folder(name: str) -> Path:
    """A top-level folder of the repository that the wheel maps into the package (converters/, android_demo/):
    inside the installed package, else the source tree's."""
    package = Path(__file__).resolve().parent
    installed = package / name
    return installed if installed.is_dir() else package.parent / name


def read_json_doc(path: Path, error: type, fix: str):
    """The JSON document in ``path`` (a file that exists); ``error`` naming the file and ``fix`` when it is not
    valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise error(f"{path} is not valid JSON ({getattr(e, 'msg', type(e).__name__)}); {fix}.") from None


def child_command(module: str, *args) -> list[str]:
    """The command line that runs ``python -m module args`` in a child process with this interpreter. ``-P``: the
    child's current folder (say, a bundle someone sent) is not searched for modules to import."""
    return [sys.executable, "-P", "-m", module, *map(str, args)]


def signal_name(returncode: int) -> str:
    """SIGSEGV for a child killed by signal 11 (and a number for signals Python has no name for)."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"
