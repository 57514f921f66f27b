"""Errors a user can act on. Each message is one paragraph: where (file/key), what, how to fix.

``python -m sandbox`` prints these without a traceback (``traceback=true`` shows it)."""


class SandboxError(Exception):
    """Base for user-facing errors."""


class ConfigError(SandboxError):
    """The experiment config is wrong (unknown key, bad wiring, wrong type)."""


class RecipeError(ConfigError):
    """A recipe names an unknown OP or gives an OP a wrong parameter."""


class DataError(SandboxError):
    """Input data is missing, malformed, or empty after filtering."""


class DiskFullError(SandboxError):
    """A write failed because its disk is full (or a file outgrew the size limit)."""
