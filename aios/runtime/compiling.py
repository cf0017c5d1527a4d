"""`runtime.compile`: run a torch network's forward through `torch.compile`, opt-in.

Why opt-in: compiling costs seconds to minutes on the first call (and again for each new shape
unless shapes are dynamic), needs a C++ compiler on a CPU, and was measured not to pay on the
CPU this project is developed on (docs/runtime.md, `benchmarks/runtime.py --compile-only`). On
a GPU, fusing the elementwise work between matmuls can help; measure there before enabling.

Shapes are compiled dynamic (`dynamic=True`): block decoding changes the number of positions
every forward (the whole sequence, then one block with or without the suffix), and a graph per
length would recompile all the time. The network is compiled in place (`nn.Module.compile`), so
its attributes, its `state_dict` names and every caller holding it stay the same.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

#: The C++ compilers torch's inductor backend looks for on a CPU (after ``$CXX``).
CXX_COMPILERS = ("g++", "clang++", "c++")


def cpp_compiler() -> str | None:
    """The C++ compiler `torch.compile` would use on a CPU, or None when there is none."""
    configured = os.environ.get("CXX")
    if configured and shutil.which(configured):
        return configured
    return next((c for c in CXX_COMPILERS if shutil.which(c)), None)


def torch_available() -> bool:
    """Whether torch can be imported (the `compile` flag and the torch runtime need it)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def compile_network(network: Any, *, dynamic: bool = True) -> Any:
    """Compile `network`'s forward in place (`torch.compile`, dynamic shapes) and return it.
    Compilation itself happens on the first call; a network already compiled is left as is."""
    if getattr(network, "_compiled_call_impl", None) is None:
        network.compile(dynamic=dynamic)
    return network


__all__ = ["CXX_COMPILERS", "compile_network", "cpp_compiler", "torch_available"]
