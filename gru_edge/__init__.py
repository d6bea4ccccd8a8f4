"""gru-edge: train a Keras GRU, convert it to builtin-ops TFLite/LiteRT, and prove the two give the same outputs."""

__version__ = "0.1.0"
