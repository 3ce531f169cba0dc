"""Typed errors raised at the library's boundaries; the CLI and gRPC map them to messages."""


class EmolensError(Exception):
    """Base class: a problem the user can fix, reported in one line without a traceback."""


class InputError(EmolensError):
    """An input could not be read or is not something emolens can analyse."""


class ImageTooLargeError(InputError):
    """An image has more pixels than the configured limit."""


class ModelError(EmolensError):
    """A model is missing, malformed or does not honour the model contract."""


class ConfigError(EmolensError):
    """A setting or URL is invalid."""
