"""Every error emolens raises on purpose, in one tree; the CLI turns them into one-line messages
and ``emolens.services.grpc_errors`` into gRPC status codes, each in one place.

Where a caller would reasonably catch a builtin, the error is that builtin too, so
``except ValueError`` still catches a bad input and ``except ConnectionError`` an outage:

>>> issubclass(InputError, ValueError), issubclass(Unavailable, ConnectionError)
(True, True)

| error | also a | gRPC status | meaning |
| --- | --- | --- | --- |
| ``InputError`` | ``ValueError`` | INVALID_ARGUMENT | the caller's input cannot be analysed |
| ``ImageTooLargeError`` | ``ValueError`` | INVALID_ARGUMENT | an image over the pixel limit |
| ``QueryTooLarge`` | ``ValueError`` | INVALID_ARGUMENT | a statistics query spans more rows than the limit |
| ``NotFound`` | ``LookupError`` | NOT_FOUND | a named thing (camera, ...) does not exist |
| ``Unauthenticated`` | | UNAUTHENTICATED | no credentials, or credentials nobody issued |
| ``PermissionDenied`` | ``PermissionError`` | PERMISSION_DENIED | the caller may not see what it named |
| ``ResourceExhausted`` | | RESOURCE_EXHAUSTED | too large or too many for this server now |
| ``Unavailable`` | ``ConnectionError`` | UNAVAILABLE | a dependency (Triton, PostgreSQL, Redis, Kafka) is down |
| ``DeadlineExceeded`` | ``TimeoutError`` | DEADLINE_EXCEEDED | a dependency did not answer in time |
| ``ConfigError`` | ``ValueError`` | INTERNAL | a setting or URL is invalid (the operator's to fix) |
| ``MissingExtra`` | ``ValueError`` | INTERNAL | a URL needs an optional package that is not installed |
| ``ModelError`` | ``RuntimeError`` | INTERNAL | a model is missing or breaks the model contract |
"""


class EmolensError(Exception):
    """Base class: a problem reported in one line without a traceback.

    ``public``, where given, is what a remote caller may read instead of the message (which
    may name hosts or files for the operator's log); see ``emolens.services.grpc_errors``.
    """

    def __init__(self, message: str = "", *, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public


class InputError(EmolensError, ValueError):
    """An input could not be read or is not something emolens can analyse."""


class ImageTooLargeError(InputError):
    """An image has more pixels than the configured limit."""


class QueryTooLarge(InputError):
    """A statistics query spans more groups x periods than the server answers at once; the
    message says how many and what to narrow. ``span`` is the how-many part alone ("4 zone(s) x
    744 hour(s) = 2,976 rows, more than 1,000"), for a caller whose remedies differ (the report
    has no ``--every``)."""

    def __init__(self, message: str = "", *, span: str = "", public: str | None = None) -> None:
        super().__init__(message, public=public)
        self.span = span


class ConfigError(EmolensError, ValueError):
    """A setting or URL is invalid."""


class MissingExtra(ConfigError):
    """A URL (``postgresql+psycopg://``, ``kafka://``, ...) needs an optional package that is not
    installed; the message names the extra that brings it.

    >>> print(MissingExtra("kafka://", "kafka", "kafka"))
    kafka:// needs 'kafka', which is not installed here: pip install 'emolens[kafka]'
    """

    def __init__(self, scheme: str, extra: str, module: str | None = None) -> None:
        super().__init__(
            f"{scheme} needs {module or extra!r}, which is not installed here: pip install 'emolens[{extra}]'"
        )
        self.extra = extra


class NotFound(EmolensError, LookupError):
    """A thing the caller named (a camera, a model) does not exist."""


class Unauthenticated(EmolensError):
    """A call came without credentials, or with credentials this server does not know."""


class PermissionDenied(EmolensError, PermissionError):
    """The caller is known but may not see what it named (another site's camera, zone, ...).
    Said the same way whether the thing exists or not, so callers cannot probe for names."""


class ResourceExhausted(EmolensError):
    """A request is too large, or there are too many at once, for this server now."""


class Unavailable(EmolensError, ConnectionError):
    """A dependency (Triton, PostgreSQL, Redis, Kafka) cannot be reached, after retries."""


class DeadlineExceeded(EmolensError, TimeoutError):
    """A dependency did not answer within its deadline, after retries."""


class ModelError(EmolensError, RuntimeError):
    """A model is missing, malformed or does not honour the model contract."""
