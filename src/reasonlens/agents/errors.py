"""The one error type of the agents family: bad input stops with a message naming what was wrong and
what is allowed."""


class AgentError(ValueError):
    """An agent directory, input file, activation file or patch spec the agents tools cannot use."""
