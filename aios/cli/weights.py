"""`aios weights check PATH`: read and verify every tensor of a weight file or model directory.

Loading a weight file checks its structure and a tensor's checksum when the tensor is first
read; this command checks everything now (like `aios memory check` for a store), so a
downloaded or copied model can be vetted before it is served. Kept apart from `aios.cli` so the
core command stays small.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aios.errors import WeightFileError
from aios.io import load_weights

__all__ = ["add_weights_commands", "check_weights"]


def add_weights_commands(commands: argparse._SubParsersAction) -> None:
    """Register `aios weights check` on the top-level subcommand parser."""
    weights = commands.add_parser("weights", help="inspect and verify weight files")
    actions = weights.add_subparsers(title="weights commands", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="verify the structure and every checksum of a weight file (.arrow) or of "
                      "every weight file in a model directory; exit 1 on damage")
    check.add_argument("path", help="an aios weight file or a model directory")
    check.set_defaults(handler=_check)


def check_weights(path: Path) -> tuple[int, int]:
    """(tensors, bytes) of the weight file at `path`, every checksum verified; raises
    `WeightFileError` naming the file on any damage."""
    weights = load_weights(path)
    weights.verify()
    return len(weights), path.stat().st_size


def _check(args: argparse.Namespace) -> int:
    path = Path(args.path).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.arrow"))
        if not files:
            raise WeightFileError(f"{path} holds no weight files (*.arrow); give a weight file "
                                  "or a model directory")
    elif path.is_file():
        files = [path]
    else:
        raise WeightFileError(f"{path} does not exist; give a weight file or a model directory")
    failed = 0
    for file in files:
        try:
            tensors, size = check_weights(file)
        except WeightFileError as exc:
            print(f"damaged: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"ok: {file}: {tensors} tensors, {size} bytes verified")
    if failed:
        print(f"{failed} of {len(files)} weight file(s) are damaged; write or copy them again",
              file=sys.stderr)
        return 1
    return 0
