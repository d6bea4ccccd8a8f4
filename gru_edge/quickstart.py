"""The main job: train on the airline data, convert to every shipped recipe, verify each, summarise, draw the
report (gru_edge/report.py)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from gru_edge import card, conversion as convert_mod, model as model_mod, outputs, recipes, report, runs, \
    verification as verify_mod


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
    """Train, convert to every recipe, verify each; ``out_dir`` (run/, models/, bundles/, summary.json) is replaced
    whole at the end, or left as it was."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    names = recipe_names or recipes.shipped_names()
    for name in names:  # fail on a bad recipe before training, not after
        recipes.load(name)
    with outputs.staged(out_dir, outputs.QUICKSTART) as stage:
        trained = model_mod.train(config or model_mod.TrainConfig(), stage / "run", log=log)
        m = trained.card.metrics
        log(f"held-out RMSE {m['heldout_rmse']:.2f} {m['units']} (naive {m['naive_rmse']:.2f}, seasonal-naive "
            f"{m.get('seasonal_naive_rmse', float('nan')):.2f})")
        converted = convert_mod.convert(trained.model_path, names, stage / "models", log=log).require_all()
        rows = []
        keras_model = runs.load_model(trained.model_path)
        for cm in converted.models:
            result = verify_mod.verify(trained.model_path, cm.path, stage / "bundles" / cm.recipe,
                                       keras_model=keras_model)
            rep = result.report
            rows.append(Row(cm.recipe, out_dir / "models" / cm.path.name, cm.size_bytes, rep.max_abs_error,
                            rep.psnr_db, rep.task.relative_delta if rep.task else None, rep.passed,
                            out_dir / "bundles" / cm.recipe))
            log(f"  verified {cm.recipe}: {'PASS' if rep.passed else 'FAIL'}")
        trained = replace(trained, run_dir=out_dir / "run", model_path=out_dir / "run" / card.MODEL,
                          card_path=out_dir / "run" / card.CARD)
        result = QuickstartResult(out_dir, trained, tuple(rows), round(time.perf_counter() - started, 1))
        (stage / "summary.json").write_text(json.dumps({"format": outputs.SUMMARY_FORMAT, **result.to_dict()}, indent=2)
                                            + "\n")
        log("drawing the report")
        report.write(stage, log=log)
    return result
