"""Memory training of the adapted model: the answer-only block-diffusion loss against a
block-by-block computation, rows laid out as generation lays them out, held-out facts and
sentence forms kept out of the examples, and a recipe that continues from an adapter."""

import numpy as np
import pytest
import text_fixtures
import torch
import torch.nn.functional as F
import yaml
from adapt_fixtures import MASK, VOCAB, tiny_adapted, tiny_llama
from aios_text.adapt.head import memory_context
from aios_text.adapt.memory import (
    MemoryData,
    RetrievalBlockTask,
    answer_block_loss,
    example_tokens,
    memory_examples,
)
from aios_text.adapt.model import BlockDiffusionLM
from aios_text.adapt.recipe import AdaptRecipe, build_adapted, load_adapt_recipe
from aios_text.adapt.shipping import save_adapter
from aios_text.facts import make_facts
from aios_text.memory_recipe import Example

from aios.errors import AiosError, ConfigError
from aios.memory import Passage

PAD = 0


def _naive_answer_loss(model, rows, masked, block_size):
    """Each unpadded row, each answer block and noisy copy in a forward of its own: the clean
    prefix causal, the noisy block bidirectional; token i from hidden i - 1 (a block's first
    token from the clean forward)."""
    losses = []
    answer = masked.shape[1]
    for row, copy_masks in zip(rows, masked, strict=True):
        ids = torch.tensor(row)
        start = len(row) - answer
        clean = model.hidden(ids[None], None, torch.arange(len(row))[None])[0]
        for a in range(0, answer, block_size):
            s, e = start + a, start + a + block_size
            losses.append(F.cross_entropy(model.logits(clean[s - 1])[None], ids[s][None]))
            for copy_masked in (copy_masks, ~copy_masks):
                noisy = torch.where(copy_masked[a:a + block_size], MASK, ids[s:e])
                x = torch.cat([ids[:s], noisy])[None]
                q = torch.arange(e)
                allowed = (q[None, :] <= q[:, None]) | ((q[:, None] >= s) & (q[None, :] >= s))
                h = model.hidden(x, allowed[None, None], q[None])[0]
                for i in range(s + 1, e):
                    if copy_masked[i - start]:
                        losses.append(F.cross_entropy(model.logits(h[i - 1])[None],
                                                      ids[i][None]))
    return torch.stack(losses).mean(), len(losses)


@pytest.mark.parametrize("block_size", [4, 8])
def test_answer_loss_equals_a_forward_per_row_and_block(block_size):
    model = tiny_adapted()
    g = torch.Generator().manual_seed(2)
    answer = 2 * block_size
    # prefixes of different lengths, so rows are left-padded differently
    rows = [torch.randint(6, VOCAB, (n,), generator=g).tolist() + torch.randint(
        6, VOCAB, (answer,), generator=g).tolist() for n in (3 * block_size, 2 * block_size - 1)]
    width = max(map(len, rows))
    ids = torch.full((2, width), PAD)
    for n, row in enumerate(rows):
        ids[n, width - len(row):] = torch.tensor(row)
    masked = torch.rand(2, answer, generator=g) < 0.5
    want, count = _naive_answer_loss(model, rows, masked, block_size)
    assert count == 2 * answer  # every answer token is a target exactly once
    got = answer_block_loss(model, ids, masked, block_size, MASK, PAD)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def _encode(text):
    return [6 + (ord(c) % (VOCAB - 6)) for c in text]


def test_rows_are_laid_out_as_generation_lays_them_out():
    data = MemoryData(weight=0.5, answer_length=8, block_size=4, batch_size=2)
    examples = [Example("where?", " here.", (("best one", 0.9), ("other", 0.5))),
                Example("a much longer question?", " there.", (("only", 0.7),))]
    task = RetrievalBlockTask(examples, _encode, data=data, mask_token_id=MASK, pad_id=PAD,
                              end_id=2, weight=0.5)
    batch = task.batch(np.random.default_rng(0))
    ids, masked = batch["ids"], batch["masked"]
    assert masked.shape == (2, 8) and ids.shape[1] % 4 == 0  # the answer starts a block
    for row in ids:
        prefix, answer = row[:-8], row[-8:]
        real = prefix[np.argmax(prefix != PAD):].tolist()
        example = next(e for e in examples if real[-len(_encode(e.prompt)):] == _encode(e.prompt))
        # the context is the head's own layout: passages best last, each closed by end
        context = memory_context(_encode, [Passage(t, s) for t, s in example.passages])
        assert real == context + _encode(example.prompt)
        assert answer.tolist() == (_encode(example.answer) + [2] * 8)[:8]
    assert example_tokens(_encode, examples[0], 8, 2)[0][-len(_encode("where?")):] == \
        _encode("where?")


def test_examples_hold_only_training_facts_in_training_forms(tmp_path):
    data = MemoryData(weight=0.5, facts=48, held_out=0.25, train_forms=(0, 1),
                      chunk_sizes=(60,), min_score=-1.0, lexical_weight=0.5)
    examples = memory_examples(data, tmp_path, text_fixtures.TrigramEmbedder(), progress=False)
    facts = make_facts(48, held_out=0.25, seed=0)
    assert examples
    passages = " ".join(t for e in examples for t, _ in e.passages)
    prompts = " ".join(e.prompt for e in examples)
    for fact in facts.held_out:  # never in a passage, a prompt or an answer
        assert fact.subject not in passages and fact.subject not in prompts
    for fact in facts.train:
        for form in (2, 3):  # the held-out sentence forms are never stored
            assert fact.sentences[form] not in passages
    # every example's context holds its fact, so the answer can be read
    by_prompt = {p: f for f in facts.train for p, _ in f.prompts}
    assert all(any(s in passages_of for s in by_prompt[e.prompt].sentences)
               for e in examples for passages_of in [" ".join(t for t, _ in e.passages)])
    again = memory_examples(data, tmp_path, None, progress=False)  # cached: no embedder needed
    assert again == examples


class _Base:
    """What `build_adapted` reads of a base model: its network."""

    def __init__(self) -> None:
        self.network = tiny_llama(0)


def test_recipe_continues_from_an_adapter(tmp_path):
    trained = tiny_adapted(seed=3)
    save_adapter(tmp_path / "adapter.safetensors", trained, {"lora_alpha": 8.0})
    recipe = AdaptRecipe(init=str(tmp_path), lora_rank=4, lora_alpha=8.0)
    model = build_adapted(recipe, _Base())
    own = dict(model.named_parameters())
    for name, value in trained.adaptation_state().items():
        torch.testing.assert_close(own[name], value.to(torch.float16).float())
    wrong = AdaptRecipe(init=str(tmp_path), lora_rank=8)
    with pytest.raises(AiosError, match="LoRA rank 4"):
        build_adapted(wrong, _Base())
    assert isinstance(model, BlockDiffusionLM)


def test_memory_section_is_parsed_and_checked(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"kind": "adapt", "memory": {"weight": 0.5,
                                                                "train_forms": [0, 2]}}))
    recipe = load_adapt_recipe(path)
    assert recipe.memory.train_forms == (0, 2) and recipe.memory.weight == 0.5
    assert recipe.to_dict()["memory"]["train_forms"] == [0, 2]
    path.write_text(yaml.safe_dump({"kind": "adapt", "memory": {"answer_length": 30}}))
    with pytest.raises(ConfigError, match="multiple"):
        load_adapt_recipe(path)
    path.write_text(yaml.safe_dump({"kind": "adapt", "memory": {"wieght": 0.5}}))
    with pytest.raises(ConfigError, match="weight"):
        load_adapt_recipe(path)


def test_shipped_memory_recipe_parses():
    from aios_text.recipe import DEFAULT_RECIPE

    recipe = load_adapt_recipe(DEFAULT_RECIPE.parent / "memory-smollm2.yaml")
    assert recipe.memory.weight > 0 and recipe.init
    assert set(recipe.memory.train_forms).isdisjoint({2, 3})


def test_data_parallel_processes_take_equal_halves_of_the_one_process_batch():
    data = MemoryData(weight=0.5, answer_length=8, block_size=4, batch_size=4)
    examples = [Example(f"question {i}?", f" answer {i}.", ((f"passage {i}", 0.5),))
                for i in range(6)]

    def batch(shard):
        task = RetrievalBlockTask(examples, _encode, data=data, mask_token_id=MASK, pad_id=PAD,
                                  end_id=2, weight=0.5)
        task.shard = shard
        return task.batch(np.random.default_rng(3))

    whole, first, second = batch((0, 1)), batch((0, 2)), batch((1, 2))
    for key in ("ids", "masked"):
        np.testing.assert_array_equal(np.concatenate([first[key], second[key]]), whole[key])
    with pytest.raises(ValueError, match="memory.batch_size 4 does not split evenly over 3"):
        batch((0, 3))
