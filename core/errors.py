"""The one base class for errors a user can fix (bad input, bad config, missing thing).

The CLI prints them as one line and the dashboard shows them as a message; anything else is a bug
and keeps its traceback (in logs, never on a page).
"""

from __future__ import annotations


class SegTuneError(ValueError):
    """Bad input or configuration; the message names the bad value and what to do instead."""
