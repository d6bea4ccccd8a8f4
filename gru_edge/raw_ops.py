"""The framing's ops inside a lowered graph (gru_edge.framing): the log, the differences, the scaling and their
inverse, so that a .tflite reads raw values and returns the data's units. The ops on raw levels sit in the RAW name
scope: int8 keeps them in float (gru_edge.convert_worker), the GRU core sees differences and scaled values only.
"""

from __future__ import annotations

from gru_edge.framing import TINY, Framing
from gru_edge.names import COUNT, RAW, RING



def log_target(tf, fr: Framing, x):
    with tf.name_scope(RAW):
        if not fr.log:
            return x
        logged = tf.math.log(tf.maximum(x, TINY))
        if fr.features == 1:
            return logged
        m = tf.constant(fr.mask())
        return m * logged + (1.0 - m) * x


def frame(tf, fr: Framing, lx):
    """The log-applied raw window [B, T + lag, F] -> the core's input [B, T, F] (gru_edge.framing.Frame). The slices
    are 3-D STRIDED_SLICEs (GPU delegates take them; the int8 quantizer leaves them in float when told)."""
    d = lx
    if fr.lag:
        with tf.name_scope(RAW):
            d = difference(tf, fr, lx[:, fr.lag:], lambda j: lx[:, fr.lag - j: fr.input_steps - j])
    return scale(tf, fr, d)


# MAXIMUM with this stops TensorFlow's converter from folding a centring into the next op (never reached by data).
LOWEST = -1e30


def scale(tf, fr: Framing, d):
    """(d - offset) / scale; a column far from zero (Framing.centre) is centred first in float, behind a MAXIMUM
    that the converter cannot fold into the input projection."""
    offset, hi = fr.offset(), fr.centre()
    if hi is not None:
        with tf.name_scope(RAW):
            d = tf.maximum(d - tf.constant(hi), LOWEST)
        offset = offset - hi
    return (d - tf.constant(offset)) * tf.constant(fr.inverse_scale())


def difference(tf, fr: Framing, now, earlier):
    """now + sum(p * m * earlier(j)) over the differences' terms (m: the target column; p = -1 is a SUB)."""
    d = now
    for j, p in fr.terms():
        e = earlier(j)
        if fr.features > 1:
            e = tf.constant(fr.mask()) * e
        d = d - e if p == -1 else d + p * e
    return d


def unframe(tf, fr: Framing, out, last):
    """The core's output [B, H] -> data units; ``last``: the target's last ``lag`` frames, flattened [B, lag*F]."""
    hi = fr.centre()
    hi = 0.0 if hi is None else float(hi[0])
    dz = out * fr.std + (fr.mean - hi)  # folded into the head: small numbers when the mean is centred below
    if not fr.lag and not fr.log and not hi:
        return dz
    with tf.name_scope(RAW):
        if hi:
            dz = tf.maximum(dz, LOWEST) + hi
        if fr.lag:
            dz = tf.matmul(last, tf.constant(fr.level_matrix())) + tf.matmul(dz, tf.constant(fr.chain_matrix()))
        return tf.exp(dz) if fr.log else dz


def frame_step(tf, fr: Framing, frame, extra, b: int):
    """One raw frame [B, F] -> (the core's input [B, 1, F], the gate [B, 1] (None without a lag), the last ``lag``
    frames flattened, the ring states' next values). The ring [B, lag + 1, F] holds the last lag + 1 frames (log
    applied), the count how many frames came, up to lag: the gate opens once ``lag`` frames are in the ring."""
    f = fr.features
    lf = log_target(tf, fr, frame)
    if not fr.lag:
        return tf.reshape(scale(tf, fr, lf), [b, 1, f]), None, None, {}
    ring, count = extra
    with tf.name_scope(RAW):
        lf = tf.reshape(lf, [b, 1, f])
        tail = ring[:, 1:]  # frames count - lag .. count - 1
        ring_out = tf.concat([tail, lf], axis=1)
        # Until ``lag`` frames are in, the ring holds zeros and the difference is a raw level (~70 sigma on the
        # log): the gate zeroes it, so the core never sees it (the state is held then anyway).
        gate = tf.minimum(tf.nn.relu(count - (fr.lag - 1)), 1.0)
        d = tf.reshape(gate, [b, 1, 1]) * difference(tf, fr, lf, lambda j: ring_out[:, fr.lag - j: fr.lag - j + 1])
        last = tf.reshape(ring_out[:, 1:], [b, fr.lag * f])
    z = scale(tf, fr, d)
    new = {RING: ring_out, COUNT: tf.minimum(count + 1.0, float(fr.lag))}
    return z, gate, last, new
