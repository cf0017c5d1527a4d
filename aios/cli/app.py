"""The `aios` command.

Exit codes: 0 success, 2 a user mistake (a bad option, a missing input, an option that does
not apply), 1 a failure at run time. Either way stderr gets one `aios: error: ...` line naming
the problem and the fix; `--debug` adds the traceback. Every subcommand takes `--help`;
`--config`, `--set` and `--debug` are global and may come before or after the command.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from typing import Any, NoReturn

import yaml

from aios.cli.evolve import add_evolve_commands
from aios.cli.media import GRID_COLUMNS, grid_rows, head_parameter_rows, write_output
from aios.cli.memory import add_memory_commands
from aios.cli.quantize import add_quantize_command
from aios.cli.tables import table as _table
from aios.cli.weights import add_weights_commands
from aios.config import Config, load_config
from aios.errors import AiosError, ConfigError, PluginError, UsageError, blamed, suggest
from aios.hookspecs import CONTRACT_VERSION
from aios.io import write_atomic
from aios.registry import KINDS, Registration, Registry, default_registry
from aios.resources import OptionalResource
from aios.schedules import trust_code
from aios.serve import add_serve_command


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = _parse(parser, argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    if args.trust_code:
        trust_code()
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a closed pipe fails here, where it is caught, not at exit
        return code
    except AiosError as exc:
        return _fail(args, str(exc), exc.exit_code)
    except KeyboardInterrupt:
        print("aios: interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `aios ... | head` closed the pipe: not worth a word
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # noqa: BLE001 - a plugin's failure, attributed; else a bug: one line
        error = blamed(exc)
        if error is not None:
            return _fail(args, str(error), error.exit_code)
        return _fail(args, f"{type(exc).__name__}: {exc} (run again with --debug for the "
                           "traceback)", 1)


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    """One `aios: error:` line on stderr; the traceback above it only with --debug."""
    if args.debug:
        traceback.print_exc()
    print(f"aios: error: {message}", file=sys.stderr)
    return code


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`aios: error: ...`, exit 2) that suggest close matches."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("aios").strip()
        message = _suggest_choice(message)
        self.exit(2, f"aios: error: {command + ': ' if command else ''}{message} "
                     f"(see `{self.prog} --help`)\n")


def _suggest_choice(message: str) -> str:
    """argparse's "invalid choice: 'x' (choose from ...)" with a "did you mean" added."""
    match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not match:
        return message
    close = suggest(match.group(1), re.findall(r"'([^']*)'", match.group(2)))
    return message + ("; did you mean " + " or ".join(close) + "?" if close else "")


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, name unknown options with the closest known ones, and merge the global options
    given after the command with those given before it."""
    args, extras = parser.parse_known_args(argv)
    command = getattr(args, "command_parser", parser)
    if extras:
        command.error(_unrecognized(extras, command))
    args.overrides = [*args.overrides, *getattr(args, "late_overrides", [])]
    return args


def _unrecognized(extras: list[str], command: argparse.ArgumentParser) -> str:
    known = [o for o in command._option_string_actions if o.startswith("--")]
    first = extras[0]
    if not first.startswith("-"):
        return f"unrecognized argument {first!r}" + (f" (and {len(extras) - 1} more)"
                                                     if len(extras) > 1 else "")
    close = suggest(first.split("=", 1)[0], known)[:1]
    return f"unrecognized option {first}" + (f"; did you mean {close[0]}?" if close else "")


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """`--config`, `--set` and `--debug`, on the top parser and on every command, so they may
    come before or after the command (`aios generate x --set a=b` = `aios --set a=b generate
    x`). On commands they default to "not given", so they never undo the earlier ones; a
    command that defines one of them itself keeps its own."""
    unset = {} if top else {"default": argparse.SUPPRESS}
    group = parser if top else parser.add_argument_group("global options (also before the "
                                                         "command)")
    taken = parser._option_string_actions
    if "--config" not in taken:
        group.add_argument("--config", metavar="FILE", **unset,
                           help="YAML config file (default: $AIOS_CONFIG, else built-in "
                                "defaults)")
    if "--set" not in taken:
        group.add_argument("--set", dest="overrides" if top else "late_overrides",
                           action="append", metavar="KEY=VALUE",
                           **({"default": []} if top else unset),
                           help="override one config value, e.g. --set sampler.steps=20 "
                                "(repeatable)")
    if "--debug" not in taken:
        group.add_argument("--debug", action="store_true",
                           **({"default": False} if top else unset),
                           help="show the traceback of a failure")
    if "--trust-code" not in taken:
        group.add_argument("--trust-code", action="store_true",
                           **({"default": False} if top else unset),
                           help="let config values and model files name Python code "
                                "(`module:function` schedules); off unless $AIOS_TRUST_CODE=1")


def _commands_of(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):
                found += [command, *_commands_of(command)]
    return found


def _with_global_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every command (at any depth) the global options, and remember which command was
    chosen, for the "did you mean" of an unknown option."""
    for command in _commands_of(parser):
        _add_global_options(command, top=False)
        command.set_defaults(command_parser=command)
    return parser


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="aios", description="Unified diffusion generation: text, images and audio.")
    parser.add_argument("--version", action="version", version=f"aios {_aios_version()}")
    _add_global_options(parser, top=True)
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
        "doctor", help="check the installation: versions, native extension, SIMD, load errors, "
                       "and the optional resources (corpora, programs, data sets) each "
                       "command needs")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.set_defaults(handler=_doctor)
    add_memory_commands(commands)

    generate = commands.add_parser(
        "generate", help="generate from a prompt with the configured head")
    generate.add_argument("prompt", help="the prompt (for image/audio heads: a class name); "
                                         "`-` reads prompts from stdin, one per line, and "
                                         "generates them as one batch")
    generate.add_argument("--modality", help="text, image or audio (default: the head's)")
    generate.add_argument("--steps", type=_positive_int,
                          help="number of sampler steps (default: config)")
    generate.add_argument("--seed", type=_seed, help="random seed for a reproducible output")
    generate.add_argument("--guidance-scale", type=float, help="classifier-free guidance scale")
    generate.add_argument("--sampler", metavar="NAME",
                          help="sampler to use (default: config; `aios plugins` lists them)")
    generate.add_argument("--length", type=_positive_int, metavar="N",
                          help="text: how many tokens to generate (default: the head's)")
    generate.add_argument("--infill", metavar="SUFFIX",
                          help="text: the text that must follow; the model fills the middle "
                               "between the prompt and SUFFIX")
    generate.add_argument("--option", dest="head_options", action="append", default=[],
                          metavar="NAME=VALUE",
                          help="any per-request option the head declares (its "
                               "`generation_options`; repeatable)")
    generate.add_argument("--stream", action="store_true",
                          help="text: show the output while it is denoised; image/audio: show "
                               "each step's progress")
    generate.add_argument("--memory", metavar="DIR",
                          help="guide the generation with what this memory store retrieves "
                               "for the prompt (fill it with `aios memory add`)")
    generate.add_argument("--show-memory", action="store_true",
                          help="print the retrieved passages and their scores on stderr")
    generate.add_argument("--remember", action="store_true",
                          help="store the prompt and the generation in the memory afterwards")
    generate.add_argument("--out", metavar="FILE",
                          help="write the output to FILE (image/audio default: aios-MODALITY"
                               ".png or .wav in the current directory; text default: stdout)")
    generate.add_argument("--grid", action="store_true",
                          help="image/audio: a labelled grid, one row per class the prompt "
                               "names (comma-separated; `all` for every class)")
    generate.add_argument("--adapters", nargs="+", metavar="NAME",
                          help="text: adapters to apply: `auto` (the router chooses per "
                               "prompt), `none`, or names, each optionally NAME:WEIGHT "
                               "(several: their outputs are mixed); default: the head's "
                               "`adapters` option")
    generate.add_argument("--explain", action="store_true",
                          help="text: print the model's uncertainty about the prompt and the "
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
    add_weights_commands(commands)
    add_evolve_commands(commands)
    add_serve_command(commands)
    return _with_global_options(parser)


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
        skipped = sum(f.stage != "clash" for f in registry.failures)
        print(f"\n{skipped} plugin(s) failed to load and were skipped, "
              f"{len(registry.failures) - skipped} registration(s) refused:")
        for failure in registry.failures:
            print(f"  - {failure}")


# -- aios config show --------------------------------------------------------------------------


def _config_show(args: argparse.Namespace) -> int:
    from aios.engine import head_runtime
    from aios.runtime import select_from_config

    registry = default_registry()
    config = _load(args, registry)
    data = config.as_dict()
    origins = dict(config.origins)
    # what each runtime `auto` took for the configured head (what its model can run), and why
    runtime = (select_from_config(config) if config.head.name == "auto" else
               head_runtime(registry, config, config.head.name, config.head.options))
    data["runtime"] = {"name": runtime.name, "device": runtime.device, "dtype": runtime.dtype,
                       "compile": runtime.compile}
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
        problems += [v.problem() for _, v in facts
                     if isinstance(v, OptionalResource) and v.problem()]
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
    registry = default_registry()
    entry = registry.get("recipe", args.name)
    metrics = _call_plugin(registry, entry, recipe=args.recipe,
                           out=args.out or f"runs/{args.name}", progress=True)
    _print_metrics(metrics)
    return 0


def _call_plugin(registry: Registry, entry: Registration, **kwargs: Any) -> Any:
    """Call a factory; what it raises (bar `AiosError`) is reported with its package."""
    try:
        return entry.factory(**kwargs)
    except (AiosError, KeyboardInterrupt):
        raise
    except (Exception, SystemExit) as exc:  # attributed, the cause kept for --debug
        raise PluginError(registry.origin(entry), exc) from exc


# -- aios eval --------------------------------------------------------------------------------


def _evaluate(args: argparse.Namespace) -> int:
    registry = default_registry()
    entry = registry.get("evaluator", args.name)
    _print_metrics(_call_plugin(registry, entry, model=args.model, baseline=args.baseline,
                                data=args.data, progress=True))
    return 0


def _print_metrics(metrics: Any) -> None:
    print(_table([("METRIC", "VALUE"), *((str(k), str(v)) for k, v in metrics.items())]))


# -- aios generate -----------------------------------------------------------------------------


#: Flags of `aios generate` that are per-request head options: dest -> (option, flag). A head
#: takes the options its `generation_options` names; the others are refused with the reason.
HEAD_OPTION_FLAGS = {"length": ("length", "--length"), "infill": ("suffix", "--infill"),
                     "adapters": ("adapters", "--adapters"), "explain": ("explain", "--explain")}


def _whole_number(text: str, minimum: int, bound: str) -> int:
    """An argparse value: an int of at least `minimum` (`bound` says so in the message)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole_number(text, 1, "at least 1")


def _seed(text: str) -> int:
    return _whole_number(text, 0, "0 or more")


def _generate(args: argparse.Namespace) -> int:
    from aios.engine import ArrowEngine

    registry = default_registry()
    prompt = _read_prompts() if args.prompt == "-" else args.prompt
    if args.grid and not isinstance(prompt, str):
        raise UsageError("--grid draws one row per class it names; give the classes as the "
                         "prompt (\"shirt,sneaker\" or all), not `-`")
    try:
        config = load_config(args.config, _generate_overrides(args, registry), registry)
    except ConfigError as exc:  # a bad --sampler or --modality is named by its flag
        flag = {"sampler.name": args.sampler, "generate.modality": args.modality}
        if exc.source == "--set" and flag.get(exc.key_path):
            name = "--" + exc.key_path.split(".")[0].replace("generate", "modality")
            raise UsageError(f"{name} {flag[exc.key_path]}: {exc.problem}; {exc.fix}") from None
        raise
    if args.memory is not None:
        _require_store(registry, config, args.memory)
    if config.sampler.steps < 1:
        raise ConfigError(config.origins.get("sampler.steps", "(config)"), "sampler.steps",
                          f"must be at least 1, got {config.sampler.steps}",
                          "set a positive number of steps, e.g. --set sampler.steps=20")
    requested = _requested_head_options(args)
    with ArrowEngine.from_config(config, registry=registry) as engine:
        # The head of the asked modality: the configured one may be pinned to another.
        head = engine.head_for(args.modality) if args.modality else engine.head
        options = _head_options(head, config, requested)
        if args.memory is not None:
            options["memory_guided"] = True
        if args.remember:
            options["remember"] = True
        rows = grid_rows(head, prompt) if args.grid else None
        if rows is not None:
            prompt = [r for r in rows for _ in range(GRID_COLUMNS)]
        elif not isinstance(prompt, str) and hasattr(head, "write"):
            rows = prompt  # a batch from stdin: one labelled row per prompt
        writes_files = hasattr(head, "write")  # images, audio: else the output is printed
        if args.remember and writes_files:
            raise UsageError(f"--remember does not apply to {head.modality} generation: the "
                             "memory stores text generations only")
        if args.stream and not writes_files and isinstance(prompt, str):
            output = _generate_streaming(engine, prompt, args, options)
        else:
            steps = args.steps or config.sampler.steps
            with _progress(prompt, head.modality, steps, always=args.stream) as advance:
                output = engine.diffuse(prompt, modality=args.modality, num_steps=args.steps,
                                        guidance_scale=args.guidance_scale, seed=args.seed,
                                        callback=advance, **options)
        if args.show_memory:  # on stderr, after the progress bar has gone
            _show_memory(engine.last_request)
        if args.explain:
            _explain(head)
        if writes_files or (args.out and not isinstance(output, (str, list))):
            for path in write_output(head, output, args.out, rows):
                print(path)
            return 0
    if isinstance(output, list):  # a batch: one generation per line
        output = "\n".join(str(o).replace("\n", " ") for o in output)
    if args.out:
        text = f"{output}\n".encode()
        write_atomic(args.out, lambda f: f.write(text))
        print(args.out)
        return 0
    print(output)
    return 0


def _read_prompts() -> list[str]:
    """`aios generate -`: one prompt per non-empty line of stdin."""
    prompts = [line.strip() for line in sys.stdin.read().splitlines() if line.strip()]
    if not prompts:
        raise UsageError("`aios generate -` reads prompts from stdin, one per line, and got "
                         "none; pipe them in, e.g. printf 'The LORD\\nA fool\\n' | aios "
                         "generate -")
    return prompts


def _generate_overrides(args: argparse.Namespace, registry: Registry) -> list[str]:
    """The config overrides `--sampler`, `--modality` and `--memory` stand for, each checked
    first so that a mistake is named by its flag."""
    overrides = list(args.overrides)
    if args.sampler:
        installed = registry.names("sampler")
        if args.sampler not in installed and ":" not in args.sampler:
            close = suggest(args.sampler, installed)
            raise UsageError(f"--sampler {args.sampler}: no sampler of that name is installed"
                             + (f"; did you mean {close[0]}?" if close else "")
                             + f"; installed samplers: {', '.join(installed) or 'none'}")
        overrides.append(f"sampler.name={args.sampler}")
    if args.modality:
        modalities = installed_modalities(registry)
        if args.modality not in modalities:
            raise UsageError(f"--modality {args.modality}: no installed pack generates "
                             f"{args.modality!r}; installed modalities: "
                             f"{', '.join(modalities) or 'none (install a modality pack)'}")
        overrides.append(f"generate.modality={args.modality}")
    if args.memory is not None:
        overrides.append(f"memory.path={args.memory}")
    return overrides


def _require_store(registry: Registry, config: Config, path: str) -> None:
    """Ask the selected backend whether a store exists at `path`: by contract a read-only open
    of anything else raises an `AiosError` and creates nothing."""
    from aios.engine import store_exists

    problem = store_exists(registry, config.memory.backend, path)
    if problem:
        raise ConfigError("--memory", "memory.path", f"no memory store at {path} ({problem})",
                          f"fill one first: aios memory add --path {path} FILE_OR_DIR...")


def installed_modalities(registry: Registry) -> list[str]:
    """The modalities the installed heads generate (each head factory's `modality`)."""
    found = (getattr(registry.get("head", n).factory, "modality", None)
             for n in registry.names("head"))
    return sorted({m for m in found if isinstance(m, str) and m})


def _requested_head_options(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    """option name -> (the flag that asked for it, value), from the flags and `--option`."""
    requested: dict[str, tuple[str, Any]] = {}
    for dest, (option, flag) in HEAD_OPTION_FLAGS.items():
        value = getattr(args, dest)
        if value is not None and value is not False:
            requested[option] = (flag, value)
    for item in args.head_options:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--option {item!r}: expected NAME=VALUE, e.g. --option length=32")
        requested[name.strip()] = (f"--option {name.strip()}", yaml.safe_load(value))
    return requested


def _head_options(head: Any, config: Config,
                  requested: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """The requested options the head declares in `generation_options`; any other is refused,
    saying why, rather than silently ignored."""
    declared = getattr(head, "generation_options", None) or {}
    for option, (flag, _) in requested.items():
        if option not in declared:
            takes = (f"it takes: {', '.join(declared)}" if declared
                     else "it takes no per-request options")
            raise UsageError(f"{flag} does not apply to {head.modality} generation: the "
                             f"{head.modality} head has no {option!r} option ({takes})")
    options = {option: value for option, (_, value) in requested.items()}
    if ({"adapters", "explain"} & options.keys() and "adapters_dir" in declared
            and config.evolve.adapters_dir is not None):
        options.setdefault("adapters_dir", config.evolve.adapters_dir)
    return options


@contextmanager
def _progress(prompt: Any, modality: str, steps: int, *, always: bool) -> Iterator[Any]:
    """A step counter on stderr while the sampler runs: a tqdm bar on a terminal (or with
    --stream, for heads whose partial output is not text); nothing when piped."""
    from tqdm.auto import tqdm

    count = 1 if isinstance(prompt, str) else len(prompt)
    what = f"{count} {modality} outputs" if count > 1 else modality
    with tqdm(desc=f"denoising {what}", total=steps, unit="step",
              disable=None if not always else False,
              leave=always, file=sys.stderr, dynamic_ncols=True) as bar:

        def advance(step: int, num_steps: int, state: Any) -> None:
            bar.total = num_steps
            bar.update(1)

        yield advance


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


def _generate_streaming(engine: Any, prompt: str, args: argparse.Namespace,
                        options: dict[str, Any]) -> Any:
    """Redraw the partial output after every step on stderr (stdout gets only the result)."""
    terminal = sys.stderr.isatty()

    def show(step: int, num_steps: int, partial: Any) -> None:
        line = f"[{step + 1}/{num_steps}] {partial}"
        if terminal:
            sys.stderr.write("\x1b[2K\r" + line.replace("\n", " "))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    output = engine.diffuse(prompt, modality=args.modality, num_steps=args.steps,
                            guidance_scale=args.guidance_scale, seed=args.seed, stream=show,
                            **options)
    if terminal:
        sys.stderr.write("\x1b[2K\r")
    return output


if __name__ == "__main__":
    raise SystemExit(main())
