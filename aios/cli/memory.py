"""`aios memory ...`: the memory store from the command line.

    aios memory add --path DIR PATH...             text files / directories: chunked, embedded
    aios memory add --path DIR [--dim N] FILE      records from .jsonl, .parquet, .arrow or .npy
    aios memory search --path DIR --text "..."     the passages nearest some words
    aios memory search --path DIR --query "[...]"  top-k (or --query-file vectors.npy)
    aios memory get|delete --path DIR ID...
    aios memory stats|compact|export --path DIR
    aios memory check --path DIR                   read and verify every file (changes nothing)
    aios memory recover --path DIR                 keep what verifies, set damaged files aside

Kept apart from `aios.cli` so the core command stays small; `aios.cli` only hooks it in.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from aios.memory import Filter, MemoryStore, open_memory
from aios.memory.errors import InvalidRecordError
from aios.memory.manifest import NAME as MANIFEST

#: Records per write when adding from a file: each batch is one fsynced log entry.
ADD_BATCH = 10_000

#: File types `memory add` reads as ready-made records; anything else is read as text.
RECORD_SUFFIXES = (".npy", ".parquet", ".arrow", ".feather", ".ipc", ".jsonl", ".json")


def add_memory_commands(commands: argparse._SubParsersAction) -> None:
    """Register `aios memory` and its actions on the top-level subcommand parser."""
    memory = commands.add_parser("memory", help="add, search and maintain a memory store")
    actions = memory.add_subparsers(title="memory commands", metavar="ACTION", required=True)

    def action(name: str, help_: str, handler: Any) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help_)
        parser.add_argument("--path", required=True, help="the store directory")
        parser.add_argument("--backend", default="auto",
                            help="storage backend: native, reference or auto (default)")
        parser.set_defaults(handler=handler)
        return parser

    add = action("add", "add text files and directories (chunked and embedded), or records "
                        "from .jsonl, .parquet, .arrow or .npy files", _add)
    add.add_argument("paths", nargs="+", metavar="PATH",
                     help="text files (.txt, .md, ...) or directories of them, searched "
                          "recursively; or record files: JSON lines with an 'embedding' key, "
                          "a Parquet/Arrow table with the store's columns, a .npy matrix")
    add.add_argument("--dim", type=int, help="vector length of record files (required to "
                                             "create a new store from them)")
    add.add_argument("--modality", default="text", help="modality for .npy input (default text)")
    add.add_argument("--copies", help="persist lower-precision copies beside each new segment, "
                                      "e.g. i8 or i8,f16 (kept as the store's setting)")
    add.add_argument("--embedder", help="embedder for text (default: memory.embedder)")

    search = action("search", "the records nearest a text or a query vector", _search)
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="words to search for: embedded with the embedder that "
                                      "filled the store; shows each passage, score and source")
    query.add_argument("--query", help='the query vector as JSON, e.g. "[0.1, 0.2, ...]"')
    query.add_argument("--query-file", help="a .npy file with one query (or a batch of them)")
    search.add_argument("-k", type=int, default=10, help="number of results (default 10)")
    search.add_argument("--metric", default="cosine", choices=["cosine", "dot", "l2"])
    search.add_argument("--precision", default="f32", choices=["f32", "f16", "i8"],
                        help="scan a lower-precision copy, then re-score exactly")
    search.add_argument("--threshold", type=float, help="least similarity (l2: most distance)")
    search.add_argument("--modality-filter", dest="modality", help="only this modality")
    search.add_argument("--category", help="only this metadata category")
    search.add_argument("--source", help="only this metadata source")
    search.add_argument("--since", type=datetime.fromisoformat, help="ISO time, inclusive")
    search.add_argument("--until", type=datetime.fromisoformat, help="ISO time, inclusive")
    search.add_argument("--min-quality", type=float, help="least quality score")
    search.add_argument("--json", action="store_true", help="machine-readable output")

    get = action("get", "print records by id", _get)
    get.add_argument("ids", nargs="+")
    get.add_argument("--json", action="store_true", help="machine-readable output")

    delete = action("delete", "delete records by id", _delete)
    delete.add_argument("ids", nargs="+")

    stats = action("stats", "counts, sizes and settings of a store", _stats)
    stats.add_argument("--json", action="store_true", help="machine-readable output")

    compact = action("compact", "merge segments and apply the retention policy", _compact)
    compact.add_argument("--max-records", type=int, help="keep only the newest N records")
    compact.add_argument("--max-age-days", type=float, help="forget records older than this")
    compact.add_argument("--min-quality", type=float, help="forget records of lower quality")

    export = action("export", "write every record to a Parquet file", _export)
    export.add_argument("output", help="the .parquet file to write")

    action("check", "read and verify every file of a store: sizes, checksums, Arrow "
                    "structure, log frames (changes nothing; exit 1 on damage)", _check)
    action("recover", "after damage: keep every segment and log frame that verifies, move the "
                      "damaged files into damaged-TIME/ inside the store", _recover)


def _open(args: argparse.Namespace, dim: int | None = None, **options: Any) -> MemoryStore:
    if options.get("read_only") and not (Path(args.path).expanduser() / MANIFEST).is_file():
        raise InvalidRecordError(f"no memory store at {args.path}; fill one first: aios memory "
                                 f"add --path {args.path} FILE_OR_DIR...")
    return open_memory(args.path, dim, backend=args.backend, **options)


# -- add ---------------------------------------------------------------------------------------


def _add(args: argparse.Namespace) -> int:
    records = [Path(p) for p in args.paths if Path(p).suffix.lower() in RECORD_SUFFIXES]
    documents = [p for p in args.paths if Path(p).suffix.lower() not in RECORD_SUFFIXES]
    options = {} if args.copies is None else {"copies": args.copies}
    for path in (*records, *map(Path, documents)):
        if not path.exists():
            raise InvalidRecordError(f"{path} does not exist; give text files or directories, "
                                     "or record files (.jsonl, .parquet, .arrow, .npy)")
    for path in records:
        if not path.is_file():
            raise InvalidRecordError(f"{path} is not a file")
        _add_records(args, path, options)
    if documents:
        _add_documents(args, documents, options)
    return 0


def _add_records(args: argparse.Namespace, path: Path, options: dict[str, Any]) -> None:
    total, chunks = _read_records(path, args.modality)
    with _open(args, args.dim, **options) as store:
        added = 0
        with tqdm(total=total, unit="rec", desc="adding", disable=total < ADD_BATCH,
                  file=sys.stderr) as bar:
            for chunk in chunks:
                added += len(store.add(**chunk))
                bar.update(added - bar.n)
        print(f"added {added} records to {store.path} ({store.count()} in total)")


def _add_documents(args: argparse.Namespace, paths: list[str], options: dict[str, Any]) -> None:
    from aios.config import load_config
    from aios.memory.embedding import build_embedder
    from aios.memory.ingest import ingest_into
    from aios.registry import default_registry

    config = load_config(args.config, args.overrides, default_registry()).memory
    embedder = build_embedder(args.embedder or config.embedder)
    summary, count = ingest_into(args.path, embedder, paths, chunk_size=config.chunk_size,
                                 chunk_overlap=config.chunk_overlap, backend=args.backend,
                                 progress=True, **options)
    print(f"{summary} with {embedder.name} into {Path(args.path).expanduser()} "
          f"({count} records)")


def _read_records(path: Path, modality: str) -> tuple[int, Iterator[dict[str, Any]]]:
    """The number of records in `path` and an iterator of `add` keyword arguments per batch."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        matrix = _load_npy(path)
        if matrix.ndim != 2:
            raise InvalidRecordError(f"{path} holds an array of shape {matrix.shape}; a .npy of "
                                     "vectors must be 2-D (rows, dim)")
        return len(matrix), ({"embeddings": matrix[i:i + ADD_BATCH], "modality": modality}
                             for i in range(0, len(matrix), ADD_BATCH))
    if suffix in (".parquet", ".arrow", ".feather", ".ipc"):
        import pyarrow.feather as feather
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path) if suffix == ".parquet" else feather.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InvalidRecordError(f"{path} is not a readable {suffix} table: {exc}") from None
        return len(table), ({"records": b} for b in table.to_batches(ADD_BATCH))
    if suffix in (".jsonl", ".json"):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        try:
            records = [json.loads(line) for line in lines]
        except ValueError as exc:
            raise InvalidRecordError(f"{path} is not JSON lines: {exc}") from None
        except RecursionError:
            raise InvalidRecordError(f"{path} nests JSON too deeply to read; records are flat "
                                     "objects") from None
        return len(records), ({"records": records[i:i + ADD_BATCH]}
                              for i in range(0, len(records), ADD_BATCH))
    raise InvalidRecordError(f"cannot read records from {path.name}: use .jsonl, .parquet, "
                             ".arrow or .npy")


def _load_npy(path: Path) -> np.ndarray:
    """A numeric .npy array, memory-mapped; anything else (pickled objects) is refused."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidRecordError(f"{path} is not a numeric .npy array ({exc}); save vectors "
                                 "with numpy.save(path, float32_matrix)") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise InvalidRecordError(f"{path} holds {getattr(array, 'dtype', 'no array')} values, "
                                 "not numbers; save a float matrix")
    return array


# -- search, get -------------------------------------------------------------------------------


def _search(args: argparse.Namespace) -> int:
    query = None if args.text is not None else _query_vector(args)
    chosen = Filter(modality=args.modality, category=args.category, source=args.source,
                    since=args.since, until=args.until, min_quality=args.min_quality)
    with _open(args, read_only=True) as store:
        if args.text is not None:
            if not args.text.strip():
                raise InvalidRecordError("--text is empty; give the words to search for")
            query = _text_embedder(args, store).embed([args.text])[0]
        found = store.search(query, args.k, metric=args.metric, filter=chosen,
                             threshold=args.threshold, precision=args.precision)
    results = [found] if not isinstance(found, list) else found
    if args.json:
        print(json.dumps([[{"id": i, "score": float(s), **_plain(r)}
                           for i, s, r in zip(res.ids, res.scores, res.records.to_pylist(),
                                              strict=True)] for res in results], indent=1))
        return 0
    for n, result in enumerate(results):
        if len(results) > 1:
            print(f"query {n}:")
        if args.text is not None:
            _print_passages(result.records, result.scores)
        else:
            _print_records(result.records, result.scores)
    return 0


def _query_vector(args: argparse.Namespace) -> np.ndarray:
    if args.query is not None:
        try:
            return np.asarray(json.loads(args.query), dtype=np.float32)
        except (ValueError, TypeError):
            raise InvalidRecordError("--query must be a JSON list of numbers") from None
    path = Path(args.query_file)
    if not path.is_file():
        raise InvalidRecordError(f"--query-file {path}: no such file; give a .npy file with a "
                                 "query vector (np.save), or search by words with --text")
    return _load_npy(path)


def store_embedder_name(store: MemoryStore) -> str | None:
    """The embedder that filled the store, as `memory add` records it beside each passage
    (None for a store of bare vectors)."""
    for batch in store.batches():
        for extra in batch.column("metadata").field("extra").to_pylist():
            try:
                name = json.loads(extra).get("embedder") if extra else None
            except (ValueError, AttributeError):
                continue
            if isinstance(name, str):
                return name
    return None


def _text_embedder(args: argparse.Namespace, store: MemoryStore) -> Any:
    """The store's own embedder, so that the query lands in the space its passages are in."""
    from aios.memory.embedding import build_embedder
    from aios.memory.ingest import check_store_fits

    name = store_embedder_name(store)
    if name is None:
        if not store.count():
            raise InvalidRecordError(f"the store at {args.path} is empty; fill it first: "
                                     f"aios memory add --path {args.path} FILE_OR_DIR...")
        from aios.config import load_config
        from aios.registry import default_registry

        name = load_config(args.config, args.overrides, default_registry()).memory.embedder
    embedder = build_embedder(name)
    check_store_fits(store, embedder)
    return embedder


def _print_passages(table: pa.Table, scores: np.ndarray) -> None:
    """Best first: the score and source on one line, the passage's text indented below."""
    if not table.num_rows:
        print("nothing found (an empty store, or nothing above --threshold)")
        return
    for n, record in enumerate(table.to_pylist()):
        source = record["metadata"].get("source") or record["id"]
        print(f"{scores[n]:.3f}  {source}")
        text = " ".join(record["content"].split())
        print(textwrap.fill(text, width=100, initial_indent="    ", subsequent_indent="    "))


def _get(args: argparse.Namespace) -> int:
    with _open(args, read_only=True) as store:
        table = store.get(args.ids)
    if args.json:
        print(json.dumps([_plain(r) for r in table.to_pylist()], indent=1))
    else:
        _print_records(table)
    return 0


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    record = dict(record)
    record["timestamp"] = record["timestamp"].isoformat()
    record.pop("embedding", None)
    return record


def _print_records(table: pa.Table, scores: np.ndarray | None = None) -> None:
    if not table.num_rows:
        print("no records")
        return
    for n, record in enumerate(table.to_pylist()):
        score = f"{scores[n]:.4f}  " if scores is not None else ""
        meta = {k: round(v, 4) if isinstance(v, float) else v
                for k, v in record["metadata"].items() if v is not None}
        content = printable(record["content"].replace("\n", " "))
        print(f"{score}{printable(record['id'])}  [{record['modality']}] "
              f"{content[:80] + ('…' if len(content) > 80 else '')}"
              f"{'  ' + json.dumps(meta) if meta else ''}")


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}


def printable(text: str) -> str:
    """`text` with control characters (terminal escape sequences among them) made visible, so
    stored content cannot move the cursor, retitle or recolour the user's terminal."""
    return text.translate(_CONTROL)


# -- delete, stats, compact, export ------------------------------------------------------------


def _delete(args: argparse.Namespace) -> int:
    with _open(args) as store:
        print(f"deleted {store.delete(args.ids)} of {len(args.ids)} records")
    return 0


def _stats(args: argparse.Namespace) -> int:
    with _open(args, read_only=True) as store:
        stats = store.stats()
    if args.json:
        print(json.dumps(stats, indent=1))
    else:
        width = max(map(len, stats))
        for key, value in stats.items():
            print(f"{key.ljust(width)}  {value}")
    return 0


def _compact(args: argparse.Namespace) -> int:
    policy = {k: v for k, v in (("max_records", args.max_records),
                                ("max_age_days", args.max_age_days),
                                ("min_quality", args.min_quality)) if v is not None}
    with _open(args) as store:
        result = store.compact(policy or None)
    print(f"compacted: {result['before']} records before, {result['after']} after "
          f"({result['dropped']} forgotten)")
    return 0


def _export(args: argparse.Namespace) -> int:
    with _open(args, read_only=True) as store:
        count = store.export(args.output)
    print(f"exported {count} records to {args.output}")
    return 0


# -- check, recover ----------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    from aios.memory.integrity import check

    report = check(args.path)
    for problem in report.problems:
        print(f"damaged: {problem}", file=sys.stderr)
    if report.unchecked:
        print(f"note: {len(report.unchecked)} file(s) carry no checksum (written by an older "
              f"aios; `aios memory compact` rewrites them with one): "
              f"{', '.join(report.unchecked[:3])}")
    if not report.ok:
        print(f"{report.path}: {len(report.problems)} problem(s); run `aios memory recover "
              f"--path {report.path}` to keep what verifies", file=sys.stderr)
        return 1
    print(f"ok: {report.path}: {report.segments} segment(s) with {report.records} records and "
          f"{report.log_frames} log frame(s) verified")
    return 0


def _recover(args: argparse.Namespace) -> int:
    from aios.memory.integrity import recover

    report = recover(args.path)
    if not report.changed:
        print(f"nothing to recover: every file of {report.path} verifies")
        return 0
    for name in report.dropped_segments:
        print(f"dropped the damaged segment {name}")
    if report.records_lost:
        print(f"{report.records_lost} record(s) in damaged segments are lost (restore them from "
              "a backup)")
    for name in report.dropped_copies:
        print(f"dropped the damaged copy {name} (rebuilt from the vectors when used)")
    if report.log_damage:
        print(f"write-ahead log damaged ({report.log_damage}); kept the "
              f"{report.log_frames_kept} frame(s) that verify")
    if report.retention_cleared:
        print("cleared an invalid retention policy; set one with `aios memory compact`")
    print(f"kept {report.kept_segments} segment(s); damaged files are in {report.moved_to}")
    return 0
