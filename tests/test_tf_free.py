"""The modules README marks "(no TensorFlow)" import and work with TensorFlow and Keras blocked: what a device
without TensorFlow (a Raspberry Pi with tflite-runtime, the TF-free venv) imports never pulls them in."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCKER = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "tensorflow_text"):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Blocked())
"""


def tf_free_modules() -> list[str]:
    """The gru_edge modules README's layout marks "(no TensorFlow)"."""
    return re.findall(r"^\s+(\w+)\.py\s.*\(no TensorFlow\)\s*$", (ROOT / "README.md").read_text(), re.MULTILINE)


def test_readme_marks_the_device_side_modules():
    marked = set(tf_free_modules())
    assert {"bundle", "parity", "runtime", "tflite_model", "description", "names", "android", "text"} <= marked
    assert all((ROOT / "gru_edge" / f"{m}.py").is_file() for m in marked), marked


def test_tf_free_modules_import_with_tensorflow_blocked():
    modules = tf_free_modules()
    code = BLOCKER + "".join(f"import gru_edge.{m}\n" for m in modules) + (
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not bad, bad\nprint('imported', len(%r))\n" % (modules,))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"imported {len(modules)}"


def test_the_blocker_blocks():
    """The checks here can fail: what needs Keras is refused (gru-edge imports TensorFlow inside functions, so the
    work below, not only the imports, is run with it blocked)."""
    done = subprocess.run([sys.executable, "-c", BLOCKER + "from gru_edge import framing\nframing.layers()\n"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode != 0 and "blocked: keras" in done.stderr


def test_device_side_works_with_tensorflow_blocked(r1_run, r1_converted, tmp_path):
    """Not only imports: a parity bundle is checked, a model inspected and described, with TensorFlow blocked."""
    from gru_edge.verification import verify

    model = next(m for m in r1_converted.models if m.recipe == "int8")
    verify(r1_run / "model.keras", model.path, tmp_path / "bundle")
    code = BLOCKER + f"""
from gru_edge.parity import check_bundle
from gru_edge.api import inspect
from gru_edge import description, text
from gru_edge.android import init, install
report = check_bundle({str(tmp_path / 'bundle')!r})
found = inspect({str(model.path)!r})
assert description.load({str(model.path)!r}).recipe_name == "int8"
text.parity_report(report, "bundle")
text.inspection("model", found.model, list(found.gpu_findings), found.description, found.runtime)
demo = init({str(tmp_path / 'demo')!r})
assert "model.tflite" in install({str(model.path)!r}, {str(tmp_path / 'bundle')!r}, demo).assets
print(report.passed, found.description.recipe_name)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["True", "int8"]
