"""The one error type of the engine: every bad spec, site, index or run raises it, with a message that
says what was wrong and what is allowed."""


class InterpError(ValueError):
    pass
