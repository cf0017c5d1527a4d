"""Backbone slots are recorded, not numbered by hand: a model directory records the slot each of
its heads conditions on, and a new head takes its modality's slot or the lowest free one."""

from pathlib import Path

import pytest
import yaml

from aios.errors import AiosError
from aios.models import free_slot, recorded_slots
from aios.training.gaussian_recipe import backbone_slot


def model_dir(path: Path, heads: dict) -> Path:
    path.mkdir(parents=True)
    (path / "model.yaml").write_text(yaml.safe_dump({"backbone": {"dim": 8}, "heads": heads}))
    (path / "backbone.arrow").write_bytes(path.name.encode())
    return path


def test_a_model_directory_records_each_heads_slot_and_old_text_models_use_0(tmp_path):
    directory = model_dir(tmp_path / "m", {"text": {"vocab_size": 9},
                                           "image": {"kind": "gaussian", "modality_id": 1}})
    assert recorded_slots(directory) == {"text": 0, "image": 1}


def test_a_modality_keeps_its_slot_and_a_new_one_takes_the_lowest_free_slot():
    taken = {"text": 0, "image": 1, "audio": 2}
    assert free_slot("image", taken, 4) == 1
    assert free_slot("video", taken, 4) == 3
    assert free_slot("video", {"text": 0, "audio": 2}, 4) == 1


def test_a_backbone_without_a_free_slot_is_an_error_naming_the_holders():
    with pytest.raises(AiosError, match=r"all taken \(a: 0, b: 1\); train a backbone with more"):
        free_slot("c", {"a": 0, "b": 1}, 2)


def test_a_new_backbone_starts_at_slot_0(tmp_path):
    assert backbone_slot("image", None, 4) == 0


def test_the_shipped_packs_slots_come_out_of_the_rule_and_a_fourth_pack_gets_the_next():
    text = pytest.importorskip("aios_text.inference")
    pytest.importorskip("aios_image")
    pytest.importorskip("aios_audio")
    source = text.DEFAULT_MODEL  # the image and audio recipes' backbone_from: text
    assert backbone_slot("image", source, 4) == 1
    assert backbone_slot("audio", source, 4) == 2
    assert backbone_slot("video", source, 4) == 3
    assert backbone_slot("text", source, 4) == 0
