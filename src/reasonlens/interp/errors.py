"""The one error type of the engine: every bad spec, site, index or run raises it, with a message that
says what was wrong and what is allowed."""

from reasonlens.utils.errors import UserInputError


class InterpError(UserInputError):
    pass
