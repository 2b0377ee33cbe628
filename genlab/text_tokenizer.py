"""A word-level text tokenizer for genlab's captions (ETT's language side), built with the `tokenizers` library and
wrapped as transformers' `PreTrainedTokenizerFast`, so a pipeline folder saves and loads it as a component.

The captions here are short and templated ("a small red triangle at the top left", "a thick slanted seven"), so
one id per lower-cased word keeps the vocabulary at a few dozen entries. Specials: <pad>, <unk>, <bos>, <eos>, and
<boi> / <eoi> around the image tokens of a multimodal sequence. A word outside the vocabulary is an error before a
model sees it (`check_words`), not a silent <unk>.
"""

from __future__ import annotations

from .errors import GenlabError

SPECIAL_TOKENS = {"pad_token": "<pad>", "unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>"}
IMAGE_TOKENS = ["<boi>", "<eoi>"]


def build_word_tokenizer(texts):
    """A PreTrainedTokenizerFast with one id per lower-cased word of `texts` (specials first, ids 0..5)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise GenlabError("build_word_tokenizer needs a non-empty list of caption strings")
    tok = Tokenizer(models.WordLevel(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = [SPECIAL_TOKENS[k] for k in ("pad_token", "unk_token", "bos_token", "eos_token")] + IMAGE_TOKENS
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1))
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS, additional_special_tokens=IMAGE_TOKENS)


def unknown_words(tokenizer, text: str) -> list[str]:
    """The words of `text` that the tokenizer would map to <unk>."""
    backend = tokenizer.backend_tokenizer
    words = [w for w, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))]
    vocab = tokenizer.get_vocab()
    return [w for w in words if w not in vocab]


def check_words(tokenizer, texts) -> list[str]:
    """`texts` (a string or a list of strings) as a list, or a GenlabError naming the first unknown words."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    for text in texts:
        if not isinstance(text, str):
            raise GenlabError(f"prompts must be strings, got {type(text).__name__}")
        unknown = unknown_words(tokenizer, text)
        if unknown:
            known = sorted(w for w in tokenizer.get_vocab() if not w.startswith("<"))
            raise GenlabError(f"prompt {text!r} has words outside the vocabulary: {', '.join(unknown)} "
                              f"(known words: {' '.join(known)})")
    return texts
