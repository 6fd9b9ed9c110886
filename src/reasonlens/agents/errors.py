"""The one error type of the agents family: bad input stops with a message naming what was wrong and
what is allowed."""

from reasonlens.utils.errors import UserInputError


class AgentError(UserInputError):
    """An agent directory, input file, activation file or patch spec the agents tools cannot use."""
