"""The names a lowered graph carries, defined once: signature keys, tensor names, and the op scopes that let
``verify --explain`` say which layer, gate and time step an op computes. No TensorFlow.

The lowering (gru_edge.lowering, gru_edge.raw_ops) writes them; the runtimes, the GPU check, the benchmark, the
converter's int8 pass and the explanation read them.
"""

from __future__ import annotations

import re

SERVE, STEP = "serving_default", "step"  # signature keys: the whole window; one time step (streaming recipes)
FRAME = "frame"  # the step signature's input: one time step's features
STATE = "state_"  # prefix of the step signature's state inputs; the new state is returned as NAME + OUT
OUT = "_out"
RING, COUNT = "state_ring", "state_count"  # a streaming framed model's extra states (zeros to start)
# Name scope of the ops that compute on raw values or their log (levels that drift with the series): quantized
# recipes keep them in float (gru_edge.convert_worker), the core's ops see differences and scaled values only.
RAW = "raw"


def state_name(i: int) -> str:
    return f"{STATE}{i}"


def is_state(name: str) -> bool:
    return name.startswith(STATE)


def state_out(name: str) -> str:
    return f"{name}{OUT}"


# ---- op scopes: layer, gate and time step ------------------------------------------------------------------------
# A GRU step computes the update and reset gates together (one matrix, one activation, then a SPLIT), the candidate,
# and the new state from the update gate. Ops outside any step: the input projections of all steps at once (ALL),
# the SPLITs that cut them into steps and the CONCATENATIONs that join the states ("steps"), the Dense head ("head").
GATES = ("update+reset", "reset", "candidate", "update", "steps", "head")
ALL = "all"
_SCOPE = re.compile(rf"(?:^|[;/])([A-Za-z0-9_-]+)\.(t\d+|{ALL})\."
                    rf"({'|'.join(g.replace('+', '_') for g in GATES)})(?:_\d+)?/")


def scope_layer(name: str) -> str:
    """A layer name as it may stand in a TensorFlow name scope (which must start with a letter, digit or '.')."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return clean if re.match(r"[A-Za-z0-9]", clean) else f"L{clean}"


def scope(layer: str, gate: str, t: int | None = None) -> str:
    """The name scope of the ops of ``layer``'s ``gate`` at input time index ``t`` (None: every step at once)."""
    return f"{scope_layer(layer)}.{ALL if t is None else f't{t}'}.{gate.replace('+', '_')}"


OUTPUT = ":output"  # key of read_scope's ``layers``: the scope of the op that returns the model's output
_GRAPH_OUTPUT = re.compile(r"(Stateful)?PartitionedCall(_\d+)?:\d+")  # the converter's name for a graph output


def read_scope(tensor: str, layers: dict[str, str] | None = None) -> dict:
    """{layer, gate, t} of the op whose output tensor is ``tensor`` (a converter name such as
    ``gru.t3.update/mul;gru.t3.update/add``), from the first scope found; ``layers``: scope name -> layer name,
    and OUTPUT -> the scope of the op returning the output (the converter names that tensor after the graph).
    Gate and t are None for an op no GRU step or head owns; its layer is then the layer whose scope holds it,
    "framing (raw values)" for the framing's ops on raw values (RAW), or None."""
    layers = layers or {}
    if _GRAPH_OUTPUT.fullmatch(tensor) and OUTPUT in layers:
        tensor = f"{layers[OUTPUT]}/{tensor}"
    found = _SCOPE.search(tensor)
    if found:
        where, gate = found.group(2), found.group(3).replace("_", "+")
        return {"layer": layers.get(found.group(1), found.group(1)), "gate": gate,
                "t": None if where == ALL else int(where[1:])}
    for part in tensor.split(";"):
        head = part.split("/", 1)[0] if "/" in part else None
        unique = re.sub(r"_\d+$", "", head or "")  # TensorFlow's suffix for a scope opened again
        for name in (head, unique):
            if name in layers:
                return {"layer": layers[name], "gate": None, "t": None}
        if unique == RAW:
            return {"layer": "framing (raw values)", "gate": None, "t": None}
    return {"layer": None, "gate": None, "t": None}
