"""Documents into the memory: read, chunk, embed and store text files, once.

Each chunk is stored with its source path, its index and the SHA-256 of the file it came
from (`metadata.extra`), so adding a file again is a no-op while it is unchanged, and a changed
file replaces all of its old chunks (deleted in the same run, before the new ones are added).
Binary and non-UTF-8 files are skipped with a warning and counted, never half-read.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from aios.errors import AiosError
from aios.memory.chunking import chunk_text
from aios.protocols import Embedder

#: File names a directory is searched for (any other file may still be named explicitly).
TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst", ".text")

#: `metadata.category` of ingested chunks and of written-back generations.
DOCUMENT, GENERATION = "document", "generation"


@dataclass
class IngestSummary:
    """What one `ingest` did, per file: what `aios memory add` prints."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    chunks: int = 0

    def __str__(self) -> str:
        return (f"{len(self.added)} files added, {len(self.replaced)} replaced, "
                f"{len(self.unchanged)} unchanged, {len(self.skipped)} skipped; "
                f"{self.chunks} chunks stored")


def text_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """The files named, and the text files under the directories named (sorted, recursive,
    hidden ones left out); each file once, however often it is named."""
    seen: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix.lower() in TEXT_SUFFIXES
                           and not any(part.startswith(".") for part in
                                       p.relative_to(path).parts))
        elif path.is_file():
            found = [path]
        else:
            raise AiosError(f"{path} does not exist; give text files or directories")
        for file in found:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                yield file


def read_text(path: Path) -> tuple[str | None, str, str]:
    """(text or None, sha256 of the bytes, why it is unreadable)."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if b"\0" in data[:8192]:
        return None, digest, "binary file"
    try:
        return data.decode("utf-8"), digest, ""
    except UnicodeDecodeError as exc:
        return None, digest, f"not UTF-8 text (byte {exc.start})"


def stored_sources(store: Any) -> dict[str, tuple[str | None, list[str]]]:
    """source -> (file sha256, record ids) of every ingested chunk in the store."""
    sources: dict[str, tuple[str | None, list[str]]] = {}
    for batch in store.batches():
        for record_id, meta in zip(batch.column("id").to_pylist(),
                                   batch.column("metadata").to_pylist(), strict=True):
            if meta["category"] != DOCUMENT or meta["source"] is None:
                continue
            extra = json.loads(meta["extra"] or "{}")
            digest, ids = sources.get(meta["source"], (extra.get("sha256"), []))
            ids.append(record_id)
            sources[meta["source"]] = (digest, ids)
    return sources


def check_store_fits(store: Any, embedder: Embedder) -> None:
    """Refuse a store whose vectors have another length than the embedder's."""
    if store.dim != embedder.dim:
        raise AiosError(f"the store {store.path} holds {store.dim}-dimensional vectors but the "
                        f"embedder {embedder.name!r} makes {embedder.dim}-dimensional ones; use "
                        "the embedder that filled the store (--set memory.embedder=NAME) or "
                        "another store directory")


def ingest(store: Any, embedder: Embedder, paths: Sequence[str | Path], *,
           chunk_size: int = 200, chunk_overlap: int = 50,
           progress: bool = False) -> IngestSummary:
    """Add the text files of `paths` to `store`; see the module docstring for the rules."""
    check_store_fits(store, embedder)
    summary = IngestSummary()
    known = stored_sources(store)
    files = list(text_files(paths))
    for path in tqdm(files, desc="reading", unit="file", file=sys.stderr,
                     disable=not progress or len(files) < 2):
        source = str(path.resolve())
        text, digest, why = read_text(path)
        if text is None:
            print(f"aios: warning: skipped {path}: {why}", file=sys.stderr)
            summary.skipped.append((str(path), why))
            continue
        old_digest, old_ids = known.get(source, (None, []))
        if old_ids and old_digest == digest:
            summary.unchanged.append(str(path))
            continue
        chunks = chunk_text(text, chunk_size, chunk_overlap)
        if not chunks:
            print(f"aios: warning: skipped {path}: no text", file=sys.stderr)
            summary.skipped.append((str(path), "no text"))
            continue
        vectors = embedder.embed(chunks, progress=progress)
        if old_ids:
            store.delete(old_ids)
        store.add(embeddings=vectors, contents=chunks, modality="text", category=DOCUMENT,
                  source=source,
                  extra=[{"chunk": i, "sha256": digest, "embedder": embedder.name}
                         for i in range(len(chunks))])
        (summary.replaced if old_ids else summary.added).append(str(path))
        summary.chunks += len(chunks)
        known[source] = (digest, [])
    return summary


def ingest_into(path: str | Path, embedder: Embedder, paths: Sequence[str | Path], *,
                chunk_size: int = 200, chunk_overlap: int = 50, backend: str = "auto",
                progress: bool = False, **options: Any) -> tuple[IngestSummary, int]:
    """`ingest` into the store at `path`, creating it with the embedder's dimension when the
    directory is new (an existing store keeps its own: `ingest` names a mismatch). Returns the
    summary and the number of records the store then holds."""
    from aios.memory import open_memory
    from aios.memory.manifest import NAME as MANIFEST

    is_new = not (Path(path) / MANIFEST).exists()
    with open_memory(path, embedder.dim if is_new else None, backend=backend,
                     **options) as store:
        summary = ingest(store, embedder, paths, chunk_size=chunk_size,
                         chunk_overlap=chunk_overlap, progress=progress)
        return summary, store.count()


def remember(store: Any, embedder: Embedder, prompt: str, output: str) -> str:
    """Write one generation back into the memory (prompt and output as one passage)."""
    check_store_fits(store, embedder)
    # A text head's output already starts with its prompt; other outputs get it in front.
    text = output if output.startswith(prompt) else f"{prompt} {output}"
    vector = embedder.embed([text])
    [record_id] = store.add(embeddings=vector, contents=[text], modality="text",
                            category=GENERATION, source="aios generate",
                            extra=[{"prompt": prompt, "embedder": embedder.name}])
    return record_id
