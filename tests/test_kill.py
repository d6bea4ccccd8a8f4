"""SIGKILL at random moments: train, convert, verify -o and android, each killed while replacing an earlier output
of its own. Afterwards the output folder is its complete old state or its complete new state (checked the way
gru-edge reads it: every file present and bound to the others by its sha256), nothing beside it changed, and the
next run succeeds and leaves no leftovers. (tests/test_outputs.py stops a replacement between every two of its
file-system steps; this test kills the real commands.)"""

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gru_edge import bundle as bundle_mod, runs
from gru_edge.card import load as load_card
from gru_edge.description import load as load_sidecar
from gru_edge.io import sha256_file

RUNS = {"train": 2, "convert": 2, "verify": 2, "android": 11}  # 17 kills in all; android is the quickest


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _start(args: list, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gru_edge", *map(str, args), "-q"], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _timed(args: list, cwd: Path) -> float:
    started = time.perf_counter()
    proc = _start(args, cwd)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    return time.perf_counter() - started


def _whole_run(folder: Path) -> bool:
    card = load_card(folder / "model.keras")  # raises unless the card is bound to this model
    runs.load_windows(folder / "model.keras", card)  # ... and to these windows
    return set(_tree(folder)) == {"model.keras", "training.json", "windows.npz"} and card.seed == 1


def _whole_models(folder: Path, source: Path) -> bool:
    names = set(_tree(folder))
    for tflite in folder.glob("*.tflite"):
        side = load_sidecar(tflite)  # raises unless bound to this .tflite
        if side.source_model["sha256"] != sha256_file(source):
            return False
    return names == {"model.float32.tflite", "model.float32.json"}


def _whole_bundle(folder: Path, recipe: str) -> bool:
    b = bundle_mod.read_bundle(folder)
    return b.recipe == recipe and sha256_file(b.model_path) == b.manifest.model.sha256


def _whole_assets(folder: Path, new_model: Path) -> bool:
    load_sidecar(folder / "model.tflite")
    b = bundle_mod.read_bundle(folder / "bundle")
    return sha256_file(folder / "model.tflite") == sha256_file(new_model) == b.manifest.model.sha256


@pytest.fixture(scope="module")
def world(tmp_path_factory, r1_run, r1_converted):
    """Two models, each converted; bundles of two recipes; a demo copy."""
    root = tmp_path_factory.mktemp("kill")
    from gru_edge.conversion import convert
    from gru_edge.model import TrainConfig, train
    from gru_edge.verification import verify

    other = train(TrainConfig(units=4, epochs=1, seed=5), root / "other").model_path
    b = convert(other, ["float32"], root / "models-b")
    by = {m.recipe: m.path for m in r1_converted.models if m.recipe in ("float32", "float16")}
    bundles = {r: verify(r1_run / "model.keras", by[r], root / f"bundle-{r}").bundle for r in by}
    demo = root / "demo"
    shutil.copytree(Path(__file__).resolve().parent.parent / "android_demo", demo,
                    ignore=shutil.ignore_patterns("assets"))
    return {"root": root, "keras": r1_run / "model.keras", "other": other, "b": b, "models": by,
            "bundles": bundles, "demo": demo}


def _case(name: str, w: dict, work: Path):
    """(command args, old state maker, check that a state is the complete new one)"""
    if name == "train":
        return (["train", "--epochs", "2", "--units", "4", "--seed", "1", "-o", work / "out"],
                lambda: shutil.copytree(w["other"].parent, work / "out"), lambda: _whole_run(work / "out"))
    if name == "convert":
        return (["convert", w["keras"], "--to", "float32", "-o", work / "out"],
                lambda: shutil.copytree(w["b"].out_dir, work / "out"),
                lambda: _whole_models(work / "out", w["keras"]))
    if name == "verify":
        return (["verify", w["keras"], w["models"]["float16"], "-o", work / "out"],
                lambda: shutil.copytree(w["bundles"]["float32"], work / "out"),
                lambda: _whole_bundle(work / "out", "float16"))
    demo = work / "demo"
    assets = demo / "app" / "src" / "main" / "assets" / "gru_edge"

    def old():
        shutil.copytree(w["demo"], demo)
        _timed(["android", w["models"]["float32"], "--bundle", w["bundles"]["float32"], "--demo", demo], work)
    return (["android", w["models"]["float16"], "--bundle", w["bundles"]["float16"], "--demo", demo], old,
            lambda: _whole_assets(assets, w["models"]["float16"]))


@pytest.mark.parametrize("command", ["train", "convert", "verify", "android"])
def test_killed_at_random_moments_the_output_is_old_or_new(world, tmp_path, command):
    rng = random.Random(f"kill-{command}")
    ref = tmp_path / "ref"
    ref.mkdir()
    args, make_old, is_new = _case(command, world, ref)
    make_old()
    seconds = _timed(args, ref)  # how long an uninterrupted run takes; it also proves the new state is "new"
    assert is_new()
    outcomes = []
    work = tmp_path / "work"
    work.mkdir()
    args, make_old, is_new = _case(command, world, work)
    make_old()
    (work / "mine.txt").write_text("the user's")
    target = Path(args[args.index("-o") + 1]) if "-o" in args else \
        work / "demo" / "app" / "src" / "main" / "assets" / "gru_edge"
    beside = {p.name for p in target.parent.iterdir() if ".gru-edge-" not in p.name}
    kills = attempts = 0
    while kills < RUNS[command] and attempts < 3 * RUNS[command]:  # one folder, killed again and again: each run
        attempts += 1                                                # starts from what the last one left
        old = _tree(target)
        proc = _start(args, work)
        time.sleep(rng.uniform(0.2, 0.95) * seconds)  # anywhere in the run, the writing at its end included
        if proc.poll() is not None:  # it finished first (this run was quicker than the reference): aim earlier
            seconds *= 0.8
            assert proc.returncode == 0 and is_new(), proc.stderr.read()
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        now = _tree(target) if target.is_dir() else None
        state = "old" if now == old else ("new" if now is not None and is_new() else "broken")
        assert state in ("old", "new"), (command, kills, now)
        assert (work / "mine.txt").read_text() == "the user's"
        assert {p.name for p in target.parent.iterdir() if ".gru-edge-" not in p.name} == beside
        outcomes.append(state)
    again = _start(args, work)  # the next run succeeds and cleans what the killed ones left
    _, err = again.communicate()
    assert again.returncode == 0, err
    assert is_new() and not [p.name for p in target.parent.iterdir() if ".gru-edge-" in p.name]
    print(json.dumps({command: outcomes}))
    assert kills == RUNS[command]  # every one of them killed while it ran
