"""`aios serve` on the command line: its options are checked before anything loads."""

from __future__ import annotations

import pytest

from aios.cli import main


def test_serve_is_listed_with_its_options(capsys):
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0
    usage = capsys.readouterr().out
    for option in ("--host", "--port", "--api-key", "--workers", "--memory", "--max-queue",
                   "--timeout"):
        assert option in usage


@pytest.mark.parametrize("arguments, named", [
    (["--workers", "0"], "--workers"),
    (["--max-batch", "0"], "--max-batch"),
    (["--timeout", "0"], "--timeout"),
])
def test_a_bad_option_is_a_usage_error_naming_it(arguments, named, capsys):
    assert main(["serve", *arguments]) == 2
    error = capsys.readouterr().err
    assert named in error and error.count("\n") == 1


def test_workers_need_an_existing_store_to_share(tmp_path, capsys):
    assert main(["serve", "--workers", "2", "--memory", str(tmp_path / "none")]) == 2
    assert "aios memory add" in capsys.readouterr().err


def test_a_config_given_after_serve_is_read(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("sampler:\n  name: no-such-sampler\n")
    assert main(["serve", "--config", str(broken)]) == 2
    assert "broken.yaml" in capsys.readouterr().err
