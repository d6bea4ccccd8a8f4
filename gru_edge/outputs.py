"""Output folders: written beside their target, swapped in whole, never over anything gru-edge did not write. No TF.

Every command that writes files that belong together writes one folder: ``train`` a run folder (model, training card,
windows), ``convert`` a models folder (``.tflite`` + sidecar per recipe), ``verify -o`` a parity bundle,
``quickstart`` all three, ``android`` the demo's ``assets/gru_edge``. Each is staged in a hidden folder next to its
target (which also proves, before the expensive work, that the target can be written), then swapped in with one
atomic ``renameat2(RENAME_EXCHANGE)``: a reader, or a run killed at any moment, sees the complete old folder or the
complete new one. Where the kernel cannot exchange (not Linux, or a file system without it), the old folder is
renamed aside first and put back by the next run if the swap was cut short.

A target may be absent, empty, or a gru-edge output of the same kind holding nothing else (files gru-edge recorded a
sha256 for must still have it); anything else is refused with the folder and the entries gru-edge did not write. It
is checked before the work and again just before the swap. Leftovers of killed runs are hidden folders named
``.NAME.gru-edge-HOST-PID-…``: nothing reads them, and the next run for the same target on the same machine removes
those whose process is gone (and that hold only names such a run writes).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gru_edge.errors import OutputError
from gru_edge.io import sha256_file

_TAG = ".gru-edge-"
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.gru-edge-(?P<old>old-)?(?P<host>[A-Za-z0-9]+)-(?P<pid>\d{1,9})"
                       r"-[A-Za-z0-9_]+$")
REPORT = "report.html"  # gru-edge report's page, in a quickstart folder or a models folder
REPORT_HEAD = '<!doctype html><html><head><meta charset="utf-8"><title>gru-edge report'  # every report starts so
SUMMARY_FORMAT = "gru-edge-quickstart/1"  # quickstart's summary.json, which marks its folder
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def _json(path: Path) -> dict:
    """A small JSON object file's content, or {} when it is not one (missing, a link, too large, not JSON)."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 1 << 20:
            return {}
        doc = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _format(doc: dict) -> str:
    return doc.get("format") if isinstance(doc.get("format"), str) else ""


def _file(p: Path) -> bool:
    return p.is_file() and not p.is_symlink()


def _same(p: Path, sha) -> bool:
    """``p`` is the file whose sha256 gru-edge recorded (files from before the hashes are taken by name)."""
    return sha is None or sha == sha256_file(p)


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def _foreign_run(folder: Path) -> list[str]:
    card = _json(folder / "training.json")
    if not _format(card).startswith("gru-edge-training/"):
        return [p.name for p in _entries(folder)]
    files = card.get("files") if isinstance(card.get("files"), dict) else {}
    return [p.name for p in _entries(folder) if not _file(p) or p.name not in ("model.keras", "windows.npz",
            "training.json") or (p.name != "training.json" and not _same(p, files.get(p.name)))]


def _described(model: Path) -> bool:
    """Whether ``model`` is a .tflite that carries gru-edge's description (gru_edge.description)."""
    from gru_edge import tflite_model
    from gru_edge.description import EMBEDDED
    from gru_edge.errors import GruEdgeError

    try:
        return model.is_file() and EMBEDDED in tflite_model.read(model).metadata
    except GruEdgeError:
        return False


def is_report(p: Path) -> bool:
    """``p`` is a page gru-edge report wrote (or a leftover of one being written)."""
    if not _file(p):  # not a link, a FIFO or a folder
        return False
    if re.fullmatch(rf"\.{re.escape(REPORT)}\.gru-edge-\d+", p.name):
        return True
    try:
        with open(p, "rb") as fh:
            return fh.read(len(REPORT_HEAD)) == REPORT_HEAD.encode()
    except OSError:
        return False


def _foreign_models(folder: Path) -> list[str]:
    foreign = []
    for p in _entries(folder):
        if p.name == REPORT or p.name.startswith(f".{REPORT}.gru-edge-"):  # gru-edge report on these models
            foreign += [] if is_report(p) else [p.name]
            continue
        if re.fullmatch(r"bundle\.[A-Za-z0-9._-]+", p.name) and p.is_dir() and not p.is_symlink():
            foreign += [f"{p.name}/{sub}" for sub in _foreign_bundle(p)]  # --budget: the kept model's bundle
            continue
        ok = re.fullmatch(r"model\.[A-Za-z0-9._-]+\.(tflite|json)", p.name) and _file(p)
        side = _json(p.with_suffix(".json")) if ok else {}
        if ok and p.suffix == ".tflite" and not side and _described(p):  # a model without sidecar, describing itself
            continue
        ok = ok and _format(side).startswith("gru-edge-sidecar/")
        if ok and p.suffix == ".tflite":  # a model beside its sidecar, and the one the sidecar describes
            ok = _same(p, side.get("model_sha256"))
        if not ok:
            foreign.append(p.name)
    return foreign


def _foreign_bundle(folder: Path) -> list[str]:
    doc = _json(folder / "manifest.json")
    if not _format(doc).startswith("gru-edge-parity/"):
        return [p.name for p in _entries(folder)]
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    specs = [model, doc.get("task")]
    for key in ("inputs", "outputs"):
        specs += doc[key] if isinstance(doc.get(key), list) else []
    named = {"manifest.json"} | {v for spec in specs if isinstance(spec, dict) for k, v in spec.items()
                                 if k in ("file", "targets") and isinstance(v, str)}
    return [p.name for p in _entries(folder) if p.name not in named or not _file(p)
            or (p.name == model.get("file") and not _same(p, model.get("sha256")))]


def _foreign_within(folder: Path, layout: dict[str, Callable[[Path], list[str]] | None], needed: str) -> list[str]:
    """Entries of ``folder`` outside ``layout`` (name -> check of a sub-folder, None for a file), with their paths."""
    if not (folder / needed).exists():
        return [p.name for p in _entries(folder)]
    foreign = []
    for p in _entries(folder):
        check = layout.get(p.name)
        if p.name not in layout or p.is_symlink():
            foreign.append(p.name)
        elif check is None:
            foreign += [] if p.is_file() else [p.name]
        elif not p.is_dir():
            foreign.append(p.name)
        else:
            foreign += [f"{p.name}/{sub}" for sub in check(p)]
    return foreign


def _foreign_bundles(folder: Path) -> list[str]:
    return [f"{p.name}/{sub}" if p.is_dir() and not p.is_symlink() else p.name for p in _entries(folder)
            for sub in (_foreign_bundle(p) if p.is_dir() and not p.is_symlink() else [""])]


def _foreign_quickstart(folder: Path) -> list[str]:
    if _format(_json(folder / "summary.json")) != SUMMARY_FORMAT:
        return [p.name for p in _entries(folder)]
    return _foreign_within(folder, {"summary.json": None, REPORT: None, "run": _foreign_run,
                                    "models": _foreign_models, "bundles": _foreign_bundles}, "summary.json")


def _foreign_assets(folder: Path) -> list[str]:
    side = _json(folder / "model.json")  # an install by an earlier gru-edge: a sidecar copy beside the model
    ours = _described(folder / "model.tflite") or (_format(side).startswith("gru-edge-sidecar/") and
                                                   _same(folder / "model.tflite", side.get("model_sha256")))
    if not ours:
        return [p.name for p in _entries(folder)]
    return _foreign_within(folder, {"model.tflite": None, "model.json": None, "bundle": _foreign_bundle},
                           "model.tflite")


@dataclass(frozen=True)
class Kind:
    """What a gru-edge output folder of one kind holds; ``foreign`` lists the entries that are not that, ``names``
    matches every name a (possibly half-written) staging folder of this kind can hold."""

    name: str
    made_by: str
    foreign: Callable[[Path], list[str]]
    names: str
    carry_over: bool = False  # keep the old folder's entries that the new one does not replace (models folders)


RUN = Kind("run folder", "gru-edge train", _foreign_run, r"model\.keras|training\.json|windows\.npz")
MODELS = Kind("models folder", "gru-edge convert", _foreign_models, r"model\.[A-Za-z0-9._-]+\.(tflite|json)",
              carry_over=True)
BUNDLE = Kind("parity bundle", "gru-edge verify -o", _foreign_bundle,
              r"manifest\.json|[A-Za-z0-9][A-Za-z0-9._-]*\.(npy|tflite)")
QUICKSTART = Kind("quickstart folder", "gru-edge quickstart", _foreign_quickstart,
                  r"run|models|bundles|summary\.json|report\.html|\..+\.gru-edge-.+")
ASSETS = Kind("Android demo model folder", "gru-edge android", _foreign_assets, r"model\.tflite|model\.json|bundle")
KINDS = (RUN, MODELS, BUNDLE, QUICKSTART, ASSETS)


def check_target(target: Path, kind: Kind) -> Path:
    """Return ``target`` as an absolute path if ``kind``'s output may go there; OutputError naming why not."""
    target = Path(os.path.abspath(target))
    if target.parent == target:
        raise OutputError(f"{target} is the root folder; give a new folder for the {kind.name}.")
    cwd = Path(os.path.abspath(os.getcwd()))
    if target == cwd or target in cwd.parents:
        raise OutputError(f"{target} is the current folder (or holds it); gru-edge replaces its {kind.name} "
                          f"whole, so give a new folder, e.g. -o {target.name or 'out'}-{kind.name.split()[0]}.")
    if target.is_symlink():
        raise OutputError(f"{target} is a symbolic link; gru-edge writes its {kind.name} only into a real folder.")
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target} exists and is not a folder.")
    if target.is_dir():
        try:
            foreign = kind.foreign(target)
        except OSError as e:
            raise OutputError(f"Cannot read {target}: {e.strerror}.") from None
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            if len(foreign) < len(_entries(target)):
                what = f"holds files gru-edge did not write ({shown})"
            else:
                other = next((k.name for k in KINDS if k is not kind and not k.foreign(target)), None)
                what = f"is a gru-edge {other}, not a {kind.name}" if other else f"is not a {kind.name} ({shown})"
            raise OutputError(f"{target} {what}; gru-edge replaces only an earlier {kind.name} ({kind.made_by}), "
                              f"never anything else. Give a new or empty folder.")
    return target


# ---- the file-system steps (named, so that the kill tests can stop a run between any two of them) ----------------

def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _rename(a: Path, b: Path) -> None:
    os.rename(a, b)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _link(src, dst) -> None:
    if Path(src).is_dir():  # a --budget bundle in a models folder
        shutil.copytree(src, dst, copy_function=_link)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _sync(folder: Path) -> None:
    """Flush the staged files and their folders to disk, so a power cut cannot swap in an empty file."""
    for root, dirs, files in os.walk(folder):
        for name in files + dirs + ["."]:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _recover(target: Path, kind: Kind) -> None:
    """Put back an old folder whose swap was cut short (fallback path only), and remove the leftovers of dead runs:
    only this machine's (the process ids of another are not known here), and only folders that hold nothing but
    names a staging folder of this kind can hold."""
    parent = target.parent
    if not parent.is_dir():
        return
    for p in sorted(parent.iterdir()):
        m = _LEFTOVER.match(p.name)
        if (not m or m["name"] != target.name or m["host"] != _HOST or _alive(int(m["pid"])) or p.is_symlink()
                or not p.is_dir()):
            continue
        if m["old"] and not target.exists():
            _rename(p, target)
        elif all(re.fullmatch(kind.names, c.name) for c in p.iterdir()):
            _remove(p)


class Staging:
    """A hidden folder beside ``target`` to write the new output into; ``commit`` swaps it in whole."""

    def __init__(self, target: Path, kind: Kind):
        self.kind = kind
        self.target = check_target(target, kind)
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            _recover(self.target, kind)
            self.target = check_target(self.target, kind)  # a recovered folder is checked like any other
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.target.name}{_TAG}{_HOST}-{os.getpid()}-",
                                              dir=self.target.parent))
            mode = self.target.stat().st_mode & 0o7777 if self.target.is_dir() else 0o777 & ~_umask()
            os.chmod(self.path, mode)  # mkdtemp makes 0700 folders; outputs are ordinary folders
        except OSError as e:
            raise OutputError(f"Cannot write the {kind.name} {self.target}: {e.strerror or e} "
                              f"({e.filename or self.target.parent}).") from None

    def commit(self) -> Path:
        try:
            check_target(self.target, self.kind)  # again: the work took a while, and the user may have added files
        except OutputError:
            self.discard()
            raise
        try:
            if self.kind.carry_over and self.target.is_dir():
                for p in _entries(self.target):
                    # a bundle goes with its model: not carried over when that recipe was made again
                    replaced = p.name.startswith("bundle.") and (self.path / f"model.{p.name[7:]}.tflite").exists()
                    stale = p.name == REPORT or p.name.startswith(f".{REPORT}.")  # it drew the models replaced
                    if not (self.path / p.name).exists() and not replaced and not stale:
                        _link(p, self.path / p.name)
            _sync(self.path)
            if not self.target.exists():
                _rename(self.path, self.target)
            elif _exchange(self.path, self.target):
                _remove(self.path)  # now the old folder
            else:
                aside = self.target.parent / (f".{self.target.name}{_TAG}old-{_HOST}-{os.getpid()}-"
                                              f"{self.path.name[-8:]}")
                _rename(self.target, aside)
                try:
                    _rename(self.path, self.target)
                except OSError:
                    _rename(aside, self.target)  # put the old folder back before reporting
                    raise
                _remove(aside)
            _sync_folder(self.target.parent)
        except OSError as e:
            self.discard()
            raise OutputError(f"Cannot write the {self.kind.name} {self.target}: {e.strerror or e}; it was left as "
                              "it was.") from None
        return self.target

    def discard(self) -> None:
        if self.path.exists():
            _remove(self.path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def staged(target: Path, kind: Kind):
    """Yield a folder to write ``kind``'s output into; on success it replaces ``target`` whole, on any error it is
    removed and ``target`` is left as it was. The target is checked, and made writable, before the body runs."""
    stage = Staging(target, kind)
    try:
        yield stage.path
    except BaseException:
        stage.discard()
        raise
    stage.commit()
