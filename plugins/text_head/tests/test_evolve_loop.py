"""The closed loop on the micro model: storage -> memory conditioner -> model -> uncertainty ->
router/adaptation -> storage, through `aios evolve --loop`."""

import contextlib
import io

import numpy as np
import pytest
from aios_text.inference import load_array_text_model
from aios_text.uncertainty import calibrate
from micro_model import NEW_SENTENCE, base_text, new_domain, trained_model

from aios.cli import app as cli
from aios.evolve.adapters import AdapterStore
from aios.memory import open_memory

#: The micro model's loop: tiny generations, the micro model's training knobs and rule (see
#: test_evolve), and a threshold the new order of words passes.
SETTINGS = ["head.length=12", "sampler.steps=4", "evolve.adapter=[sidenet, lora]",
            "evolve.steps=100", "evolve.lr=0.03", "evolve.eval_windows=16",
            "evolve.hidden=32", "evolve.blocks=1", "evolve.min_gain=0.05",
            "evolve.max_base_loss=0.15", "evolve.held_out=0.15", "evolve.threshold=0.9"]


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """(paths, printed output) of one `aios evolve --loop` run on a folder of new text."""
    model = trained_model(tmp_path_factory)
    net, tokenizer, _ = load_array_text_model(model)
    stream = np.array(tokenizer.encode(base_text(600, seed=1)))
    calibrate(net, tokenizer, stream, windows=8, progress=False).save(model)
    root = tmp_path_factory.mktemp("loop")
    folder = new_domain(root / "new", documents=40)
    args = [f"--set={s}" for s in [f"head.model={model}", *SETTINGS,
                                    f"evolve.adapters_dir={root / 'adapters'}"]]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main([*args, "evolve", "--loop", str(folder), "--memory", str(root / "mem"),
                         "--requests", "6", "--name", "order"])
    return {"code": code, "root": root, "folder": folder, "out": out.getvalue()}


def row(out, label):
    """The before and after cells of a row of the printed report."""
    line = next(line for line in out.splitlines() if line.startswith(label))
    return line[len(label):].split()


def test_the_loop_stores_the_folder_and_the_generations_in_memory(loop):
    assert loop["code"] == 0
    with open_memory(loop["root"] / "mem", read_only=True) as store:
        table = store.to_table()
    categories = [m["category"] for m in table.column("metadata").to_pylist()]
    contents = table.column("content").to_pylist()
    assert categories.count("generation") == 6  # every request written back
    assert any(NEW_SENTENCE[:20] in c for c in contents)


def test_the_loop_keeps_an_adapter_and_the_router_then_chooses_it(loop):
    store = AdapterStore(loop["root"] / "adapters")
    assert store.names() == ["order"]
    info = store.info("order")
    assert info.kind == "sidenet"  # the cheapest rung was enough
    assert "remembered requests" in info.domain


def test_the_loop_prints_the_ladder_and_routes_the_requests_to_the_new_adapter(loop):
    out = loop["out"]
    assert "ladder: sidenet -> lora" in out
    assert "sidenet (level 1):" in out and "adapter 'order': kept" in out
    assert "lora (level 2):" not in out  # the ladder stopped at the first kept adapter
    assert row(out, "requests") == ["6", "6"]
    assert row(out, "routed to adapter 'order'") == ["0", "6"]
    uncertain = row(out, "uncertain (> 0.9)")
    assert int(uncertain[0]) > 0  # the new text is what the model was unsure of
    before, after = map(float, row(out, "mean uncertainty of the serving model"))
    assert after < before  # ... and the adapted model that now serves it is less unsure


def test_requests_are_openings_of_the_folders_passages(loop):
    from aios.evolve.loop import request_prompts

    prompts = request_prompts(loop["folder"], 6, chars=30)
    assert len(prompts) == 6
    assert all(NEW_SENTENCE.startswith(p) and len(p) <= 30 for p in prompts)
