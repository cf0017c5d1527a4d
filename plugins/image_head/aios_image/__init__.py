"""aios-image: Image head: Gaussian diffusion on image patches.

The pack registers with aios through the entry point in its pyproject.toml; see `plugin.py`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
