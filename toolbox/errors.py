"""Exceptions raised by the toolbox, each carrying a message meant for users."""


class ToolboxError(Exception):
    """Base class for errors whose message tells the user what to fix."""


class PluginConflictError(ToolboxError):
    """Two plugins registered the same name in one hook point."""


class PluginLoadError(ToolboxError):
    """A plugin failed to import or to answer a hook (strict mode only)."""


class UnknownComponentError(ToolboxError, KeyError):
    """A config names a component that no plugin registered."""

    def __str__(self):  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class ConfigArgumentError(ToolboxError, TypeError):
    """A config passes an argument the component's constructor does not take."""


class UnsafeCheckpointError(ToolboxError):
    """A checkpoint holds pickled objects outside the toolbox's allow-list."""


class DataError(ToolboxError, ValueError):
    """A dataset file or annotation is missing or malformed."""


class ConfigError(ToolboxError, ValueError):
    """A config file that does not parse, or a malformed ``--cfg-options`` entry."""


class CheckpointError(ToolboxError, RuntimeError):
    """A checkpoint that is unreadable, incomplete or does not fit the model."""


class NonFiniteLossError(ToolboxError, FloatingPointError):
    """Training stopped after too many consecutive non-finite (NaN/Inf) steps."""


class ConfigValueError(ToolboxError, ValueError):
    """A config value a component's constructor rejected."""
