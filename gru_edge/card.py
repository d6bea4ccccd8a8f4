"""The training card ``training.json``: what ``gru-edge train`` did, typed, and read and validated here only. No
TensorFlow.

The card names its model and windows files by sha256 (``files``): a later stage reads it only beside the very
model it was written for. Its parts that are free-form records (the data's provenance, the split, the metrics, the
versions) stay dicts; what later stages compute with is typed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from gru_edge.errors import ModelError
from gru_edge.io import read_json_doc, sha256_file

CARD = "training.json"
MODEL = "model.keras"
WINDOWS = "windows.npz"
FORMAT = "gru-edge-training/3"  # /2: the card names its model's and windows' sha256; /3: raw units in and out
OLDER = ("gru-edge-training/1", "gru-edge-training/2")
TASKS = {"regression": "rmse", "classification": "accuracy"}


@dataclass(frozen=True)
class TrainingCard:
    task: dict  # kind, metric (TASKS), units (regression) or classes (classification)
    data: dict  # source, sha256, rows, column, features
    window: int  # time steps the GRU runs
    input_steps: int  # time steps the model reads: the window plus the framing's lag
    horizon: int
    n_features: int
    split: dict  # chronological: train, validation and held-out rows and windows
    transform: dict
    transform_trials: list
    framing: dict  # gru_edge.framing.Framing, inside the model
    input_range: dict  # {"min": [per feature], "max": [...]}: the training windows' raw values
    model: dict  # units, layers, epochs, shrink, ...
    season: int | None
    seed: int
    metrics: dict
    versions: dict
    windows_file: str = WINDOWS
    files: dict = field(default_factory=dict)  # file name -> sha256 of the model and windows this card describes
    format: str = FORMAT

    @property
    def kind(self) -> str:
        return self.task["kind"]

    @property
    def units(self) -> str:
        """The data's units the model reads and returns (a regression's target column when none were named)."""
        return self.task.get("units") or self.data.get("column") or "data units"

    @property
    def value_range(self) -> tuple[list[float], list[float]]:
        """(min, max) per feature of the training windows' raw values."""
        return self.input_range["min"], self.input_range["max"]

    def to_dict(self) -> dict:
        return {"format": self.format, **{k: v for k, v in asdict(self).items() if k != "format"}}

    @classmethod
    def from_dict(cls, doc, where: str = CARD) -> TrainingCard:
        """The card in ``doc`` (a training.json's document), or ModelError naming what is wrong with it."""
        fmt = doc.get("format") if isinstance(doc, dict) else None
        if fmt in OLDER:
            raise ModelError(f"{where} was written by an older gru-edge (its model reads scaled values, not the "
                             "data's units); train again (gru-edge train) to use it.")
        if fmt != FORMAT:
            raise ModelError(f"{where} is not a gru-edge training card (format {fmt!r}).")
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in names if n not in doc and n not in ("windows_file", "files", "format"))
        if missing:
            raise ModelError(f"{where} lacks {', '.join(missing)}; train again (gru-edge train).")
        card = cls(**{k: v for k, v in doc.items() if k in names})
        task, rng = card.task, card.input_range
        shapes_ok = (isinstance(task, dict) and isinstance(task.get("kind"), str)
                     and TASKS.get(task["kind"]) == task.get("metric")
                     and isinstance(rng, dict) and isinstance(rng.get("min"), list) and isinstance(rng.get("max"), list)
                     and len(rng["min"]) == len(rng["max"]) == card.n_features
                     and all(isinstance(v, int) and v > 0 for v in (card.window, card.input_steps, card.horizon))
                     and all(isinstance(getattr(card, k), dict) for k in ("data", "split", "framing", "model",
                                                                          "metrics", "files")))
        if not shapes_ok:
            raise ModelError(f"{where} is damaged (its task, input range or sizes are not what gru-edge writes); "
                             "train again.")
        return card

    def bound(self, folder: Path) -> TrainingCard:
        """This card with ``files`` naming the model and windows written beside it in ``folder``."""
        return replace(self, files={name: sha256_file(Path(folder) / name) for name in (MODEL, WINDOWS)})

    def write(self, folder: Path) -> None:
        (Path(folder) / CARD).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def load(model_path: Path) -> TrainingCard | None:
    """The training card beside ``model_path`` (None when there is none), checked to have been written for that
    model file."""
    path = Path(model_path).parent / CARD
    if not path.is_file():
        return None
    card = TrainingCard.from_dict(read_json_doc(path, ModelError, "train again or remove it"), str(path))
    check_bound(card, path, Path(model_path), MODEL)
    return card


def check_bound(card: TrainingCard, card_path: Path, file: Path, role: str) -> None:
    if card.files.get(role) != sha256_file(file):
        raise ModelError(f"{card_path.name} in {card_path.parent} was written for another {role} than {file} "
                         f"(sha256 differs): the folder's files do not belong together. Train again, or move "
                         f"{file.name} to a folder of its own.")


def windows_file(model_path: Path, card: TrainingCard) -> Path:
    """The windows file beside ``model_path``, checked against the card that names it."""
    path = Path(model_path).parent / WINDOWS
    if not path.is_file():
        raise ModelError(f"{path} is missing; it is written by 'gru-edge train' beside the model.")
    check_bound(card, path.parent / CARD, path, WINDOWS)
    return path
