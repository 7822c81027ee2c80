"""Command-line parsers whose errors are one line: a bad option or value becomes a
:class:`~lightning_nas.errors.UserError` (printed as ``error: ...``, exit 2) instead of
jsonargparse's usage dump. Used by every subcommand, LightningCLI's included."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, Callable, NoReturn, Optional

from jsonargparse import ArgumentParser, set_parsing_settings

from lightning_nas.errors import UserError, user_error_in

PROG = "python -m lightning_nas"

# --help shows the attribute docstrings of the config dataclasses (Budget, Sampling, AnalogConfig, ...).
set_parsing_settings(docstring_parse_attribute_docstrings=True)


NESTED_ARG = re.compile(r"NestedArg\(key='([^']+)', val='(.*)'\)")
"""How jsonargparse shows an ``--x.init_args.KEY VALUE`` it could not apply."""


def one_line(message: str, limit: int = 300) -> str:
    """A parser message (jsonargparse nests several lines) as one line; a rejected value reads
    ``invalid value 'abc' for trainer.max_epochs (expected int)``, a class given by
    ``class_path`` that can't be used ``search.strategy: pkg.Name: No module named 'pkg'``."""
    keys = list(re.finditer(r'Parser key "([^"]+)"', message))
    first = keys[0].group(1) if keys else "value"
    inner = keys[-1] if keys else None  # a nested class's own parser names its field last
    value = re.search(r"(?:Given|Got) value: (.*)", message[inner.start():]) if inner else None
    problem = re.search(r"Problem with given class_path '([^']+)':\s*(.*?)(?=\n\s*- |\n\s*Given value|\Z)", message, re.S)
    not_a = re.search(r"Import path (?:(\S+) )?(does not (?:correspond to a subclass of|implement protocol) \w+)", message)
    nested = NESTED_ARG.search(message)
    plain = re.search(r"(?:Expected a dot import path string|Unexpected import path format): (.+)", message)
    if problem and "Parser key" not in problem.group(2):
        path, reason = problem.group(1), re.sub(r"\s+", " ", problem.group(2)).strip()
        rejected = re.fullmatch(r"Option '([^']+)' is not accepted", reason)
        text = f"unknown option {first}.init_args.{rejected.group(1)}" if rejected else f"{first}: {path}: {reason}"
    elif not_a:  # a union names the class only as the given value
        text = f"{first}: {not_a.group(1) or (value.group(1).strip() if value else '')} {not_a.group(2)}"
    elif nested and plain:  # --predictor DIR --predictor.init_args.x 1 (or a mapping whose class can't be imported)
        text = (f"--{first}.init_args.{nested.group(1)} applies to a {first} given as {{class_path, init_args}}, "
                f"but {first} is {plain.group(1).strip()!r}")
    elif inner and value:
        bullet = re.search(r"\n( *)- Problem with given class_path", message)  # a union's class alternative
        end = message.find(f"\n{bullet.group(1)}- ", bullet.end()) if bullet and bullet.start() < inner.start() else -1
        expected = re.findall(r"Expected an? <class '([\w.]+)'>", message[inner.start():end if end > 0 else None])
        where, given = inner.group(1), value.group(1).strip()
        if len(keys) > 1 and keys[0].group(1) != where:
            where = f"{keys[0].group(1)}.init_args.{where}"
        nested_value = NESTED_ARG.fullmatch(given)
        if nested_value:  # --model.init_args.lr xyz is reported against "model"
            where, given = f"{where}.init_args.{nested_value.group(1)}", nested_value.group(2)
        rejected = re.search(r"Option '([^']+)' is not accepted", message)
        if rejected:
            text = f"unknown option {where.rsplit('.init_args.', 1)[0]}.init_args.{rejected.group(1)}"
        else:
            names = [e for e in dict.fromkeys(expected) if e != "NoneType"]  # "or None" says nothing of what was wrong
            text = f"invalid value {given!r} for {where}" + (f" (expected {' or '.join(names)})" if names else "")
    else:
        text = re.sub(r"\s+", " ", message).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ParserError(UserError, argparse.ArgumentError):
    """A bad option or value. Also an ``ArgumentError``: jsonargparse catches those while it tries
    the alternatives of a type (a class path, a union), so its own error handling keeps working."""

    def __init__(self, message: str) -> None:
        argparse.ArgumentError.__init__(self, None, message)

    def __str__(self) -> str:
        return self.message


class OneLineErrors:
    """Mixin for a jsonargparse parser: ``error()`` raises one :class:`UserError` line."""

    def error(self, message: str, ex: Optional[Exception] = None) -> NoReturn:
        if not self.exit_on_error:  # jsonargparse tries alternatives internally: keep its behaviour
            super().error(message, ex)  # type: ignore[misc]
        cause = user_error_in(ex) if ex is not None else None
        prog = self.prog.replace(" [options]", "")  # type: ignore[attr-defined]
        if cause is not None:
            raise ParserError(str(cause))
        sub = re.search(r"Subcommand '([^']+)'", message)
        if sub and not prog.endswith(f" {sub.group(1)}"):
            prog = f"{prog} {sub.group(1)}"  # the help that lists the subcommand's options
        raise ParserError(f"{one_line(message)}{self._suggestion(message)} (see {prog} --help)")

    switchable: Optional[dict[str, Callable[[str], str]]] = None
    """The options selected by class and how a name given for each becomes a class path
    (:func:`with_class_choices`); None: :data:`SWITCHABLE`."""

    def parse_args(self, args: Any = None, *pargs: Any, **kwargs: Any) -> Any:
        self._args = list(args) if args is not None else sys.argv[1:]  # for errors: which config file said it
        return super().parse_args(with_class_choices(self._args, self.switchable), *pargs, **kwargs)  # type: ignore[misc]

    def _suggestion(self, message: str) -> str:
        """The one did-you-mean of every parser: ``; did you mean --trainer.max_epochs?`` for a
        mistyped option on the command line, and for a mistyped key of a config file the file and
        line it is on with the nearest known key."""
        import difflib

        unknown = re.findall(r"(--[\w.\-]+)", message) if "nrecognized arguments" in message else []
        known = list(getattr(self, "_option_string_actions", {}))
        for option in unknown:
            close = difflib.get_close_matches(option, known, n=1, cutoff=0.75)
            if close:
                return f"; did you mean {close[0]}?"
        key, parser = unknown_key(message, self)
        if key is None:
            return ""
        owner = re.search(r"class_path '([\w.]+)':\s*Option '([^']+)' is not accepted", message)
        group = re.search(r'Parser key "([^"]+)"', message)
        if owner and group:  # an argument of a class given by class_path: its own parameters
            close = difflib.get_close_matches(owner.group(2), init_parameters(owner.group(1)), n=1, cutoff=0.75)
            return f"; did you mean --{group.group(1)}.init_args.{close[0]}?" if close else ""
        options = [o[2:] for o in getattr(parser, "_option_string_actions", {}) if o.startswith("--")]
        close = difflib.get_close_matches(key, options, n=1, cutoff=0.75)
        where = config_file_of(key, getattr(self, "_args", []))
        return (f"; did you mean {close[0]}?" if close else "") + (f" ({where})" if where else "")


def config_files(args: list[str]) -> dict[int, tuple[int, str]]:
    """The ``--config FILE`` / ``--config=FILE`` (LightningCLI's ``-c FILE`` too) arguments of
    ``args``: position -> (how many arguments it takes, the file's path)."""
    found = {}
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            found[i] = (2, args[i + 1])
        elif arg.startswith("--config="):
            found[i] = (1, arg.split("=", 1)[1])
    return found


def read_config(path: str) -> Any:
    """The content of a config file, or None when it can't be read (the parser says what is wrong)."""
    import yaml

    try:
        with open(path) as f:
            return yaml.safe_load(f.read())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


SWITCHABLE: dict[str, Callable[[str], str]] = {"data": str, "model": str}
"""Options selected by class (``class_path``) whose arguments never carry over to another class, each
with the function that makes a name given for it a class path (LightningCLI's: the name as given;
``search``'s strategy: :func:`~lightning_nas.search.strategies.class_path_of`)."""


def with_class_choices(args: list[str], switchable: Optional[dict[str, Callable[[str], str]]] = None) -> list[str]:
    """``args`` as jsonargparse should read the classes they choose for the :data:`SWITCHABLE` keys
    (or ``switchable``'s):

    * a class given on the command line by a name (``--search.strategy tpe``, ``--search.strategy.help
      tpe``, the class_path of a ``'{class_path: tpe, ...}'`` mapping) is given by its class path;
    * ``--KEY=null`` goes before each class the command line gives that differs from the class the
      config files (or options) before it chose: the new class starts from its own defaults.
      jsonargparse keeps the arguments two classes share when ``class_path`` changes, so ``--config
      configs/kws/fit.yaml --data.class_path DigitsDataModule`` trained digits in KWS's batches of
      100; the same class given again keeps the file's arguments;
    * a ``--KEY.init_args.NAME`` given before the command line's last class for KEY moves after it:
      the arguments are the chosen class's, whatever their order."""
    import yaml

    from lightning_nas.classpath import checked_mapping

    switchable = SWITCHABLE if switchable is None else switchable

    def names_class(value: Any) -> bool:
        """Whether ``value`` names a class (not a file to merge, null or a mapping of arguments)."""
        return isinstance(value, str) and value not in ("", "null") and not value.endswith((".yaml", ".yml", ".json"))

    def class_path(key: str, value: Any) -> Any:
        """``value`` (a name, a path or a mapping with class_path) with its class as a class path."""
        if isinstance(value, dict) and isinstance(value.get("class_path"), str):
            return {**value, "class_path": switchable[key](value["class_path"])}
        return switchable[key](value) if names_class(value) else value

    def class_of(key: str, value: Any) -> Optional[str]:
        """The class ``value`` chooses, if it chooses one."""
        value = class_path(key, value)
        value = value.get("class_path") if isinstance(value, dict) else value
        return value.rsplit(".", 1)[-1] if names_class(value) else None

    def in_file(content: Any, key: str) -> Any:
        for part in key.split("."):
            content = content.get(part, Ellipsis) if isinstance(content, dict) else Ellipsis
        return content

    current: dict[str, Optional[str]] = {}
    last_choice: dict[str, list[str]] = {}  # key -> the unit of the command line's last class for it
    units: list[list[str]] = []
    files = config_files(args)
    for i, unit in option_units(args):
        if i in files:
            content = read_config(files[i][1])
            for key in switchable:
                found = in_file(content, key)
                if found is not Ellipsis:
                    current[key] = class_of(key, found)
        for key in switchable:
            option, eq, inline = unit[0].partition("=")
            if option not in (f"--{key}", f"--{key}.class_path", f"--{key}.help") or not (eq or len(unit) == 2):
                continue
            text = inline if eq else unit[1]
            value: Any = text
            if option == f"--{key}" and text.lstrip().startswith("{"):
                try:
                    value = checked_mapping(yaml.safe_load(text), key)
                except yaml.YAMLError:
                    continue  # the parser says what is wrong with it
            given = class_path(key, value)
            if given != value:
                text = yaml.safe_dump(given, default_flow_style=True, width=10 ** 6).strip() if isinstance(given, dict) else given
                unit = [f"{option}={text}"] if eq else [option, text]
            if option == f"--{key}.help":
                break
            chosen = class_of(key, value)
            if chosen is not None:
                if current.get(key) is not None and chosen != current[key]:
                    units.append([f"--{key}=null"])
                current[key] = chosen
                last_choice[key] = unit
        units.append(unit)
    for key, choice in last_choice.items():  # init_args between the last config file and the choice follow it
        at = next(n for n, u in enumerate(units) if u is choice)
        after_files = max((n + 1 for n, u in enumerate(units[:at]) if u[0] in ("--config", "-c")
                           or u[0].startswith("--config=")), default=0)
        early = [u for u in units[after_files:at] if u[0].startswith(f"--{key}.init_args.")]
        units = units[:after_files] + [u for u in units[after_files:at] if not any(u is e for e in early)] + \
            [choice] + early + units[at + 1:]
    return [token for unit in units for token in unit]


def option_units(args: list[str]) -> list[tuple[int, list[str]]]:
    """``args`` as (index of its first token, tokens) units: an option with its value (``--x 1``), an
    option with ``=`` or without a value (``--x=1``, ``--print_config``), or a positional argument."""
    units: list[tuple[int, list[str]]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        takes_next = arg.startswith("--") and "=" not in arg and i + 1 < len(args) and not args[i + 1].startswith("--")
        units.append((i, args[i:i + 2] if takes_next else [arg]))
        i += 2 if takes_next else 1
    return units


def init_parameters(class_path: str) -> list[str]:
    """The ``__init__`` parameter names of the class at ``class_path`` (none when it can't be imported)."""
    import importlib
    import inspect

    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
        return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")]
    except (ImportError, AttributeError, ValueError, TypeError):
        return []


def unknown_key(message: str, parser: Any) -> tuple[Optional[str], Any]:
    """The dotted key a jsonargparse "does not accept option" / "is not accepted" message names, and
    the parser whose options it should have been (a subcommand's own, for LightningCLI)."""
    found = re.search(r"(Group|Subcommand) '([^']+)' does not accept option '([^']+)'", message)
    if found:
        kind, name, key = found.groups()
        if kind == "Group":
            return f"{name}.{key}", parser
        action = getattr(parser, "_subcommands_action", None)
        return key, (getattr(action, "choices", {}) or {}).get(name, parser)
    found = re.search(r"Option '([^']+)' is not accepted", message)
    return (found.group(1), parser) if found else (None, parser)


def config_file_of(key: str, args: list[str]) -> str:
    """``FILE line N`` of the last ``--config FILE`` in ``args`` that sets the dotted ``key``, or ""."""
    import yaml

    for _, path in reversed(list(config_files(args).values())):
        try:
            node = yaml.compose(open(path).read())
        except (OSError, yaml.YAMLError):
            continue
        for part in key.split("."):
            if not isinstance(node, yaml.MappingNode):
                node = None
                break
            node_for = {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
            if part not in node_for:
                node = None
                break
            key_node, node = node_for[part]
        if node is not None:
            return f"{path} line {key_node.start_mark.line + 1}"
    return ""


CONFIG_PATHS: dict[str, tuple[str, ...]] = {
    "build-dataset": ("fit_config", "store", "campaign_dir", "export"),
    "fit-surrogate": ("data", "out_dir"),
    "search": ("predictor", "out_dir"),
    "search-loop": ("campaign", "search", "surrogate", "store", "out_dir"),
    "retrain": ("fit_config", "winners", "out_dir"),
}
"""The options of each subcommand that are file or folder paths: a relative path a config file gives
for one of them is relative to that file's folder (:func:`with_config_paths`)."""


class CommandParser(OneLineErrors, ArgumentParser):
    """The parser of a ``python -m lightning_nas`` subcommand (``prog`` names it); its path options
    (:data:`CONFIG_PATHS`) read a config file's relative paths relative to that file."""

    def __init__(self, *args: Any, command: Optional[str] = None,
                 switchable: Optional[dict[str, Callable[[str], str]]] = None, **kwargs: Any) -> None:
        if command is not None:  # jsonargparse makes nested parsers of this class with its own arguments
            kwargs.setdefault("prog", f"{PROG} {command}")
        self.path_options = CONFIG_PATHS.get(command or "", ())
        self.switchable = switchable
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Any = None, *pargs: Any, **kwargs: Any) -> Any:
        args = list(args) if args is not None else sys.argv[1:]
        return super().parse_args(with_config_paths(args, self.path_options), *pargs, **kwargs)


def with_config_paths(args: list[str], keys: tuple[str, ...]) -> list[str]:
    """The one rule for paths: a relative path a config file gives for one of ``keys`` is relative to
    that config file's folder; a path on the command line stays relative to the current directory.

    ``args`` with ``--KEY=PATH`` inserted right after each ``--config FILE`` for each of ``keys`` that
    FILE sets to a relative path, PATH being ``FILE's folder / path`` normalised (``configs/digits/`` +
    ``../../surrogates/digits`` is ``surrogates/digits``). Options after it still override it, as
    they override the file; ``--print_config`` and every message show the resolved path. Absolute
    paths, ``null`` and non-strings are left as they are; a file that can't be read is left to the
    parser's own error."""
    if not keys:
        return args
    import os

    files = config_files(args)
    out: list[str] = []
    i = 0
    while i < len(args):
        if i not in files:
            out.append(args[i])
            i += 1
            continue
        taken, path = files[i]
        out += args[i:i + taken]
        i += taken
        content = read_config(path)
        folder = os.path.dirname(path)
        for key in keys:
            value: Any = content
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, str) and value and not os.path.isabs(value):
                out.append(f"--{key}={os.path.normpath(os.path.join(folder, value))}")
    return out


FIT_SECTIONS = ("data", "model", "trainer", "drift", "seed_everything")
"""The top-level options of ``fit`` that commands training through a fit config pass on to it."""


def take_fit_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take ``fit``'s own options (``--data.init_args.data_dir X``, ``--trainer.max_epochs=3``, ...:
    :data:`FIT_SECTIONS`) out of a command's ``argv``: returns the other arguments and those options,
    for the command's fit config (``build-dataset`` and ``retrain`` train through one)."""
    rest: list[str] = []
    taken: list[str] = []
    i = 0
    while i < len(argv):
        option = argv[i].partition("=")[0]
        if not any(option == f"--{s}" or option.startswith(f"--{s}.") for s in FIT_SECTIONS):
            rest.append(argv[i])
            i += 1
        elif "=" in argv[i]:
            taken.append(argv[i])
            i += 1
        elif i + 1 < len(argv):
            taken += argv[i:i + 2]
            i += 2
        else:
            raise ParserError(f"option {option} needs a value")
    return rest, taken
