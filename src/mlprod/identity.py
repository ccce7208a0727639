"""Who is acting: the name recorded as author of commits and alias moves."""

from __future__ import annotations

import getpass


def current_user() -> str:
    """The login name of the current user, or ``"unknown"`` where the OS cannot tell."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
