"""Generate a synthetic dataset once per setting, safely, into a cache folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from shared_utils.paths import anchored

MARKER = "_COMPLETE.json"


def generate_once(cache_dir: str | Path, record: dict, generate: Callable[[Path], object]) -> Path:
    """Run ``generate(folder)`` once into ``cache_dir/<hash of record>/`` and return that folder.

    ``record`` holds everything the output depends on (the generator's arguments and a version
    number to bump when its output changes). The folder counts as complete only when its marker
    (``_COMPLETE.json``, the record) exists: generation goes to a temporary sibling that gets the
    marker last and is then renamed into place, so an interrupted run never leaves a half dataset
    that looks complete; a folder without the marker is regenerated. A relative ``cache_dir`` is anchored at
    the collection root (``shared_utils.paths.anchored``).
    """
    key = hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
    cache_dir = anchored(cache_dir)  # a relative cache_dir: the same folder from the root or a project folder
    final = cache_dir / key
    if (final / MARKER).exists():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
    try:
        generate(staging)
        (staging / MARKER).write_text(json.dumps(record, indent=2, sort_keys=True))
        if final.exists():  # left by an interrupted run (no marker): not ours to trust
            shutil.rmtree(final)
        os.replace(staging, final)
    except OSError:
        if not (final / MARKER).exists():  # a concurrent run finishing first is the only acceptable failure
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final
