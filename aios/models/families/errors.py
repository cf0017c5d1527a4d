"""The one error a pretrained checkpoint raises when it cannot be used."""

from __future__ import annotations

from aios.errors import AiosError


class CheckpointError(AiosError, ValueError):
    """A checkpoint (directory or GGUF file) that cannot be loaded as it is: the message names
    the file, tensor or setting and the fix. A user's input, so the CLI exits with 2."""

    exit_code = 2


__all__ = ["CheckpointError"]
