"""Where the collection's files go, wherever a command runs from.

A command may run from the collection root (``make train``) or from inside a project folder (the console
script, a bench, a notebook). Relative run and cache folders are anchored at the root of the collection
checkout, so both write to, and reuse, the same ``runs/``, ``.cache/`` and ``data/`` folders.
"""

from __future__ import annotations

from pathlib import Path


def collection_root(start: Path | None = None) -> Path | None:
    """The collection checkout that ``start`` (default: the working directory) lies in: the first of it and
    its parents that holds ``shared-utils/pyproject.toml`` and a ``Makefile``; None outside a checkout."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "shared-utils" / "pyproject.toml").is_file() and (folder / "Makefile").is_file():
            return folder
    return None


def anchored(path: str | Path) -> Path:
    """``path`` as given when absolute; a relative one (a config's ``cache_dir: .cache/<project>``) under the
    collection root when the command runs inside a checkout, else under the working directory."""
    path = Path(path)
    if path.is_absolute():
        return path
    root = collection_root()
    return root / path if root is not None else path
