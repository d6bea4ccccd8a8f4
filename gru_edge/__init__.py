"""gru-edge: train a Keras GRU, convert it to builtin-ops TFLite/LiteRT, and prove the two give the same outputs.

The Python API (gru_edge.api) mirrors the CLI: train, convert, verify, check_bundle, inspect, list_recipes,
benchmark, add_to_android.
"""

__version__ = "0.1.0"

from gru_edge.api import (add_to_android, benchmark, check_bundle, convert, inspect, list_recipes,  # noqa: E402
                          train, verify)

__all__ = ["add_to_android", "benchmark", "check_bundle", "convert", "inspect", "list_recipes", "train", "verify",
           "__version__"]
