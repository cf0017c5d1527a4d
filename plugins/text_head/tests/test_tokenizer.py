import pytest
from aios_text.tokenizer import SPECIAL_TOKENS, TextTokenizer, train_tokenizer

TEXTS = [
    "Once upon a time there was a little fox who lived in the woods.",
    "The fox liked to run; the woods were deep and the night was long.",
    "In the beginning God created the heaven and the earth.",
] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=400)


def test_text_round_trips_exactly_even_with_unseen_characters(tokenizer):
    for text in ["the fox ran", "Zebra! ¿Qué? 日本 \t tabs\nnewlines", "  leading spaces"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_special_tokens_have_the_first_distinct_ids(tokenizer):
    ids = [tokenizer.pad_id, tokenizer.mask_id, tokenizer.bos_id, tokenizer.eos_id]
    assert ids == [0, 1, 2, 3]
    assert tokenizer.decode([tokenizer.mask_id, *tokenizer.encode("fox"), tokenizer.eos_id]) \
        == "fox"


def test_training_learns_merges_that_shorten_frequent_text(tokenizer):
    text = TEXTS[0]
    assert len(tokenizer.encode(text)) < len(text.encode()) / 2
    assert tokenizer.vocab_size <= 400


def test_batch_encoding_equals_one_at_a_time(tokenizer):
    assert tokenizer.encode_batch(TEXTS[:3]) == [tokenizer.encode(t) for t in TEXTS[:3]]


def test_save_and_load_give_the_same_ids(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "tokenizer.json")
    again = TextTokenizer.load(tmp_path / "tokenizer.json")
    assert again.encode(TEXTS[1]) == tokenizer.encode(TEXTS[1])
    assert again.mask_id == tokenizer.mask_id


def test_a_corrupt_tokenizer_file_is_refused_with_the_fix(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a readable tokenizer file"):
        TextTokenizer.load(tmp_path / "tokenizer.json")


def test_a_tokenizer_without_the_special_tokens_is_refused():
    from tokenizers import Tokenizer, models

    with pytest.raises(ValueError, match=r"lacks the special tokens \['<pad>'"):
        TextTokenizer(Tokenizer(models.BPE()))
    assert SPECIAL_TOKENS[1] == "<mask>"
