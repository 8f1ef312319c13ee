"""Errors a user can act on. Each message names the problem and the fix."""


class SagVideoError(Exception):
    """Base class: anything raised on purpose by sagvideo for bad input or setup."""


class InputError(SagVideoError, ValueError):
    """A file, argument or value given by the user cannot be used as it is."""


class ConfigError(InputError):
    """A configuration key or value is invalid; the message names the key."""


class ModelUnavailableError(SagVideoError, RuntimeError):
    """A model is neither a local folder nor in the Hugging Face cache, and cannot be downloaded."""


class NonFiniteError(SagVideoError, ValueError):
    """NaN or inf appeared in a loss, a noise prediction or a gradient."""
