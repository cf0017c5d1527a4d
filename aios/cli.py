"""The `aios` command.

Exit codes: 0 success, 2 usage or configuration error, 1 failure at run time. Every subcommand
takes `--help`; `--config` and `--set` are global so any command sees the same configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from aios.cli_evolve import add_evolve_commands
from aios.cli_media import GRID_COLUMNS, grid_rows, head_parameter_rows, write_output
from aios.cli_memory import add_memory_commands
from aios.cli_quantize import add_quantize_command
from aios.config import Config, load_config
from aios.errors import AiosError, ConfigError
from aios.hookspecs import CONTRACT_VERSION
from aios.memory.manifest import NAME as MANIFEST
from aios.registry import KINDS, Registration, Registry, default_registry


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except AiosError as exc:
        print(f"aios: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("aios: interrupted", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aios", description="Unified diffusion generation: text, images and audio.")
    parser.add_argument("--version", action="version", version=f"aios {_aios_version()}")
    parser.add_argument("--config", metavar="FILE",
                        help="YAML config file (default: $AIOS_CONFIG, else built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set sampler.steps=20 (repeatable)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    plugins = commands.add_parser("plugins", help="list installed plugins and what they register")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.add_argument("--verbose", action="store_true",
                         help="also build each head and show its parameter count beside the "
                              "shared backbone's")
    plugins.set_defaults(handler=_plugins)

    config = commands.add_parser("config", help="inspect the configuration")
    config_commands = config.add_subparsers(title="config commands", metavar="ACTION",
                                            required=True)
    show = config_commands.add_parser(
        "show", help="print the effective config and where each value came from")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=_config_show)

    doctor = commands.add_parser(
        "doctor", help="check the installation: versions, native extension, SIMD, load errors")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(handler=_doctor)
    add_memory_commands(commands)

    generate = commands.add_parser(
        "generate", help="generate from a prompt with the configured head")
    generate.add_argument("prompt", help="the prompt (for image/audio heads: a class name)")
    generate.add_argument("--modality", help="text, image or audio (default: the head's)")
    generate.add_argument("--steps", type=int, help="number of sampler steps (default: config)")
    generate.add_argument("--seed", type=int, help="random seed for a reproducible output")
    generate.add_argument("--guidance-scale", type=float, help="classifier-free guidance scale")
    generate.add_argument("--sampler", metavar="NAME",
                          help="sampler to use (default: config; `aios plugins` lists them)")
    generate.add_argument("--length", type=int, metavar="N",
                          help="how much to generate (text: tokens; default: the head's)")
    generate.add_argument("--infill", metavar="SUFFIX",
                          help="text: the text that must follow; the model fills the middle "
                               "between the prompt and SUFFIX")
    generate.add_argument("--stream", action="store_true",
                          help="show the output while it is denoised (text: as it is unmasked)")
    generate.add_argument("--memory", metavar="DIR",
                          help="guide the generation with what this memory store retrieves "
                               "for the prompt (fill it with `aios memory add`)")
    generate.add_argument("--show-memory", action="store_true",
                          help="print the retrieved passages and their scores on stderr")
    generate.add_argument("--remember", action="store_true",
                          help="store the prompt and the generation in the memory afterwards")
    generate.add_argument("--out", metavar="FILE",
                          help="image/audio: the file to write (default: aios-MODALITY.png or "
                               ".wav in the current directory)")
    generate.add_argument("--grid", action="store_true",
                          help="image/audio: a labelled grid, one row per class the prompt "
                               "names (comma-separated; `all` for every class)")
    generate.add_argument("--adapters", nargs="+", metavar="NAME",
                          help="adapters to apply: `auto` (the router chooses per prompt), "
                               "`none`, or names, each optionally NAME:WEIGHT (several: their "
                               "outputs are mixed); default: the head's `adapters` option")
    generate.add_argument("--explain", action="store_true",
                          help="print the model's uncertainty about the prompt and the "
                               "adapters chosen, on stderr")
    generate.set_defaults(handler=_generate)
    train = commands.add_parser("train", help="train a pack's model with its recipe")
    train.add_argument("name", help="the recipe to run (e.g. text); `aios plugins` lists them")
    train.add_argument("--recipe", metavar="FILE",
                       help="recipe YAML file (default: the pack's default recipe)")
    train.add_argument("--out", metavar="DIR",
                       help="run directory; a run of the same recipe there is resumed "
                            "(default: runs/NAME)")
    train.set_defaults(handler=_train)
    evaluate = commands.add_parser("eval", help="score a trained model (e.g. its perplexity)")
    evaluate.add_argument("name", help="the evaluation to run (e.g. text); `aios plugins` "
                                       "lists them")
    evaluate.add_argument("--model", metavar="DIR",
                          help="model directory (default: the model shipped with the pack)")
    evaluate.add_argument("--baseline", metavar="DIR",
                          help="a second model directory to compare against (e.g. the "
                               "autoregressive baseline)")
    evaluate.add_argument("--data", action="append", metavar="SOURCE",
                          help="evaluation data, a source name or path (repeatable; default: "
                               "the model's own held-out split)")
    evaluate.set_defaults(handler=_evaluate)
    add_quantize_command(commands)
    add_evolve_commands(commands)
    return parser


def _aios_version() -> str:
    try:
        return metadata.version("aios")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _load(args: argparse.Namespace, registry: Registry) -> Config:
    return load_config(args.config, args.overrides, registry)


# -- aios plugins ------------------------------------------------------------------------------


def _plugins(args: argparse.Namespace) -> int:
    registry = default_registry()
    if args.json:
        print(json.dumps(_plugins_data(registry), indent=2))
        return 0
    rows = [("PLUGIN", "PACKAGE", "VERSION", "CONTRACT", "REGISTERS")]
    for info in registry.plugins.values():
        registered = "; ".join(
            f"{kind}: {', '.join(names)}" for kind, names in info.registered.items() if names
        )
        rows.append((info.name, info.distribution, info.version, info.contract, registered or "-"))
    print(_table(rows))
    print(f"\nplugin contract {CONTRACT_VERSION}; {len(registry.plugins)} plugins loaded")
    if args.verbose:
        print("\n" + _table(head_parameter_rows(registry)))
    _print_failures(registry)
    return 0


def _plugins_data(registry: Registry) -> dict[str, Any]:
    return {
        "contract_version": CONTRACT_VERSION,
        "plugins": [info.as_dict() for info in registry.plugins.values()],
        "registrations": {
            kind: {name: _registration_data(registry.get(kind, name))
                   for name in registry.names(kind)}
            for kind in KINDS
        },
        "failures": [f.as_dict() for f in registry.failures],
    }


def _registration_data(entry: Registration) -> dict[str, Any]:
    return {"plugin": entry.plugin, "summary": entry.summary, "priority": entry.priority,
            "family": entry.family}


def _print_failures(registry: Registry) -> None:
    if registry.failures:
        print(f"\n{len(registry.failures)} plugin(s) failed to load and were skipped:")
        for failure in registry.failures:
            print(f"  - {failure}")


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# -- aios config show --------------------------------------------------------------------------


def _config_show(args: argparse.Namespace) -> int:
    from aios.runtime import select_from_config

    config = _load(args, default_registry())
    data = config.as_dict()
    origins = dict(config.origins)
    runtime = select_from_config(config)  # what each runtime `auto` took, and why
    data["runtime"] = {"name": runtime.name, "device": runtime.device, "dtype": runtime.dtype}
    origins.update({f"runtime.{key}": why for key, why in runtime.reasons.items()})
    if args.json:
        print(json.dumps({"config": data, "origins": origins}, indent=2))
        return 0
    lines: list[tuple[str, str]] = []
    _flatten(data, "", lines)
    rows = [("KEY", "VALUE", "FROM")]
    rows += [(key, value, origins.get(key, "default")) for key, value in lines]
    print(_table(rows))
    return 0


def _flatten(data: Any, prefix: str, out: list[tuple[str, str]]) -> None:
    if isinstance(data, dict) and data:
        for key, value in data.items():
            _flatten(value, f"{prefix}{key}.", out)
    elif isinstance(data, list) and data:
        for index, value in enumerate(data):
            _flatten(value, f"{prefix}{index}.", out)
    else:
        out.append((prefix.rstrip("."), json.dumps(data)))


# -- aios doctor -------------------------------------------------------------------------------


def _doctor(args: argparse.Namespace) -> int:
    registry = default_registry()
    diagnostics = registry.diagnostics()
    native = "native" in registry.plugins
    problems = [str(f) for f in registry.failures]
    if not native:
        problems.append("aios_native is not installed: storage and quantization fall back to "
                        "the slower reference backends; run `scripts/dev setup` to build it")
    for plugin, facts in diagnostics.items():
        problems += [f"plugin {plugin!r} diagnostics failed: {v}" for k, v in facts if k == "error"]
    from aios.runtime import list_devices

    devices = list_devices()
    if args.json:
        print(json.dumps({
            "aios": _aios_version(),
            "contract_version": CONTRACT_VERSION,
            "diagnostics": {p: dict(f) for p, f in diagnostics.items()},
            "devices": [vars(d) for d in devices],
            "problems": problems,
        }, indent=2, default=str))
        return 1 if problems else 0
    print(f"aios {_aios_version()} (plugin contract {CONTRACT_VERSION})")
    print("\n[devices]")
    for device in devices:
        print(f"  {device.name}: {device.description}; dtypes {', '.join(device.dtypes)}")
    for plugin, facts in diagnostics.items():
        info = registry.plugins.get(plugin)
        origin = f"{info.distribution} {info.version}" if info else plugin
        print(f"\n[{plugin}] {origin}")
        for label, value in facts:
            print(f"  {label}: {value}")
    print()
    if problems:
        print(f"{len(problems)} problem(s):")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print("no problems found")
    return 0


# -- aios train -------------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    entry = default_registry().get("recipe", args.name)
    metrics = entry.factory(recipe=args.recipe, out=args.out or f"runs/{args.name}",
                            progress=True)
    _print_metrics(metrics)
    return 0


# -- aios eval --------------------------------------------------------------------------------


def _evaluate(args: argparse.Namespace) -> int:
    entry = default_registry().get("evaluator", args.name)
    _print_metrics(entry.factory(model=args.model, baseline=args.baseline, data=args.data,
                                 progress=True))
    return 0


def _print_metrics(metrics: Any) -> None:
    print(_table([("METRIC", "VALUE"), *((str(k), str(v)) for k, v in metrics.items())]))


# -- aios generate -----------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from aios.engine import ArrowEngine

    registry = default_registry()
    overrides = list(args.overrides)
    if args.sampler:
        overrides.append(f"sampler.name={args.sampler}")
    if args.modality:
        overrides.append(f"generate.modality={args.modality}")
    if args.memory is not None:
        if not (Path(args.memory) / MANIFEST).is_file():
            raise ConfigError("--memory", "memory.path", f"no memory store at {args.memory}",
                              f"fill one first: aios memory add --path {args.memory} "
                              "FILE_OR_DIR...")
        overrides.append(f"memory.path={args.memory}")
    config = load_config(args.config, overrides, registry)
    options: dict[str, Any] = {}
    if args.length is not None:
        options["length"] = args.length
    if args.infill is not None:
        options["suffix"] = args.infill
    if args.memory is not None:
        options["memory_guided"] = True
    if args.remember:
        options["remember"] = True
    if args.adapters is not None:
        options["adapters"] = args.adapters
    if args.adapters is not None or args.explain:
        if config.evolve.adapters_dir is not None:
            options["adapters_dir"] = config.evolve.adapters_dir
    if args.explain:
        options["explain"] = True
    with ArrowEngine.from_config(config, registry=registry) as engine:
        rows = grid_rows(engine.head, args.prompt) if args.grid else None
        prompt = args.prompt if rows is None else [r for r in rows for _ in range(GRID_COLUMNS)]
        if args.stream:
            output = _generate_streaming(engine, args, options)
        else:
            # The bar goes to stderr, only on a terminal (disable=None): piped output stays clean.
            with tqdm(desc="denoising", unit="step", disable=None, leave=False) as bar:

                def advance(step: int, num_steps: int, state: Any) -> None:
                    bar.total = num_steps
                    bar.update(1)

                output = engine.diffuse(prompt, modality=args.modality,
                                        num_steps=args.steps, guidance_scale=args.guidance_scale,
                                        seed=args.seed, callback=advance, **options)
        if args.show_memory:  # on stderr, after the progress bar has gone
            _show_memory(engine.last_request)
        if args.explain:
            _explain(engine.head)
        if not isinstance(output, str) and (args.out or hasattr(engine.head, "write")):
            for path in write_output(engine.head, output, args.out, rows):
                print(path)
            return 0
    print(output)
    return 0


def _show_memory(request: Any) -> None:
    """The passages the memory conditioner put into the request, with their scores."""
    passages = [c for c in (request.context if request else ()) if hasattr(c, "score")]
    if not passages:
        print("memory: nothing retrieved (empty store, or nothing above min_score)",
              file=sys.stderr)
    for passage in passages:
        text = passage.text.replace("\n", " ")
        print(f"memory: {passage.score:.3f}  {text[:100] + ('…' if len(text) > 100 else '')}"
              f"  ({passage.source})", file=sys.stderr)


def _explain(head: Any) -> None:
    """What the head reports about its last request: uncertainty and the adapters chosen."""
    explain = getattr(head, "last_explain", None)
    if not explain:
        print("explain: this head reports nothing about its choices", file=sys.stderr)
        return
    uncertainty = explain.get("uncertainty")
    print("explain: uncertainty " + ("unknown (no calibration)" if uncertainty is None else
                                     f"{uncertainty:.3f} (1.0 = typical of the training text)"),
          file=sys.stderr)
    adapted = explain.get("uncertainty_adapted")
    if adapted is not None:
        print(f"explain: uncertainty with the chosen adapter {adapted:.3f}", file=sys.stderr)
    chosen = explain.get("chosen") or {}
    print("explain: adapters " + (", ".join(f"{n} ({w:.2f})" for n, w in chosen.items())
                                  or "none (the base model)")
          + f"  [asked: {explain.get('adapters')}]", file=sys.stderr)
    for name, similarity in sorted((explain.get("similarities") or {}).items(),
                                   key=lambda item: -item[1]):
        print(f"explain: router similarity {similarity:.3f}  {name}", file=sys.stderr)


def _generate_streaming(engine: Any, args: argparse.Namespace, options: dict[str, Any]) -> Any:
    """Redraw the partial output after every step on stderr (stdout gets only the result)."""
    terminal = sys.stderr.isatty()

    def show(step: int, num_steps: int, partial: Any) -> None:
        line = f"[{step + 1}/{num_steps}] {partial}"
        if terminal:
            sys.stderr.write("\x1b[2K\r" + line.replace("\n", " "))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    output = engine.diffuse(args.prompt, modality=args.modality, num_steps=args.steps,
                            guidance_scale=args.guidance_scale, seed=args.seed, stream=show,
                            **options)
    if terminal:
        sys.stderr.write("\x1b[2K\r")
    return output


if __name__ == "__main__":
    raise SystemExit(main())
