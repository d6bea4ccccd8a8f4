"""Budget mode: the smallest model whose verified task-metric change stays within a stated budget.

Candidates are converted once, ordered by file size, and verified against the Keras original on the held-out
windows, smallest first; int8 is also tried with its most error-prone ops kept in float (selective quantization).
The first candidate whose relative task-metric change |delta| is within the budget is kept, with its parity bundle
(``OUT/bundle.RECIPE``, made from the verification that accepted it). Every try is reported.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gru_edge import conversion as convert_mod, outputs, recipes
from gru_edge.errors import ConversionError
from gru_edge.card import load as load_card
from gru_edge.runs import load_model

DEFAULT_CANDIDATES = ("int8", "dynamic-int8", "int16x8", "float16", "float32")
FALLBACKS = (0.1, 0.25, 0.5)


@dataclass(frozen=True)
class Try:
    recipe: str
    size_bytes: int
    task_delta: float | None
    max_abs_error: float
    accepted: bool
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BudgetResult:
    budget: float
    chosen: convert_mod.ConvertedModel | None
    tries: tuple[Try, ...]
    bundle: Path | None = None  # the kept model's parity bundle

    @property
    def closest(self) -> Try | None:
        """The try whose task metric changed least, when none was within the budget."""
        measured = [t for t in self.tries if t.task_delta is not None]
        return None if self.chosen else min(measured, key=lambda t: abs(t.task_delta), default=None)

    @property
    def failure(self) -> str | None:
        """Why nothing was kept (None when a model was), naming the closest try."""
        if self.chosen is not None:
            return None
        hint = f" The closest was {self.closest.recipe} ({self.closest.task_delta:+.2%})." if self.closest else ""
        return (f"No candidate stays within the {self.budget:.2%} budget ({len(self.tries)} tried).{hint} Raise the "
                "budget or add larger recipes to --to.")

    def to_dict(self) -> dict:
        return {"budget": self.budget, "chosen": self.chosen.to_dict() if self.chosen else None,
                "bundle": str(self.bundle) if self.bundle else None, "tries": [t.to_dict() for t in self.tries],
                "closest": self.closest.recipe if self.closest else None}


def parse_budget(text: str) -> float:
    """'1%' -> 0.01, '0.01' -> 0.01."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def _with_fallback(base: recipes.Recipe, share: float) -> recipes.Recipe:
    return replace(base, name=f"{base.name}-float{round(share * 100)}", float_fallback=share,
                   description=f"{base.name} with the {share:.0%} most error-prone ops kept in float")


def search(model_path: Path, budget: float, out_dir: Path, candidates: list[str] | None = None,
           fallbacks: tuple[float, ...] = FALLBACKS, log=lambda msg: None) -> BudgetResult:
    """Convert, order by size, verify smallest first; copy the first within ``budget`` into ``out_dir``."""
    model_path = Path(model_path)
    if load_card(model_path) is None:
        raise ConversionError(f"Budget mode needs the training card beside {model_path.name}: the budget is a change "
                              "of the task metric on the held-out windows.")
    names = list(candidates or DEFAULT_CANDIDATES)
    stage = outputs.Staging(out_dir, outputs.MODELS)  # checked and writable before any conversion
    bundle = None
    try:
        with tempfile.TemporaryDirectory(prefix="gru-edge-budget-") as tmp:
            chosen, tries, made = _search(model_path, budget, names, fallbacks, Path(tmp), log)
            if chosen is not None:
                for path in (chosen.path, chosen.sidecar):
                    shutil.copyfile(path, stage.path / path.name)
                shutil.copytree(made, stage.path / made.name)
                stage.commit()
                chosen = replace(chosen, path=Path(out_dir) / chosen.path.name,
                                 sidecar=Path(out_dir) / chosen.sidecar.name)
                bundle = Path(out_dir) / made.name
    finally:
        stage.discard()
    return BudgetResult(budget, chosen, tuple(tries), bundle)


def _search(model_path: Path, budget: float, names: list[str], fallbacks: tuple[float, ...], tmp: Path,
            log) -> tuple[convert_mod.ConvertedModel | None, list[Try], Path | None]:
    """Convert every candidate into ``tmp``, verify smallest first (each writing its bundle); the first within
    ``budget``, every try, and the kept model's bundle."""
    from gru_edge.verification import verify

    todo: list[str | recipes.Recipe] = list(names)
    for name in names:
        base = recipes.load(name)
        if base.quantization == "int8" and base.lowering == "gru-edge" and not base.float_fallback:
            todo += [_with_fallback(base, share) for share in fallbacks]
    converted = convert_mod.convert(model_path, todo, tmp / "models", log=log).require_all()
    tries: list[Try] = []
    keras_model = load_model(model_path)
    for m in sorted(converted.models, key=lambda m: m.size_bytes):
        made = tmp / f"bundle.{m.recipe}"
        rep = verify(model_path, m.path, made, keras_model=keras_model).report
        delta = rep.task.relative_delta if rep.task else None
        finite = all(math.isfinite(o.max_abs_error) for o in rep.outputs)
        ok = delta is not None and finite and abs(delta) <= budget
        tries.append(Try(m.recipe, m.size_bytes, delta, rep.max_abs_error, ok, "" if finite else "non-finite outputs"))
        log(f"  {m.recipe}: {m.size_bytes / 1024:.1f} KiB, task metric "
            f"{'-' if delta is None else f'{delta:+.2%}'} -> {'within' if ok else 'outside'} {budget:.2%}")
        if ok:
            return m, tries, made
    return None, tries, None
