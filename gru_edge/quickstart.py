"""The main job: train on the airline data, convert to every shipped recipe, verify each, summarise."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from gru_edge import convert as convert_mod, model as model_mod, recipes, verify as verify_mod
from gru_edge.io import atomic_write_text


@dataclass(frozen=True)
class Row:
    recipe: str
    path: Path
    size_bytes: int
    max_abs_error: float
    psnr_db: float
    task_delta: float | None
    passed: bool
    bundle: Path

    def to_dict(self) -> dict:
        return {"recipe": self.recipe, "model": str(self.path), "size_bytes": self.size_bytes,
                "max_abs_error": self.max_abs_error, "psnr_db": None if self.psnr_db == float("inf") else
                self.psnr_db, "task_metric_delta": self.task_delta, "passed": self.passed,
                "bundle": str(self.bundle)}


@dataclass(frozen=True)
class QuickstartResult:
    out_dir: Path
    train: model_mod.TrainResult
    rows: tuple[Row, ...]
    seconds: float

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def to_dict(self) -> dict:
        return {"out_dir": str(self.out_dir), "passed": self.passed, "seconds": self.seconds,
                "train": self.train.to_dict(), "recipes": [r.to_dict() for r in self.rows]}


def run(out_dir: Path, config: model_mod.TrainConfig | None = None, recipe_names: list[str] | None = None,
        log=lambda msg: None) -> QuickstartResult:
    started = time.perf_counter()
    out_dir = Path(out_dir)
    names = recipe_names or recipes.shipped_names()
    for name in names:  # fail on a bad recipe before training, not after
        recipes.load(name)
    trained = model_mod.train(config or model_mod.TrainConfig(), out_dir / "run", log=log)
    m = trained.card["metrics"]
    log(f"held-out RMSE {m['heldout_rmse']:.2f} (naive {m['naive_rmse']:.2f}, seasonal-naive "
        f"{m.get('seasonal_naive_rmse', float('nan')):.2f})")
    converted = convert_mod.convert(trained.model_path, names, out_dir / "models", log=log)
    rows = []
    keras_model = model_mod.load_model(trained.model_path)
    for cm in converted.models:
        result = verify_mod.verify(trained.model_path, cm.path, out_dir / "bundles" / cm.recipe,
                                   keras_model=keras_model)
        rep = result.report
        rows.append(Row(cm.recipe, cm.path, cm.size_bytes, rep.max_abs_error, rep.psnr_db,
                        rep.task.relative_delta if rep.task else None, rep.passed, result.bundle))
        log(f"  verified {cm.recipe}: {'PASS' if rep.passed else 'FAIL'}")
    result = QuickstartResult(out_dir, trained, tuple(rows), round(time.perf_counter() - started, 1))
    atomic_write_text(out_dir / "summary.json", json.dumps(result.to_dict(), indent=2) + "\n")
    return result
