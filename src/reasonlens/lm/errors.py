"""The one error type of the lm family: bad input (an unknown rule family or OOD category, a checkpoint
without tokenizer files, a prompt longer than the context) stops with one line saying what is allowed."""


class LMError(ValueError):
    """Bad input to the lm family; the message names what was wrong and what is allowed."""
