"""The collection's one error for data on disk that does not follow its expected layout.

Loaders raise ``DatasetFormatError`` with a message that names the file (and the field or line where
there is one), what was expected and what was found; ``folder_listing`` says what a folder holds. The
CLI prints such an error as one line, without a traceback (``shared_utils.cli.run_cli``): the message
is the whole story, and a 60-line traceback through Lightning hides it.
"""

from __future__ import annotations

from pathlib import Path

MAX_LISTED = 20


class DatasetFormatError(ValueError):
    """A dataset file or folder that is missing or malformed. The message names the path, the field
    where there is one, what was expected and what was found."""


def folder_listing(folder: str | Path, limit: int = MAX_LISTED) -> str:
    """What an error message reports as found at ``folder``: its sorted entries (folders end with '/'),
    cut after ``limit``, or that it does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"found nothing: {folder} does not exist" + (" (it is a file)" if folder.is_file() else "")
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return f"found nothing: {folder} is empty"
    more = f" ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"found in {folder}: {', '.join(names[:limit])}{more}"
