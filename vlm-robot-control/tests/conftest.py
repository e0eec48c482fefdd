"""Test-session setup shared by every test file."""

import contextlib

# Loading triton (pulled in by lightning / sentence-transformers) after a MuJoCo EGL renderer exists
# crashes the process; the CLI always imports lightning first, so tests do the same.
with contextlib.suppress(ImportError):
    import triton  # noqa: F401
