"""Instruction embeddings: the collection's offline sentence encoder (``shared_utils.language``) and
where this project caches them."""

from shared_utils.language import EMBED_DIM, SentenceEncoder

CACHE_DIR = "data/vlm-robot-control"   # the project's data cache (demos, embeddings/), relative to the working dir

__all__ = ["CACHE_DIR", "EMBED_DIM", "SentenceEncoder"]
