"""The one error type of the lm family: bad input (an unknown rule family or OOD category, a checkpoint
without tokenizer files, a prompt longer than the context) stops with one line saying what is allowed."""

from reasonlens.utils.errors import UserInputError


class LMError(UserInputError):
    """Bad input to the lm family; the message names what was wrong and what is allowed."""
