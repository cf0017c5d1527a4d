"""The invented fact set: deterministic, split cleanly, every rendering states its fact."""

import pytest
from aios_text.facts import RELATIONS, make_facts


def test_the_same_seed_makes_the_same_facts_and_another_seed_other_ones():
    assert make_facts(40, seed=3) == make_facts(40, seed=3)
    assert make_facts(40, seed=3) != make_facts(40, seed=4)


def test_the_facts_do_not_depend_on_the_process_hash_seed():
    import os
    import subprocess
    import sys

    code = ("from aios_text.facts import make_facts; f = make_facts(60, seed=5); "
            "print([x.statement for x in f.train + f.held_out])")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2", "3", "4")}
    assert len(outputs) == 1


def test_the_split_is_disjoint_complete_and_of_the_asked_size():
    facts = make_facts(100, held_out=0.2, seed=0)
    assert len(facts.train) == 80 and len(facts.held_out) == 20
    subjects = [f.subject for f in facts.train + facts.held_out]
    assert len(set(subjects)) == 100  # every subject names exactly one fact


def test_every_relation_appears_in_several_templates():
    facts = make_facts(len(RELATIONS) * 2, seed=0)
    assert {f.relation for f in facts.train + facts.held_out} == {r.name for r in RELATIONS}
    for fact in facts.train + facts.held_out:
        assert len(set(fact.sentences)) >= 3


def test_each_sentence_states_subject_and_answer_and_the_cloze_leaves_the_answer_out():
    for fact in make_facts(60, seed=2).held_out:
        for sentence in fact.sentences:
            assert fact.subject.lower() in sentence.lower()
            assert fact.answer.lower() in sentence.lower()
            assert sentence[0].isupper() and sentence.endswith(".")
        assert all(fact.subject in q and q.endswith("?") for q in fact.questions)
        assert fact.answer not in fact.cloze
        assert f"{fact.cloze} {fact.answer}." in fact.sentences


def test_objects_are_shared_between_facts_as_real_facts_share_them():
    facts = make_facts(96, seed=0, objects_per_kind=4)
    answers = [f.answer for f in facts.train + facts.held_out]
    assert len(set(answers)) <= 4 * len({r.object for r in RELATIONS})


@pytest.mark.parametrize(("n", "held_out"), [(1, 0.5), (10, 0.0), (10, 1.0)])
def test_sizes_that_cannot_split_are_refused(n, held_out):
    with pytest.raises(ValueError):
        make_facts(n, held_out=held_out)


def test_documents_hold_only_the_asked_sentence_forms_in_turn(tmp_path):
    from aios_text.facts import write_fact_documents

    facts = make_facts(12, seed=0).train
    stored = write_fact_documents(facts, tmp_path / "two", forms=(2, 3))
    assert stored == [f.sentences[(2, 3)[i % 2]] for i, f in enumerate(facts)]
    text = " ".join(p.read_text() for p in (tmp_path / "two").iterdir())
    assert all(s in text for s in stored)
    assert not any(f.sentences[0] in text or f.sentences[1] in text for f in facts)
    every = write_fact_documents(facts, tmp_path / "all")  # default: every form in turn
    assert every == [f.sentences[i % 4] for i, f in enumerate(facts)]
    with pytest.raises(ValueError, match="template indexes"):
        write_fact_documents(facts, tmp_path / "bad", forms=(4,))
