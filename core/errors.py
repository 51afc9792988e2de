"""The one exception type a user can cause, with a message a person can act on."""


class DeepLanguageError(Exception):
    """A problem with the user's input (file, path, dataset, option), never a bug.

    The UI shows ``str(error)`` as it is and the CLI prints it without a traceback,
    so the message names the thing that is wrong and says what to do about it.
    """


class UsageError(DeepLanguageError):
    """A bad option or setting (out of range, wrong type, unsafe name): the CLI exits 2 on it, as argparse does."""
