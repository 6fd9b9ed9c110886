"""The one base class of every input error in reasonlens.

Each family keeps its own error type (``ConfigError``, ``DatasetError``, ``CheckpointError``, ``TrainError``,
``InterpError``, ``AgentError``, ``LMError``) so that a caller can catch one family's mistakes, and every one
of them derives from :class:`UserInputError`, so that the command line turns any of them into one line on
stderr and exit code 2 in one place (:mod:`reasonlens.cli.errors`)."""


class UserInputError(ValueError):
    """Bad input: the message says what was wrong and what is allowed."""
