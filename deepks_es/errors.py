"""Errors that reach the user as one line (the CLI prints them without a traceback)."""


class DeePKSInputError(ValueError):
    """Bad user input: a structure file, a model file, an option. The message names the input and the fix."""
