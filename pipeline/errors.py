"""One exception type per failure family.

Expected bad input (a broken shard, an unknown model name, a bad param) raises one of these with a
message that says what is wrong and what to do; stage entry points turn them into a one-line error
and a non-zero exit instead of a traceback.
"""


class SlugError(Exception):
    """Base class of every expected failure."""


class ParamsError(SlugError):
    """A value in params.yaml is missing, of the wrong type or out of range."""


class DataError(SlugError):
    """Input data is missing, malformed or empty."""


class ModelError(SlugError):
    """A model cannot be built or loaded (unknown architecture, missing checkpoint, ...)."""


class NumericalError(SlugError):
    """A loss or gradient is not finite."""


def not_weights_only(path) -> ModelError:
    """The one message for a checkpoint that holds pickled objects (never unpickled here)."""
    return ModelError(f"{path} is not a weights-only checkpoint: it holds pickled Python objects, "
                      f"which are never loaded (they can run code); convert it to safetensors "
                      f"where you trust it (safetensors.torch.save_file(state_dict, ...))")
