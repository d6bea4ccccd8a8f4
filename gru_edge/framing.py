"""Raw units in, raw units out: the series transform and its inverse as part of the model graph.

A gru-edge model takes windows of raw values [B, T + lag, F] (target column first, then the features) and returns
forecasts in the data's units. Two layers sit around the GRU core:

- ``Frame``: the target's log (optional), its lagged differences (``diffs``, applied in turn: ``lag`` = their sum
  steps of history) and a fixed scaling of every column, all fitted on the training part. One difference d gives
  z = (lx[:, d:] - m * lx[:, :T] - offset) / scale, where m selects the target column; several give the product
  of (1 - B^d) as one sum of shifted slices. The core sees the same stationary range however far the series has
  drifted, so int8 ranges calibrated on the training part hold on the held-out part.
- ``Unframe``: the inverse for the core's output: the change times the scale plus the mean, added to the levels it
  is taken from (the window's last ``lag`` values, or earlier steps' forecasts: constant weights), then exp.

The lowering (gru_edge/lowering.py) writes the same arithmetic with builtin ops only: MAXIMUM, LOG, STRIDED_SLICE,
SUB, MUL, ADD, FULLY_CONNECTED (constant matrices weigh the levels and chained differences) and EXP; int8 keeps these
ops in float so that raw values are never clipped by an int8 range.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TINY = 1e-30  # log(max(x, TINY)): a non-positive value gives a very small level instead of NaN
FAR = 10.0  # a column whose mean lies more than FAR standard deviations from zero is centred in float first


@dataclass(frozen=True)
class Framing:
    """The fitted transform: ``target`` False for classification (features are only scaled)."""

    window: int  # time steps the GRU sees
    features: int  # columns of the input, the target first when ``target``
    target: bool = True
    log: bool = False
    diffs: tuple[int, ...] = ()  # lagged differences applied in turn, e.g. (1, 12): (1 - B)(1 - B^12)
    mean: float = 0.0
    std: float = 1.0
    feature_mean: tuple[float, ...] = ()
    feature_std: tuple[float, ...] = ()
    horizon: int = 1

    @property
    def lag(self) -> int:
        """Steps of history the differences need before the first value the GRU sees."""
        return sum(self.diffs)

    @property
    def input_steps(self) -> int:
        return self.window + self.lag

    def to_dict(self) -> dict:
        return asdict(self) | {"diffs": list(self.diffs), "lag": self.lag}

    @classmethod
    def from_dict(cls, d: dict) -> "Framing":
        d = dict(d)
        lag = d.pop("lag", 0)
        d["diffs"] = tuple(d.get("diffs", (lag,) if lag else ()))  # a single 'lag' before several differences
        d["feature_mean"], d["feature_std"] = tuple(d.get("feature_mean", ())), tuple(d.get("feature_std", ()))
        return cls(**d)

    def terms(self) -> list[tuple[int, float]]:
        """The differences as one sum: z_t = lx_t + sum(p * lx_{t-j} for j, p in terms)."""
        return difference_terms(self.diffs)

    # Constants of the graph, shared by the Keras layers and the lowering.
    def mask(self) -> np.ndarray:
        """[F]: 1 for the target column, 0 for features."""
        m = np.zeros(self.features, np.float32)
        if self.target:
            m[0] = 1.0
        return m

    def offset(self) -> np.ndarray:
        return np.asarray(([self.mean] if self.target else []) + list(self.feature_mean), np.float32)

    def inverse_scale(self) -> np.ndarray:
        return (1.0 / np.asarray(([self.std] if self.target else []) + list(self.feature_std), np.float64)
                ).astype(np.float32)

    def centre(self) -> np.ndarray | None:
        """[F]: what the lowering subtracts in float before the scaling, for the columns whose offset lies more than
        FAR scales from zero (0 for the others): the offset rounded to float16, so that float16 files store it
        exactly (the rest, at most half a float16 step, is folded into the projection harmlessly: it is not many
        spreads large); a mean beyond float16's range stays in float32. None when no column needs it. Folded into the input projection (or the head's bias, on the way
        out), such an offset cancels catastrophically: an int8 range that must include 0 has steps wider than the
        column's spread, and a float16 bias loses it (LakeHuron on its log: 6.36 +- 0.002)."""
        offset, scale = self.offset(), 1.0 / self.inverse_scale()
        far = np.abs(offset) > FAR * scale
        if not far.any():
            return None
        with np.errstate(over="ignore"):
            rounded = offset.astype(np.float16).astype(np.float32)
        return np.where(far, np.where(np.isfinite(rounded), rounded, offset), 0).astype(np.float32)

    def level_matrix(self) -> np.ndarray:
        """[lag * F, horizon]: forecast k's weight on each of the last ``lag`` input frames (flattened, the target's
        column only) when the differences are undone (see ``_undo``)."""
        q = np.zeros((self.lag * self.features, self.horizon), np.float32)
        q[:: self.features] = self._undo()[0]
        return q

    def chain_matrix(self) -> np.ndarray:
        """[horizon, horizon]: forecast k's weight on each predicted difference (k's own, and earlier steps' when a
        forecast's level is an earlier forecast)."""
        return self._undo()[1].astype(np.float32)

    def _undo(self) -> tuple[np.ndarray, np.ndarray]:
        """Forecast k = lx_k = dz_k - sum(p * lx_{k-j}), where lx_{k-j} is one of the last ``lag`` frames of the
        window (k - j < 0) or an earlier forecast: affine in both, with weights [lag, H] and [H, H]."""
        lag, h = self.lag, self.horizon
        frames, chain = np.zeros((lag, h)), np.zeros((h, h))
        for k in range(h):
            chain[k, k] = 1.0
            for j, p in self.terms():
                if k - j < 0:
                    frames[lag + k - j, k] -= p
                else:
                    frames[:, k] -= p * frames[:, k - j]
                    chain[:, k] -= p * chain[:, k - j]
        return frames, chain


def difference_terms(diffs) -> list[tuple[int, float]]:
    """prod(1 - B^d for d in diffs) = 1 + sum(p * B^j for j, p in the result), terms with p == 0 left out."""
    poly = np.zeros(sum(diffs) + 1)
    poly[0] = 1.0
    for d in diffs:
        poly[d:] = poly[d:] - poly[: len(poly) - d].copy()
    return [(j, float(p)) for j, p in enumerate(poly) if j and p]


def from_transform(transform, window: int, features: int, horizon: int, target: bool = True) -> Framing:
    """The framing for a fitted gru_edge.data.Transform."""
    return Framing(window=window, features=features, target=target, log=bool(transform.log and target),
                   diffs=tuple(int(d) for d in transform.diffs) if target else (), mean=float(transform.mean), std=float(transform.std),
                   feature_mean=tuple(transform.feature_mean), feature_std=tuple(transform.feature_std),
                   horizon=horizon)


def of_model(model) -> Framing | None:
    """The framing of a Keras model (its Frame layer's), or None for a model that reads what it is fed."""
    for layer in model.layers:
        if type(layer).__name__ == "Frame":
            return Framing.from_dict(layer.get_config()["framing"])
    return None


def raw_windows(fr: Framing, z: np.ndarray) -> np.ndarray:
    """Raw windows [N, T + lag, F] that the Frame layer maps to ``z`` [N, T, F] (the target starting from a level of
    1 on the log, 0 otherwise): sequences in the model's own scale when there is no data to take them from."""
    n = z.shape[0]
    raw = np.zeros((n, fr.input_steps, fr.features))
    cols = slice(1, None) if fr.target else slice(None)
    raw[:, fr.lag:, cols] = z[:, :, cols] * np.asarray(fr.feature_std) + np.asarray(fr.feature_mean)
    if fr.target:
        d = z[:, :, 0] * fr.std + fr.mean
        for t in range(fr.lag, fr.input_steps):
            raw[:, t, 0] = d[:, t - fr.lag] - sum(p * raw[:, t - j, 0] for j, p in fr.terms())
        if fr.log:
            raw[:, :, 0] = np.exp(raw[:, :, 0])
    return raw.astype(np.float32)


def _register():
    import keras
    from keras import ops

    def log_target(f: Framing, x):
        if not f.log:
            return x
        logged = ops.log(ops.maximum(x, TINY))
        if f.features == 1:
            return logged
        m = ops.convert_to_tensor(f.mask())
        return m * logged + (1.0 - m) * x

    class Framed(keras.layers.Layer):
        """A layer configured by a Framing (saved in the .keras file as its dict)."""

        def __init__(self, framing: dict, **kwargs):
            super().__init__(**kwargs)
            self.framing = Framing.from_dict(framing)

        def get_config(self):
            return super().get_config() | {"framing": self.framing.to_dict()}

    @keras.saving.register_keras_serializable(package="gru_edge")
    class Frame(Framed):
        """Raw windows [B, T + lag, F] -> what the GRU core reads [B, T, F] (see the module docstring)."""

        def call(self, x):
            f = self.framing
            lx = log_target(f, x)
            d = lx[:, f.lag:]
            for j, p in f.terms():
                d = d + (p * ops.convert_to_tensor(f.mask())) * lx[:, f.lag - j: f.input_steps - j]
            return (d - ops.convert_to_tensor(f.offset())) * ops.convert_to_tensor(f.inverse_scale())

        def compute_output_shape(self, shape):
            return (shape[0], self.framing.window, shape[2])

    @keras.saving.register_keras_serializable(package="gru_edge")
    class Unframe(Framed):
        """(the core's output [B, H], the raw window) -> forecasts [B, H] in the data's units."""

        def call(self, inputs):
            out, x = inputs
            f = self.framing
            dz = out * f.std + f.mean
            if f.lag:
                last = log_target(f, x)[:, f.window:]  # the last ``lag`` frames
                flat = ops.reshape(last, (-1, f.lag * f.features))
                dz = ops.matmul(flat, ops.convert_to_tensor(f.level_matrix())) + ops.matmul(
                    dz, ops.convert_to_tensor(f.chain_matrix()))
            return ops.exp(dz) if f.log else dz

        def compute_output_shape(self, shapes):
            return shapes[0]

    return Frame, Unframe


_LAYERS = None


def layers():
    """The Keras layers (Frame, Unframe), registered for loading ``.keras`` files on first use."""
    global _LAYERS
    if _LAYERS is None:
        _LAYERS = _register()
    return _LAYERS


def wrap(core, framing: Framing, name: str):
    """A model taking raw windows: Frame -> the core's layers (the same objects, so the same weights) -> Unframe."""
    import keras

    frame, unframe = layers()
    inputs = keras.Input((framing.input_steps, framing.features), name="sequence")
    x = frame(framing.to_dict(), name="frame")(inputs)
    for layer in core.layers:
        if type(layer).__name__ != "InputLayer":
            x = layer(x)
    if framing.target:
        x = unframe(framing.to_dict(), name="unframe")([x, inputs])
    return keras.Model(inputs, x, name=name)
