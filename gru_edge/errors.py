"""Typed errors: library code raises these; the CLI turns them into one-line messages with exit status 1."""


class GruEdgeError(Exception):
    """Base class for every error gru-edge reports to a user."""


class DataError(GruEdgeError):
    """A series, CSV file or window setting cannot be used."""


class ModelError(GruEdgeError):
    """A Keras model or training card is missing or not something gru-edge supports."""


class RecipeError(GruEdgeError):
    """A recipe name or recipe file is unknown or invalid."""


class ConversionError(GruEdgeError):
    """Conversion to TFLite failed or produced a model gru-edge will not ship."""


class ParityError(GruEdgeError):
    """A parity bundle or a .tflite cannot be checked (as opposed to a check that ran and failed)."""


class GpuUnavailable(GruEdgeError):
    """No usable GPU: a GPU check could not run (neither a pass nor a failure; exit status 3)."""

    exit_code = 3


class OutputError(GruEdgeError):
    """An output folder cannot be written: it holds what gru-edge did not write, or the disk refuses the write."""
