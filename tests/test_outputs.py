"""Output folders: never over what gru-edge did not write; swapped in whole; a run killed between any two file-system
steps leaves the complete old folder or the complete new one, and the next run cleans up after it."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gru_edge import outputs
from gru_edge.errors import OutputError


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _bundle(folder: Path, tag: str) -> Path:
    """A minimal well-formed bundle folder (what the BUNDLE kind recognises), its contents marked by ``tag``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"format": "gru-edge-parity/1", "model": {"file": "m.tflite"},
                                                      "inputs": [{"file": "inputs.npy"}], "outputs": [], "tag": tag}))
    (folder / "inputs.npy").write_text(tag)
    (folder / "m.tflite").write_text(tag)
    return folder


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".gru-edge-" in p.name]


def test_a_new_folder_is_written_whole(tmp_path):
    with outputs.staged(tmp_path / "b", outputs.BUNDLE) as stage:
        _bundle(stage, "new")
        assert not (tmp_path / "b").exists()  # nothing shows before the swap
    assert _snapshot(tmp_path / "b") == _snapshot(_bundle(tmp_path / "ref", "new"))
    assert oct((tmp_path / "b").stat().st_mode & 0o777) == oct(0o777 & ~_umask())  # not mkdtemp's 0700
    assert _leftovers(tmp_path) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_earlier_output_of_the_same_kind_is_replaced_whole(tmp_path):
    _bundle(tmp_path / "b", "old")
    (tmp_path / "b" / "m.tflite").unlink()  # the new one has a file the old lacked, and vice versa
    with outputs.staged(tmp_path / "b", outputs.BUNDLE) as stage:
        _bundle(stage, "new")
    assert _snapshot(tmp_path / "b") == _snapshot(_bundle(tmp_path / "ref", "new"))


@pytest.mark.parametrize("kind, make, message", [
    (outputs.BUNDLE, lambda d: (d / "notes.txt").write_text("mine"), r"is not a parity bundle \(notes.txt\)"),
    (outputs.BUNDLE, lambda d: (_bundle(d, "x") / "notes.txt").write_text("mine"),
     r"holds files gru-edge did not write \(notes.txt\)"),
    (outputs.RUN, lambda d: (d / "model.keras").write_text("someone's model"), "is not a run folder"),
    (outputs.MODELS, lambda d: (d / "model.x.json").write_text("{}"), r"is not a models folder \(model.x.json\)"),
    (outputs.BUNDLE, lambda d: (d / "model.int8.json").write_text('{"format": "gru-edge-sidecar/2"}'),
     "is a gru-edge models folder, not a parity bundle"),
])
def test_a_folder_holding_anything_else_is_refused_and_kept(tmp_path, kind, make, message):
    target = tmp_path / "out"
    target.mkdir()
    make(target)
    before = _snapshot(target)
    with pytest.raises(OutputError, match=message):
        with outputs.staged(target, kind) as stage:
            (stage / "x").write_text("never")
    assert _snapshot(target) == before and _leftovers(tmp_path) == []


def test_the_current_folder_the_root_links_and_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for target, message in ((".", "is the current folder"), (str(tmp_path.parent), "is the current folder"),
                            ("/", "is the root folder")):
        with pytest.raises(OutputError, match=message):
            outputs.check_target(Path(target), outputs.BUNDLE)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OutputError, match="is a symbolic link"):
        outputs.check_target(tmp_path / "link", outputs.BUNDLE)
    (tmp_path / "file").write_text("mine")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        outputs.check_target(tmp_path / "file", outputs.BUNDLE)


def test_a_parent_that_cannot_be_written_is_refused_before_the_work(tmp_path):
    (tmp_path / "file").write_text("mine")
    worked = []
    with pytest.raises(OutputError, match="Cannot write the parity bundle"):
        with outputs.staged(tmp_path / "file" / "b", outputs.BUNDLE):
            worked.append(1)
    assert not worked and (tmp_path / "file").read_text() == "mine"


def _pair(folder: Path, recipe: str, content: str) -> None:
    """A model and its sidecar, as convert writes them (the sidecar names the model's sha256)."""
    import hashlib

    (folder / f"model.{recipe}.tflite").write_text(content)
    (folder / f"model.{recipe}.json").write_text(json.dumps({
        "format": "gru-edge-sidecar/2", "model_sha256": hashlib.sha256(content.encode()).hexdigest()}))


def test_models_folders_keep_the_other_recipes(tmp_path):
    target = tmp_path / "models"
    target.mkdir()
    _pair(target, "a", "old a")
    _pair(target, "b", "old b")
    with outputs.staged(target, outputs.MODELS) as stage:
        _pair(stage, "b", "new b")
    assert _snapshot(target)["model.a.tflite"] == b"old a" and _snapshot(target)["model.b.tflite"] == b"new b"
    (target / "model.a.tflite").write_text("the user's own model, under gru-edge's name")
    with pytest.raises(OutputError, match=r"holds files gru-edge did not write \(model.a.tflite\)"):
        outputs.check_target(target, outputs.MODELS)


def test_files_that_look_like_gru_edges_but_are_not_are_refused(tmp_path):
    """A file under gru-edge's name whose sha256 is not the one gru-edge recorded, and a folder named like a
    leftover of a killed run, are the user's: refused as targets, never removed as leftovers."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_text("a model trained elsewhere")
    (run / "training.json").write_text(json.dumps({"format": "gru-edge-training/2", "files": {"model.keras": "0" * 64}}))
    with pytest.raises(OutputError, match=r"holds files gru-edge did not write \(model.keras\)"):
        outputs.check_target(run, outputs.RUN)
    hidden = tmp_path / "b" / f".notes.gru-edge-{outputs._HOST}-1-x"
    hidden.mkdir(parents=True)
    (hidden / "thesis.tex").write_text("mine")
    with pytest.raises(OutputError):
        outputs.check_target(tmp_path / "b", outputs.BUNDLE)
    beside = tmp_path / f".b.gru-edge-{outputs._HOST}-999999999-x"  # a dead process id, a user's folder
    beside.mkdir()
    (beside / "thesis.tex").write_text("mine")
    outputs._recover(tmp_path / "b", outputs.BUNDLE)
    assert (beside / "thesis.tex").read_text() == "mine"


def test_files_added_while_the_work_runs_are_kept(tmp_path):
    """The target is checked again just before the swap: what the user put there meanwhile is not swapped away."""
    _bundle(tmp_path / "b", "old")
    with pytest.raises(OutputError, match="notes.txt"):
        with outputs.staged(tmp_path / "b", outputs.BUNDLE) as stage:
            _bundle(stage, "new")
            (tmp_path / "b" / "notes.txt").write_text("written during the run")
    assert (tmp_path / "b" / "notes.txt").read_text() == "written during the run"
    assert _leftovers(tmp_path) == []


def test_an_error_in_the_work_leaves_the_old_folder(tmp_path):
    _bundle(tmp_path / "b", "old")
    before = _snapshot(tmp_path / "b")
    with pytest.raises(RuntimeError):
        with outputs.staged(tmp_path / "b", outputs.BUNDLE) as stage:
            _bundle(stage, "new")
            raise RuntimeError("the work failed")
    assert _snapshot(tmp_path / "b") == before and _leftovers(tmp_path) == []


# ---- killed between any two steps ---------------------------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import importlib.util
    from gru_edge import outputs
    # By file: a package named "tests" installed in site-packages (some wheels ship one) would shadow this folder.
    spec = importlib.util.spec_from_file_location("_outputs_test", Path(sys.argv[4]) / "tests" / "test_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _bundle = module._bundle

    target, kill_at, exchange = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "exchange"
    calls = [0]

    def counted(fn):
        def step(*args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return step

    for name in ("_rename", "_remove", "_link", "_sync", "_sync_folder", "_recover"):
        setattr(outputs, name, counted(getattr(outputs, name)))
    outputs._exchange = counted(outputs._exchange if exchange else lambda a, b: False)
    with outputs.staged(target, outputs.BUNDLE) as stage:
        _bundle(stage, "new")
    print("done", calls[0])
""")


@pytest.mark.parametrize("swap", ["exchange", "rename-aside"])
def test_a_run_killed_at_any_step_leaves_the_old_or_the_new_folder(tmp_path, swap):
    """SIGKILL at the 1st, 2nd, ... file-system step of a replacement, with the atomic exchange and with the
    fallback (old folder renamed aside): the folder, as the next run sees it, is whole; the next run then succeeds
    and no leftover remains."""
    root = Path(__file__).resolve().parent.parent
    old, new = _snapshot(_bundle(tmp_path / "ref-old", "old")), _snapshot(_bundle(tmp_path / "ref-new", "new"))
    kill_at, finished = 1, False
    while not finished:
        work = tmp_path / f"run{kill_at}"
        target = _bundle(work / "b", "old")
        (work / "mine.txt").write_text("user file")
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(target), str(kill_at), swap, str(root)],
                              capture_output=True, text=True, cwd=work)
        finished = proc.returncode == 0
        assert finished or proc.returncode == -signal.SIGKILL, proc.stderr
        if swap == "exchange":  # one atomic step: whole on disk, before any recovery
            assert (_snapshot(target) if target.exists() else None) in (old, new), kill_at
        outputs._recover(target, outputs.BUNDLE)  # what the next run does first
        state = _snapshot(target) if target.exists() else None
        assert state in (old, new), (kill_at, state)
        assert (work / "mine.txt").read_text() == "user file"
        with outputs.staged(target, outputs.BUNDLE) as stage:  # the next run
            _bundle(stage, "next")
        assert _leftovers(work) == [], (kill_at, _leftovers(work))
        kill_at += 1
    assert kill_at > 4  # the replacement has several steps, and each was a kill point


def test_a_model_whose_sidecar_was_deleted_is_still_gru_edges(r1_converted, tmp_path):
    """The error messages say a sidecar may be deleted (the model describes itself): the models folder stays ours."""
    import shutil

    from gru_edge import outputs

    folder = tmp_path / "models"
    folder.mkdir()
    m = r1_converted.models[0]
    shutil.copy(m.path, folder / m.path.name)  # no sidecar
    assert outputs.check_target(folder, outputs.MODELS) == folder
    (folder / "model.other.tflite").write_bytes(b"TFL3 but not a model")
    with pytest.raises(OutputError, match="model.other.tflite"):
        outputs.check_target(folder, outputs.MODELS)
