"""How results read on a terminal: number formats, plain tables, the parity report, the model inspection, and the
one JSON document of a --json run."""

from __future__ import annotations

import json
import math
from pathlib import Path


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def err(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.2e}"


def psnr(x: float) -> str:
    return "exact" if math.isinf(x) and x > 0 else f"{x:.1f} dB"


def delta(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2%}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def parity_report(report, header: str) -> str:
    """The verify report: one line per output, the task metric, streaming, accelerator, notes, PASS/FAIL."""
    lines = [header]
    for o in report.outputs:
        lines.append(f"  {o.name}: max abs error {err(o.max_abs_error)}, max rel error {err(o.max_rel_error)}, "
                     f"PSNR {psnr(o.psnr_db)} over {report.samples} samples")
    if report.task:
        t = report.task
        unit = f" [{t.units}]" if t.units and t.metric != "accuracy" else ""
        lines.append(f"  task {t.metric}{unit}: original {t.reference:.4g}, converted {t.converted:.4g} "
                     f"({delta(t.relative_delta)}, + is worse) on the {t.rows} samples with targets")
        if t.class_agreement is not None:
            lines.append(f"  class agreement with the original: {t.class_agreement:.2%} of {report.samples} samples")
    if report.streaming:
        st = report.streaming
        lines.append(f"  step signature, one time step at a time: max abs error {err(st['max_abs_error'])}, "
                     f"{err(st['max_abs_diff_vs_full_sequence'])} from the full-sequence signature")
    if report.accelerator and "precision" not in report.accelerator:
        lines.append(f"  run by: {report.accelerator['runtime']}")
    elif report.accelerator:
        a = report.accelerator
        lines.append(f"  accelerator: {a['accelerator']} ({a['precision']}), fully accelerated: "
                     f"{'yes' if a['fully_accelerated'] else 'no'}")
    t = report.tolerances
    lines.append(f"  limits: |error| <= {t.atol:g} x peak + {t.rtol:g} x |expected|, PSNR >= {t.min_psnr_db:g} dB, "
                 f"task metric worse by <= {t.max_task_metric_delta:.2%}"
                 + (f"; from {report.tolerances_source}" if report.tolerances_source else ""))
    lines += [f"  note: {note}" for note in report.notes]
    lines.append("PASS" if report.passed else "FAIL")
    lines += [f"  - {failure}" for failure in ([] if report.passed else report.failures)]
    return "\n".join(lines)


def quickstart_summary(doc: dict) -> str:
    """``gru-edge quickstart``: the model beside its baselines, each recipe's parity, where the files are; from the
    document --json prints (QuickstartResult.to_dict)."""
    m, out = doc["train"]["metrics"], Path(doc["out_dir"])
    rows = [[r["recipe"], f"{r['size_bytes'] / 1024:.1f} KiB", err(r["max_abs_error"]),
             psnr(float("inf") if r["psnr_db"] is None else r["psnr_db"]), delta(r["task_metric_delta"]),
             "PASS" if r["passed"] else "FAIL"] for r in doc["recipes"]]
    return "\n".join([
        f"airline GRU: held-out RMSE {m['heldout_rmse']:.2f} vs seasonal-naive {m['seasonal_naive_rmse']:.2f} and "
        f"naive {m['naive_rmse']:.2f} {m['units']} (last 24 months)", "",
        table(["recipe", "size", "max abs error", "PSNR", "RMSE delta", "parity"], rows), "",
        f"run:     {doc['train']['run_dir']}", f"models:  {out / 'models'}", f"bundles: {out / 'bundles'}",
        f"summary: {out / 'summary.json'}", f"report:  {out / 'report.html'}", f"took {doc['seconds']:.0f} s"])


def explanation(found, top: int = 12) -> str:
    """``verify --explain``: the error per layer and gate, then the ops with the largest error, each named by layer,
    gate and time step."""
    lines = [f"int8 quantization error by layer (recipe {found.recipe}; rmse / scale, in quantization steps; "
             f"{len(found.ops)} ops ranked in {found.seconds:.1f} s):"]
    width = max((len(x.layer) for x in found.layers), default=5)
    for x in found.layers:
        gates = ", ".join(f"{g} {v:.3f}" for g, v in x.gates.items() if g != "-")
        lines.append(f"  {x.layer:<{width}}  worst {x.worst.rmse_over_scale:.3f} ({x.worst.op} "
                     f"{x.worst.where.removeprefix(x.layer).strip() or 'op'}), mean {x.mean:.3f} over {x.ops} ops"
                     + (f"; by gate: {gates}" if gates else ""))
    lines.append(f"worst {min(top, len(found.ops))} ops:")
    lines += [f"  {o.rmse_over_scale:8.3f}  {o.op:<16} {o.where}" for o in found.ops[:top]]
    return "\n".join(lines)


def inspection(name: str, info, findings, description=None, runtime=None) -> str:
    """``gru-edge inspect``: description, size split, signatures, op counts and versions, GPU findings and, when
    asked, what an older runtime refuses."""
    from gru_edge import gpu

    kib = lambda n: f"{n / 1024:.1f} KiB"  # noqa: E731
    fmt = lambda ts: ", ".join(f"{t.name} {list(t.shape)} {t.dtype}" for t in ts)  # noqa: E731
    lines = [f"{name}: {kib(info.size_bytes)} (weights {kib(info.weight_bytes)}, graph "
             f"{kib(info.size_bytes - info.weight_bytes)}), min runtime {info.min_runtime_version or 'unknown'}",
             _time_form(info, description),
             "signatures:", *(f"  {sig.key}: {fmt(sig.inputs)} -> {fmt(sig.outputs)}" for sig in info.signatures),
             f"ops ({len(info.ops)}):"]
    if description:
        task, gpu_settings, source = description.task or {}, description.gpu, description.source_model
        lines.insert(1, f"described by {description.tool}: recipe {description.recipe_name}, from "
                        f"{Path(str(source.get('path'))).name} (sha256 {str(source.get('sha256'))[:12]}), "
                        f"{description.form or 'chain'}, units {task.get('units') or 'not named'}, GPU "
                        f"{'{precision} (fallback {fallback})'.format(**gpu_settings) if gpu_settings else 'not asked'}")
    else:
        lines.insert(1, "described: no (not converted by gru-edge: no description inside, no sidecar)")
    versions = info.op_versions
    lines += [f"  {op:<20} {count:>5}  v{','.join(map(str, versions[op]))}" for op, count in info.op_counts.items()]
    if findings:
        lines += [f"GPU findings ({len(findings)}):", *(f"  {f}" for f in findings)]
    else:
        lines.append(f"GPU findings: none ({gpu.CLASSIC} and {gpu.LITERT} rules)")
    if runtime is not None:
        lines.append(f"runtime {runtime}")
    return "\n".join(lines)


def _time_form(info, description) -> str:
    """inspect's line on how the model runs through time."""
    per = description.loop_steps if description else None
    if info.time_form == "loop":
        return (f"form: loop (WHILE over time{f', {per} steps per iteration' if per else ''}): the file does not "
                "grow with the window; GPU delegates refuse WHILE")
    return ("form: unrolled (every time step in the graph, no WHILE: what GPU delegates need): the file grows with "
            "the window")


def _finite(value, path: str, found: list[str]):
    """``value`` with every NaN/Inf replaced by None (JSON has no such numbers), noting where in ``found``."""
    if isinstance(value, dict):
        return {k: _finite(v, f"{path}.{k}", found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        found.append(f"{path} ({value})")
        return None
    return value


def json_document(result: dict | None, exit_code: int = 0, error: str | None = None) -> str:
    """The one JSON document of a --json run: the same top keys on every path, success or not."""
    found: list[str] = []
    result = _finite(result, "result", found)
    notes = [f"not finite, written as null: {', '.join(found)}"] if found else []
    return json.dumps({"ok": exit_code == 0, "exit_code": exit_code, "error": error, "notes": notes,
                       "result": result}, indent=2, default=str, allow_nan=False)


def train_summary(result) -> list[str]:
    """What ``train`` prints: files, the transform, held-out metrics beside the baselines, a warning when the model
    does not beat them."""
    card, m = result.card, result.card.metrics
    lines = [f"model:     {result.model_path}", f"card:      {result.card_path}"] if result.written_by is None else [
        f"worker {result.written_by}: trained its share; the chief (worker 0) writes the run folder"]
    if card.data.get("shards"):
        d = card.model["distribute"]
        lines.append(f"data:      {card.data['shards']} shards, {card.data['rows']} rows, streamed; "
                     f"{plural(d['replicas'], 'replica')} ({d['strategy']})")
    if card.kind == "classification":
        return lines + [f"held-out accuracy ({card.split['heldout_windows']} windows): "
                        f"{m['heldout_accuracy']:.2%} (majority class: {m['majority_class_accuracy']:.2%})"]
    tr, unit = card.transform, m["units"]
    chosen = " (chosen on the validation split)" if tr["requested"] == "auto" else ""
    lines += [f"transform: {tr['spec']}{chosen}, inside the model: it reads and returns {unit}",
              f"window:    {card.window} steps; head shrink {card.model['shrink']:.2f} (its fit on the "
              "validation split; 0 forecasts the training part's mean, of the change when differenced)",
              f"epochs:    {card.model['epochs']} (early stopping on the last {card.split['validation_rows']} "
              "training values)",
              f"held-out RMSE ({card.split['heldout_windows']} windows, {unit}): {m['heldout_rmse']:.3f}",
              f"  naive:          {m['naive_rmse']:.3f}"]
    if "seasonal_naive_rmse" in m:
        lines.append(f"  seasonal-naive: {m['seasonal_naive_rmse']:.3f}")
    lines += [f"WARNING: {w}" for w in result.warnings]
    return lines
