"""What a newcomer meets: every mistake is one `aios: error:` line with exit code 2, a failure
at run time one line with exit code 1, a traceback only with --debug (issue 25).

These run `aios.cli.main` in-process against the installed packs (the shipped models are
small), or in a subprocess where the process itself matters (a closed pipe).
"""

import io
import subprocess
import sys

import numpy as np
import pytest
import torch

from aios.cli import app as cli
from conftest import make_plugin, registering

HELP = "(see `aios generate --help`)"


def run(capsys, *argv):
    """`aios ARGV` in-process: (exit code, stdout, stderr)."""
    code = cli.main(list(map(str, argv)))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(("argv", "message"), [
    (["--steps", "0"], f"generate: argument --steps: must be at least 1, got 0 {HELP}"),
    (["--steps", "-3"], f"generate: argument --steps: must be at least 1, got -3 {HELP}"),
    (["--length", "0"], f"generate: argument --length: must be at least 1, got 0 {HELP}"),
    (["--steps", "many"], f"generate: argument --steps: expected a whole number, got 'many' "
                          f"{HELP}"),
    (["--stpes", "8"], f"generate: unrecognized option --stpes; did you mean --steps? {HELP}"),
])
def test_a_bad_generate_flag_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["generate", "The LORD", *argv])
    assert caught.value.code == 2
    assert capsys.readouterr().err == f"aios: error: {message}\n"


def test_a_misspelt_command_is_answered_with_the_closest_one(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["genrate", "x"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("aios: error: argument COMMAND: invalid choice: 'genrate'")
    assert err.endswith("; did you mean generate? (see `aios --help`)\n")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["--set", "sampler.steps=0"],
     "--set: sampler.steps: must be at least 1, got 0; set a positive number of steps, "
     "e.g. --set sampler.steps=20"),
    (["--length", "5000"],
     "prompt + length + suffix is 5002 tokens, more than the model's 256; ask for at most 254 "
     "new tokens (--length 254)"),
    (["--sampler", "nosuch"],
     "--sampler nosuch: no sampler of that name is installed; installed samplers: "
     "block-threshold, ddim, ddpm, dpm-solver++, dpm-solver++-3m, dpm-solver++-sde, euler, "
     "euler-ancestral, heun, low-confidence, mdlm, mdlm-cache, remdm, semi-ar, threshold, unipc"),
    (["--sampler", "ddim"],
     "--sampler ddim: sampler 'ddim' is continuous but the head is discrete; choose a discrete "
     "sampler: block-threshold, low-confidence, mdlm, mdlm-cache, remdm, semi-ar, threshold"),
    (["--modality", "video"],
     "--modality video: no installed pack generates 'video'; installed modalities: audio, "
     "image, text"),
    (["--grid"], "--grid does not apply to text generation: the text head draws no grids; "
                 "drop --grid"),
    (["--option", "length"], "--option 'length': expected NAME=VALUE, e.g. --option length=32"),
    (["--option", "colour=red"], "--option colour does not apply to text generation: the text "
                                 "head has no 'colour' option (it takes: length, suffix, "
                                 "adapters, adapters_dir, explain)"),
])
def test_a_request_the_model_cannot_serve_is_one_line_and_exit_2(argv, message, capsys):
    code, out, err = run(capsys, "generate", "The LORD", "--steps", 2, *argv)
    assert (code, out, err) == (2, "", f"aios: error: {message}\n")


@pytest.mark.parametrize(("flag", "option"), [(["--infill", "x"], "'suffix'"),
                                              (["--length", "8"], "'length'"),
                                              (["--explain"], "'explain'")])
def test_text_options_on_an_image_are_refused_with_the_reason(flag, option, capsys):
    code, _, err = run(capsys, "generate", "sneaker", "--modality", "image", *flag)
    assert code == 2
    assert err == (f"aios: error: {flag[0]} does not apply to image generation: the image head "
                   f"has no {option} option (it takes no per-request options)\n")


def test_global_options_work_after_the_command_as_in_the_readme(capsys):
    code, out, err = run(capsys, "generate", "The LORD", "--sampler", "semi-ar", "--set",
                         "sampler.block_length=16", "--stream", "--length", 16, "--steps", 4,
                         "--seed", 3)
    assert code == 0, err
    before = run(capsys, "--set", "sampler.block_length=16", "generate", "The LORD",
                 "--sampler", "semi-ar", "--length", 16, "--steps", 4, "--seed", 3)
    assert before[0] == 0 and out == before[1]  # the same generation either way
    assert out.startswith("The LORD")
    assert "[4/4] The LORD" in err  # the stream: one line per step when not on a terminal


def test_a_config_file_after_the_command_is_read(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("sampler: {steps: 7}\n")
    code, out, _ = run(capsys, "config", "show", "--config", path)
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines() if line.startswith("sampler.steps")] \
        == [["sampler.steps", "7"]]


def test_option_passes_any_declared_head_option_through(capsys):
    by_flag = run(capsys, "generate", "The LORD", "--length", 6, "--steps", 3, "--seed", 1)
    by_option = run(capsys, "generate", "The LORD", "--option", "length=6", "--steps", 3,
                    "--seed", 1)
    assert by_flag[0] == by_option[0] == 0
    assert by_flag[1] == by_option[1]
    assert by_flag[1] != run(capsys, "generate", "The LORD", "--length", 12, "--steps", 3,
                             "--seed", 1)[1]


def test_out_writes_the_text_to_the_file(tmp_path, capsys):
    code, out, _ = run(capsys, "generate", "The LORD", "--length", 8, "--steps", 3, "--seed", 2,
                       "--out", tmp_path / "t.txt")
    assert (code, out) == (0, f"{tmp_path / 't.txt'}\n")
    printed = run(capsys, "generate", "The LORD", "--length", 8, "--steps", 3, "--seed", 2)[1]
    assert (tmp_path / "t.txt").read_text() == printed


def test_a_dash_reads_a_batch_of_prompts_from_stdin(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("The LORD\n\nA fool\n"))
    code, out, _ = run(capsys, "generate", "-", "--length", 8, "--steps", 3, "--seed", 2)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("The LORD") and lines[1].startswith("A fool")


def test_a_dash_with_nothing_on_stdin_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    code, _, err = run(capsys, "generate", "-")
    assert code == 2
    assert err.startswith("aios: error: `aios generate -` reads prompts from stdin, one per line")


def test_streaming_an_image_shows_progress_not_arrays(tmp_path, capsys):
    code, out, err = run(capsys, "generate", "sneaker", "--modality", "image", "--stream",
                         "--steps", 3, "--seed", 0, "--out", tmp_path / "s.png")
    assert (code, out) == (0, f"{tmp_path / 's.png'}\n")
    assert "3/3" in err and "denoising image" in err
    assert "array" not in err and "[[" not in err


def test_quantize_given_a_pickled_module_exits_2_saying_to_save_a_state_dict(tmp_path, capsys):
    torch.save(torch.nn.Linear(4, 4), tmp_path / "module.pt")
    code, _, err = run(capsys, "quantize", tmp_path / "module.pt", "-o", tmp_path / "q.arrow")
    assert code == 2
    assert err == (f"aios: error: {tmp_path / 'module.pt'} holds pickled Python objects (e.g. a "
                   "whole module), not a state_dict; save the weights with "
                   "torch.save(model.state_dict(), path)\n")
    assert not (tmp_path / "q.arrow").exists()


def test_a_closed_stdout_pipe_ends_without_a_traceback():
    process = subprocess.Popen([sys.executable, "-m", "aios.cli", "config", "show", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `| head` does once it has its lines
    err = process.stderr.read().decode()
    assert process.wait() == 1
    assert err == ""


class BrokenHead:
    """A head with a bug: the user should see one line, and the traceback with --debug."""

    modality, family = "toy", "continuous"

    def initial_state(self, request, rng):
        return np.zeros(2) / {}["missing"]

    def denoise(self, state, t, request):
        return state

    def decode(self, state, request):
        return state


@pytest.fixture
def broken_registry(monkeypatch):
    from conftest import toy_registry

    registry = toy_registry()
    hooks = registering("aios_register_heads", ("broken", BrokenHead, {"family": "continuous"}))
    registry.add_plugin(make_plugin(**hooks), name="broken", distribution="d", version="1")
    assert not registry.failures, registry.failures
    monkeypatch.setattr(cli, "default_registry", lambda: registry)
    return registry


def test_a_failure_inside_a_plugin_is_one_attributed_line_exit_1_traceback_only_with_debug(
        broken_registry, capsys):
    code, _, err = run(capsys, "generate", "p", "--set", "head.name=broken")
    assert code == 1, err
    # Raised inside a plugin: the line names the plugin and its package (issue 19).
    assert err == "aios: error: head 'broken' from package d 1 raised KeyError: 'missing'\n"
    code, _, err = run(capsys, "generate", "p", "--set", "head.name=broken", "--debug")
    assert code == 1
    assert err.startswith("Traceback (most recent call last):")
    assert "initial_state" in err
    assert err.endswith("aios: error: head 'broken' from package d 1 raised KeyError: "
                        "'missing'\n")


@pytest.fixture
def no_fortunes(tmp_path, monkeypatch):
    """A machine without Debian's `fortunes` (as before set-up installed it)."""
    from aios_text import corpus

    monkeypatch.setattr(corpus, "FORTUNES_DIR", tmp_path / "no-fortunes")
    return tmp_path / "no-fortunes"


def test_doctor_names_a_missing_corpus_and_the_commands_it_enables(no_fortunes, capsys):
    code, out, _ = run(capsys, "doctor")
    assert code == 1
    assert ("  resource fortunes: MISSING (install: apt-get install fortunes); needed by aios "
            "train text, aios eval text, aios evolve") in out
    assert ("  - fortunes is missing, so aios train text, aios eval text, aios evolve cannot "
            "run; install it: apt-get install fortunes (or run `scripts/dev setup` as root)") in out
    assert "resource espeak-ng: installed; needed by aios train audio, aios eval audio" in out


def test_training_text_without_the_corpus_is_one_line_exit_1(no_fortunes, tmp_path, capsys):
    code, _, err = run(capsys, "train", "text", "--out", tmp_path / "run")
    assert code == 1
    assert err == (f"aios: error: {no_fortunes} does not exist: install the Debian package "
                   "`fortunes` (apt-get install fortunes)\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["memory", "add", "--path", "{tmp}/m", "{tmp}/nonexistent"],
     "{tmp}/nonexistent does not exist; give text files or directories, or record files "
     "(.jsonl, .parquet, .arrow, .npy)"),
    (["memory", "search", "--path", "{tmp}/none", "--text", "hello"],
     "no memory store at {tmp}/none; fill one first: aios memory add --path {tmp}/none "
     "FILE_OR_DIR..."),
    (["quantize", "{tmp}/none.pt", "-o", "{tmp}/q.arrow"],
     "{tmp}/none.pt: no such file; give the model file to quantize (.arrow, .safetensors, "
     ".parquet or a torch state_dict .pt), a GGUF file or a Hugging Face checkpoint "
     "directory"),
    (["--set", "evolve.adapters_dir={tmp}/adapters", "adapters", "delete", "nosuch"],
     "no adapter 'nosuch' in {tmp}/adapters (adapters there: none); `aios adapters list` "
     "shows them"),
    (["evolve", "{tmp}/none-dir"],
     "{tmp}/none-dir does not exist; give .txt files, folders of them, or a corpus name (e.g. "
     "fortunes)"),
    (["generate", "seven", "--modality", "audio", "--remember"],
     "--remember does not apply to audio generation: the memory stores text generations only"),
])
def test_a_missing_input_or_an_option_that_does_not_apply_is_one_line_and_exit_2(
        argv, message, tmp_path, capsys):
    code, out, err = run(capsys, *(a.format(tmp=tmp_path) for a in argv))
    assert (code, out, err) == (2, "", f"aios: error: {message.format(tmp=tmp_path)}\n")


def test_a_negative_seed_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["generate", "x", "--seed", "-1"])
    assert caught.value.code == 2
    assert capsys.readouterr().err == (
        f"aios: error: generate: argument --seed: must be 0 or more, got -1 {HELP}\n")
