"""The word-level caption tokenizer (transformers' PreTrainedTokenizerFast over a `tokenizers` WordLevel model) and
the digits captions ETT trains on."""

import pytest
import torch

from genlab.data import load_dataset
from genlab.data.digits import stroke_measures
from genlab.errors import GenlabError
from genlab.text_tokenizer import build_word_tokenizer, check_words


@pytest.fixture(scope="module")
def captions():
    return load_dataset("shapes", "train", num_samples=200).captions + load_dataset("digits", "train",
                                                                                    captions=True).captions


def test_one_id_per_word_round_trip_and_save_load(captions, tmp_path):
    from transformers import AutoTokenizer

    tok = build_word_tokenizer(captions)
    words = {w for c in captions for w in c.lower().split()}
    assert len(tok) == len(words) + 6  # <pad> <unk> <bos> <eos> <boi> <eoi>
    assert [tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id] == [0, 1, 2, 3]
    ids = tok("A thick slanted Seven")["input_ids"]
    assert len(ids) == 4 and tok.unk_token_id not in ids and tok.decode(ids) == "a thick slanted seven"
    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert back(captions[:3])["input_ids"] == tok(captions[:3])["input_ids"]
    assert back.convert_tokens_to_ids(["<boi>", "<eoi>"]) == [4, 5]


def test_unknown_words_are_a_one_line_error(captions):
    tok = build_word_tokenizer(captions)
    assert check_words(tok, "a small red circle at the top left") == ["a small red circle at the top left"]
    with pytest.raises(GenlabError, match="outside the vocabulary: purple, hexagon"):
        check_words(tok, ["a small red circle", "a purple hexagon"])
    with pytest.raises(GenlabError, match="non-empty list"):
        build_word_tokenizer([])


def test_digits_captions_follow_the_measured_strokes():
    ds = load_dataset("digits", "train", captions=True)
    assert len(ds.captions) == len(ds) and ds[0]["caption"] == ds.captions[0]
    thick = torch.tensor([a["thickness"] == "thick" for a in ds.attributes])
    ink = torch.tensor([a["ink"] for a in ds.attributes])
    assert ink[thick].min() > ink[~thick].max()  # a median split of the measured ink
    assert 0.4 < thick.float().mean() < 0.6
    # the measure: a right-leaning bar has a positive lean, its mirror image a negative one
    bar = torch.zeros(1, 8, 8)
    for y in range(8):
        bar[0, y, 7 - y] = 16.0  # top right to bottom left
    assert stroke_measures(bar)[1].item() > 0 and stroke_measures(bar.flip(-1))[1].item() < 0
    assert all(c.split()[-1] == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                 "nine"][int(label)] for c, label in zip(ds.captions, ds.labels))
    assert load_dataset("digits", "train").captions is None  # captions only when asked for
    with pytest.raises(GenlabError, match="captions must be true or false"):
        load_dataset("digits", "train", captions="yes")
