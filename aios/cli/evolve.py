"""`aios evolve` and `aios adapters`: self-evolution from the command line.

    aios evolve PATH...              adapt the model to new text (a folder of .txt files, a file,
                                     or a corpus name); keep the adapter only if it helps
    aios evolve --from-memory        adapt to the remembered requests the model was unsure of
    aios evolve --calibrate          measure the model's typical loss (uncertainty 1.0)
    aios evolve --loop FOLDER --memory DIR
                                     the closed loop on new text (`aios.evolve.loop`)
    aios adapters list               the kept adapters, their sizes and scores
    aios adapters delete NAME...     drop adapters (and their router centroids)

The adapter kinds come from the `evolve` config section: `evolve.adapter` is a ladder (`auto`:
every installed kind, cheapest level first) that `climb` tries in order until one adapter is
kept. The kinds do the training; this module gathers the text and prints the decisions.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from aios.config import Config, load_config
from aios.errors import ConfigError, PluginNotFoundError, UsageError, suggest
from aios.evolve.adapters import AdapterStore
from aios.evolve.ladder import climb, memory_texts
from aios.memory.manifest import NAME as MANIFEST
from aios.registry import INSTALL_HINTS, default_registry


def add_evolve_commands(commands: argparse._SubParsersAction) -> None:
    evolve = commands.add_parser(
        "evolve", help="adapt the model to new text; keep the adapter only if it helps")
    evolve.add_argument("paths", nargs="*", metavar="PATH",
                        help="the new text: .txt files, folders of them, or corpus names")
    evolve.add_argument("--from-memory", action="store_true",
                        help="adapt to the texts in the memory store (memory.path / --memory) "
                             "whose uncertainty is above evolve.threshold")
    evolve.add_argument("--memory", metavar="DIR",
                        help="the memory store for --from-memory and --loop")
    evolve.add_argument("--loop", metavar="FOLDER",
                        help="run the closed loop on a folder of new text: store it in "
                             "--memory, serve requests from it memory-guided, adapt to what "
                             "the model was unsure of, serve them again")
    evolve.add_argument("--requests", type=int, default=16, metavar="N",
                        help="requests the loop serves (default 16)")
    evolve.add_argument("--name", help="the adapter's name (default: from the first PATH)")
    evolve.add_argument("--model", metavar="DIR",
                        help="the model directory to adapt (default: the head's shipped model)")
    evolve.add_argument("--calibrate", action="store_true",
                        help="only measure the model's uncertainty calibration and save it")
    evolve.set_defaults(handler=_evolve)

    adapters = commands.add_parser("adapters", help="list or delete kept adapters")
    actions = adapters.add_subparsers(title="adapter commands", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the adapters, their kind, size and scores")
    listing.set_defaults(handler=_list)
    delete = actions.add_parser("delete", help="delete adapters by name")
    delete.add_argument("names", nargs="+", metavar="NAME")
    delete.set_defaults(handler=_delete)


def adapter_store(config: Config) -> AdapterStore:
    return AdapterStore(config.evolve.adapters_dir)


def adapter_ladder(config: Config) -> list[Any]:
    """The adapter kinds of `evolve.adapter`, built with the options each takes, in order."""
    registry = default_registry()
    if not config.evolve.adapter or "auto" in config.evolve.adapter:
        raise PluginNotFoundError("adapter", "auto", (), INSTALL_HINTS["adapter"])
    ladder = []
    for name in config.evolve.adapter:
        factory = registry.get("adapter", name).factory
        ladder.append(factory(**config.evolve.options_for(factory)))
    return ladder


def _evolve(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.overrides, default_registry())
    ladder = adapter_ladder(config)
    if args.calibrate:
        print(f"calibration written to {ladder[0].calibrate(args.model, progress=True)}")
        return 0
    if args.loop:
        return _loop(args, config, ladder)
    if bool(args.paths) == bool(args.from_memory):
        raise ConfigError("command line", "PATH", "give the new text as PATH... or "
                          "--from-memory (one of the two)",
                          "e.g. aios evolve ./new-texts/ --name mydomain")
    _check_paths(args.paths)
    texts: list[str] = []
    if args.from_memory:
        texts = memory_texts(args.memory or config.memory.path)
    name = args.name or _default_name(args.paths)
    evo = config.evolve
    _print_ladder(config)
    climb(ladder, args.model, name, report=print_decision, sources=args.paths, texts=texts,
          threshold=evo.threshold if args.from_memory else None, store=adapter_store(config),
          min_gain=evo.min_gain, max_base_loss=evo.max_base_loss, held_out=evo.held_out,
          progress=True)
    return 0


def _loop(args: argparse.Namespace, config: Config, ladder: list[Any]) -> int:
    from aios.cli.tables import table as _table
    from aios.evolve.loop import run_loop

    if not args.memory or args.paths or args.from_memory:
        raise ConfigError("command line", "--loop", "the loop takes one FOLDER and a --memory "
                          "store (and no PATH or --from-memory)",
                          "e.g. aios evolve --loop ./new-texts/ --memory ./mem")
    name = args.name or _default_name([args.loop])
    _print_ladder(config)
    report = run_loop(config, args.loop, args.memory, requests=args.requests, name=name,
                      ladder=ladder, store=adapter_store(config), model=args.model,
                      report=print_decision)
    print(f"\nmemory: {report.ingested}; {len(report.before)} generations written back")
    if report.skipped:
        print(f"no adaptation: {report.skipped}")
    print(_table(report.table()))
    return 0


def _check_paths(paths: list[str]) -> None:
    """A PATH that names no file is a mistake to report before any training starts (a
    corpus name, like `fortunes`, is checked by the pack when it is read)."""
    for path in paths:
        looks_like_path = path.startswith(("/", "./", "../", "~")) or Path(path).suffix
        if looks_like_path and not Path(path).expanduser().exists():
            raise UsageError(f"{path} does not exist; give .txt files, folders of them, or "
                             "a corpus name (e.g. fortunes)")


def _print_ladder(config: Config) -> None:
    print(f"ladder: {' -> '.join(config.evolve.adapter)} (the first adapter kept ends it)")


def print_decision(decision: Any) -> None:
    """One rung of the ladder: its before/after table and verdict."""
    from aios.cli.tables import table as _table

    print(f"\n{decision.kind} (level {decision.level}):")
    print(_table([tuple(row) for row in decision.table()]))
    print(f"adapter {decision.name!r}: {decision.reason}")
    print(f"trained {decision.parameters:,} parameters "
          f"({decision.parameters / decision.model_parameters:.2%} of the model) in "
          f"{decision.seconds:.0f} s")


def _default_name(paths: list[str]) -> str:
    stem = Path(paths[0]).stem if paths else f"memory-{time.strftime('%Y%m%d-%H%M%S')}"
    return re.sub(r"[^a-z0-9._+-]+", "-", stem.lower()).strip("-._+") or "adapter"


def _list(args: argparse.Namespace) -> int:
    from aios.cli.tables import table as _table

    store = adapter_store(load_config(args.config, args.overrides, default_registry()))
    infos = store.list()
    if not infos:
        print(f"no adapters in {store.directory}; `aios evolve PATH` makes one")
        return 0
    rows = [("NAME", "KIND", "LEVEL", "PARAMETERS", "DOMAIN", "NEW PPL", "BASE PPL")]
    for info in infos:
        m = info.metrics
        rows.append((info.name, info.kind, str(info.level), f"{info.parameters:,}", info.domain,
                     f"{m.get('new_before', '?')} -> {m.get('new_after', '?')}",
                     f"{m.get('base_before', '?')} -> {m.get('base_after', '?')}"))
    print(_table(rows))
    return 0


def _delete(args: argparse.Namespace) -> int:
    store = adapter_store(load_config(args.config, args.overrides, default_registry()))
    known = {info.name for info in store.list()}
    unknown = [name for name in args.names if name not in known]
    if unknown:
        close = suggest(unknown[0], known)
        raise UsageError(f"no adapter {unknown[0]!r} in {store.directory}"
                         + (f"; did you mean {close[0]!r}?" if close else "")
                         + f" (adapters there: {', '.join(sorted(known)) or 'none'}); "
                         "`aios adapters list` shows them")
    for name in args.names:
        store.delete(name)
        _forget_centroids(store, name)
        print(f"deleted adapter {name!r}", file=sys.stderr)
    return 0


def _forget_centroids(store: AdapterStore, name: str) -> None:
    """Remove the router's centroids of a deleted adapter (a store without them is fine)."""
    from aios.evolve.router import CENTROIDS, AdapterRouter

    if not (store.directory / CENTROIDS / MANIFEST).is_file():
        return

    class _NoEmbedder:  # deleting needs the stored vectors' dimension only
        name = ""
        dim = None

    router = AdapterRouter(store.directory, _NoEmbedder())
    try:
        router.remove(name)
    finally:
        router.close()
