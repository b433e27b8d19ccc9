"""Errors a user can fix, as opposed to bugs.

The CLI prints a ``LeadscoreError`` as one message and exits with status 2,
without a traceback; anything else is a bug and keeps its traceback.
"""


class LeadscoreError(Exception):
    """A problem with the user's input or environment, with the fix in the message."""
