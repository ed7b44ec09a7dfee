"""Errors a user can cause.

Every error a user can cause with their input (a path, a trace row, a scenario field, a configuration
that cannot run) is raised as :class:`UserError`. The command line turns it into one line on stderr
and exit status 2; anything else escaping is a bug (exit status 1).
"""

from __future__ import annotations


class UserError(Exception):
    """An error in the user's input. ``str(err)`` is the whole message shown to the user.

    Messages name the file and line, or the dotted scenario field, that is wrong.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)
