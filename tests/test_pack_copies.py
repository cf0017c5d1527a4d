"""aios-image and aios-audio install separately, so a little code is repeated in each (their
registration hooks, `recipe.train_command`); everything else they share lives in the core
(`aios.models.gaussian*`, `aios.training.gaussian_recipe`). Each copy is marked in its file, and
these tests hold the copies to one shape: the same statements once the modality's own names,
docstrings and literal values (summaries, priorities) are set aside."""

import ast
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
PACKS = {"image": PLUGINS / "image_head" / "aios_image",
         "audio": PLUGINS / "audio_head" / "aios_audio"}
MODALITY_NAMES = {"image": ("ImageHead", "image"), "audio": ("AudioHead", "audio")}


class _Normalise(ast.NodeTransformer):
    """Replaces the modality's own names by placeholders and drops docstrings and literals."""

    def __init__(self, modality: str) -> None:
        self.head_class, self.word = MODALITY_NAMES[modality]

    def _name(self, name: str) -> str:
        return (name.replace(self.head_class, "HEAD").replace(f"aios_{self.word}", "PACK")
                .replace(self.word, "MODALITY"))

    def visit_Name(self, node):
        node.id = self._name(node.id)
        return node

    def visit_alias(self, node):
        node.name = self._name(node.name)
        return node

    def visit_ImportFrom(self, node):
        node.module = self._name(node.module or "")
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node):
        node.name = self._name(node.name)
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(
                getattr(node.body[0], "value", None), ast.Constant):
            node.body = node.body[1:]  # the docstring
        self.generic_visit(node)
        return node

    def visit_Constant(self, node):
        return ast.Constant("LITERAL")


def functions(path: Path, modality: str) -> dict[str, str]:
    """The module's top-level functions, normalised, by normalised name."""
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            normal = _Normalise(modality).visit(node)
            found[normal.name] = ast.dump(normal, include_attributes=False)
    return found


@pytest.mark.parametrize(("module", "shared"), [
    ("plugin.py", {"aios_register_heads", "aios_register_recipes", "train_MODALITY"}),
    ("recipe.py", {"train_command"}),
])
def test_the_copies_in_the_image_and_audio_packs_agree(module, shared):
    image = functions(PACKS["image"] / module, "image")
    audio = functions(PACKS["audio"] / module, "audio")
    assert shared <= set(image) & set(audio)
    differing = sorted(name for name in shared if image[name] != audio[name])
    assert differing == []


def test_each_copy_is_marked_in_its_file():
    for modality, directory in PACKS.items():
        other = "audio" if modality == "image" else "image"
        for module in ("plugin.py", "recipe.py"):
            text = (directory / module).read_text()
            assert f"copy shared with aios_{other}/{module}" in text.lower(), (modality, module)


def test_a_changed_copy_is_caught(tmp_path):
    changed = (PACKS["audio"] / "recipe.py").read_text().replace(
        "return run_recipe(load_recipe(recipe or DEFAULT_RECIPE), out, progress=progress)",
        "return run_recipe(load_recipe(recipe or DEFAULT_RECIPE), out, progress=False)")
    path = tmp_path / "recipe.py"
    path.write_text(changed)
    assert functions(path, "audio")["train_command"] != functions(
        PACKS["image"] / "recipe.py", "image")["train_command"]
