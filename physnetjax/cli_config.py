"""Configuration files for every command-line tool: ``--config FILE`` and ``--print-config``.

One flat TOML file (read with the standard library's :mod:`tomllib`) holds any of a
command's options, one key per option::

    # run.toml
    data = ["frames.extxyz"]
    energy_unit = "kcal/mol"
    epochs = 200
    plots = false

    python -m physnetjax.train --config run.toml --epochs 400     # the command line wins

Rules, the same for ``train``, ``md``, ``check``, ``eval`` and each ``spectra`` subcommand:

* a key is the option's name with underscores (its argparse ``dest``: ``energy_unit``
  for ``--energy-unit``, ``no_plot`` for ``--no-plot``, ``plots`` for
  ``--plots/--no-plots``, ``checkpoint`` for check's positional); dashes are accepted too;
* value types follow the option: ``true``/``false`` for switches, integers, floats
  (an integer is accepted and converted), strings, and arrays for options taking several
  values; a choice must be one of the option's choices;
* options given on the command line override the file; a required option may be given
  in the file instead; relative paths are relative to the working directory, as on the
  command line (not to the file);
* ``verbose = true`` in a file sets the log level; the traceback of an error is printed
  only with ``--verbose`` on the command line (:mod:`physnetjax.cli_errors` decides before
  any file is read);
* an unknown key, a wrong type, a value outside the choices or a nested table is a
  :class:`~physnetjax.errors.PhysNetInputError` naming the file and the key (exit code 2,
  see :mod:`physnetjax.cli_errors`); so is a file that is not valid TOML;
* a path that turns out to be missing is reported by its option, ``--geometry g.xyz does
  not exist`` (``... (from --config FILE)`` for a file's value; see
  :func:`physnetjax.cli_errors.name_input`).

``--print-config`` writes a template to stdout: every option with its default (or, with
``--config FILE``, the file's value) and its help text as a comment; options without a
default are commented out. :func:`write_resolved_config` writes the same layout with the
values a run used into its output directory, so ``--config`` on that file repeats the run;
a run whose file would replace one another command (or a person) wrote there is refused
before any work (:func:`check_config_replaceable`), and so is an output directory holding
files of the command's output names without that file of an earlier run of the command
(:func:`check_outputs_replaceable`).

TOML has no null: an unset option (``None``) is written as a commented-out line and is
left out of a file to keep it unset.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import re
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Optional, Sequence

from physnetjax.cli_errors import name_input
from physnetjax.cli_help import ArgumentParser
from physnetjax.errors import OutputPathError, PhysNetInputError, PhysNetInputWarning, warn_caller
from physnetjax.jsonlines import replace_text

CONFIG_NAME = "config.toml"
"""File name of the resolved configuration in an output directory."""

_RESOLVED_TITLE = "Options used by this run of {command} (TOML)."
"""First line (after ``# ``) of a resolved configuration: names the command that wrote it."""

_NOT_KEYS = ("help", "config", "print_config")
_SWITCHES = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)
_VALUE_ACTIONS = (argparse._StoreAction, *_SWITCHES)
_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURAL_NAMES = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


class _PrintConfig(argparse.Action):
    """``--print-config``: print the template of the parser it belongs to and exit 0 (like ``--help``).

    ``shown_defaults`` (dest → value) stands in for the defaults of a parser whose
    options default to ``argparse.SUPPRESS`` (the trainer's, so that ``--resume`` sees
    which options were given).
    """

    def __init__(self, option_strings, dest, shown_defaults=None, **kwargs):
        kwargs.pop("default", None)
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)
        self.shown_defaults = dict(shown_defaults or {})

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(render(parser))
        parser.exit(0)


class _ConfigFile(argparse.Action):
    """``--config FILE``: accepted here, read before parsing by :func:`parse_args` (it stores nothing)."""

    def __init__(self, option_strings, dest, **kwargs):
        kwargs.pop("default", None)
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        pass


def add_config_options(parser: argparse.ArgumentParser, shown_defaults: dict | None = None) -> None:
    """Add ``--config FILE`` and ``--print-config`` to ``parser`` (parse it with :func:`parse_args`)."""
    parser.add_argument("--config", metavar="FILE", action=_ConfigFile,
                        help="read options from this TOML file (keys = option names with underscores); "
                             "options on the command line override it")
    parser.add_argument("--print-config", action=_PrintConfig, shown_defaults=shown_defaults,
                        help="print a commented TOML template of every option with its default and exit")


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` with the values of ``--config FILE`` as defaults.

    For a parser with subcommands, the file belongs to the chosen subcommand's parser.
    The file's keys become that parser's defaults (a required option given in the file is
    no longer required on the command line), so options on the command line win. Every
    string value is named by its option for the message of a missing file
    (:func:`physnetjax.cli_errors.name_input`).

    Raises:
      PhysNetInputError: the file is not TOML, a key is unknown or of the wrong type, or ``--config`` names two
        files.
      FileNotFoundError: the file does not exist.
    """
    argv = sys.argv[1:] if argv is None else [str(token) for token in argv]
    target, tokens = _chosen_parser(parser, argv)
    finder = ArgumentParser(prog=target.prog, add_help=False, allow_abbrev=target.allow_abbrev)
    finder.add_argument("--config", action="append")
    paths = finder.parse_known_args(tokens)[0].config or [None]
    if len(set(paths)) > 1:
        raise PhysNetInputError(f"--config is given {len(paths)} times ({', '.join(paths)}): one file is read, and "
                                "the others would be dropped without a word; merge them into one file, or give "
                                "the other values on the command line")
    path = paths[0]
    values: dict = {}
    if path is not None:
        name_input(path, f"--config {path}")
        values = read_config(target, path)
        defaults = {action.dest: action.default for action in target._actions}
        for action in target._actions:
            if action.dest in values:
                action.required = False
        target.set_defaults(**values)
        target.config_file_options = {dest: path for dest, value in values.items() if value != defaults.get(dest)}
    args = parser.parse_args(_joined_negative_numbers(target, argv))
    warn_repeated_options(target, _joined_negative_numbers(target, tokens))
    for action in options(target):
        value = getattr(args, action.dest, None)
        source = f" (from --config {path})" if action.dest in values and values[action.dest] == value else ""
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (str, os.PathLike)):
                name_input(item, f"{_flag(action)}{item}{source}")
    return args


_NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _joined_negative_numbers(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` with ``--option -1e9`` written ``--option=-1e9`` for the one-value options of ``parser``.

    argparse reads only ``-5`` and ``-0.5`` as negative numbers; ``--pressure -1e9`` was "expected one argument".
    """
    takes_one = {flag for action in parser._actions if action.option_strings and action.nargs is None
                 and isinstance(action, argparse._StoreAction) for flag in action.option_strings}
    joined: list[str] = []
    for token in argv:
        if joined and joined[-1] in takes_one and _NEGATIVE_NUMBER.fullmatch(token):
            joined[-1] = f"{joined[-1]}={token}"
        else:
            joined.append(token)
    return joined


class _RecordingNamespace(argparse.Namespace):
    """A namespace that records every value set to each name (argparse sets an option's dest once per occurrence)."""

    def __init__(self, names):
        object.__setattr__(self, "values_set", {})
        super().__init__(**{name: None for name in names})
        self.values_set.clear()

    def __setattr__(self, name, value):
        self.values_set.setdefault(name, []).append(value)
        super().__setattr__(name, value)


def warn_repeated_options(parser: argparse.ArgumentParser, tokens: list[str]) -> None:
    """Warn about an option given more than once on the command line ``tokens`` of ``parser`` (or two options that
    set the same value, e.g. ``--optimize --no-optimize``), naming the values and the one used: argparse keeps the
    last without a word, so ``--masses 12 16 16 --masses 13 16 16`` ran with the second. A warning, not an error:
    a later option overriding an earlier one is the usual way of a wrapper script or alias (a ``--config`` file,
    written by hand, refuses a key given twice). The same value given twice passes. (:func:`options` has no
    action that collects values, such as append or count, whose repetition would be meant.)
    """
    actions = options(parser)
    namespace = _RecordingNamespace(action.dest for action in actions)
    parser.parse_known_args(tokens, namespace)
    for action in actions:
        values = namespace.values_set.get(action.dest, [])
        if len(values) > 1 and any(value != values[-1] for value in values):
            flags = " / ".join(sorted({flag for other in actions if other.dest == action.dest
                                       for flag in other.option_strings if flag.startswith("--")}))
            shown = [" ".join(map(str, value)) if isinstance(value, list) else str(value) for value in values]
            warn_caller(f"{flags or action.dest} is given {len(values)} times ({'; '.join(shown)}): the last, "
                        f"{shown[-1]}, is used", PhysNetInputWarning)


def given_options(parser: argparse.ArgumentParser, argv=None) -> set[str]:
    """The dests of the options given on the command line ``argv`` (not those from a ``--config`` file or defaults).

    For checks of contradictory options, call it after :func:`parse_args` with the same
    ``parser`` and ``argv``: a config file (a ``--print-config`` template, a run's
    resolved config) lists every option, so its values do not count as given.
    """
    argv = sys.argv[1:] if argv is None else [str(token) for token in argv]
    target, tokens = _chosen_parser(parser, argv)
    unset = object()
    keys = options(target)
    probe = argparse.Namespace(**{action.dest: unset for action in keys})
    target.parse_known_args(_joined_negative_numbers(target, tokens), probe)
    return {action.dest for action in keys if getattr(probe, action.dest) is not unset}


def chosen_options(parser: argparse.ArgumentParser, argv=None) -> dict[str, Optional[str]]:
    """The options the user chose, after :func:`parse_args` with the same ``parser`` and ``argv``: dest → None for
    one given on the command line, or the path of the ``--config`` file that set it to another value than its default
    (a template or a run's resolved config lists every option, mostly at its default: those do not count). For the
    checks of options a choice leaves unused, whose messages name the file."""
    target, _ = _chosen_parser(parser, [str(token) for token in (sys.argv[1:] if argv is None else argv)])
    return {**getattr(target, "config_file_options", {}), **dict.fromkeys(given_options(parser, argv))}


@dataclasses.dataclass(frozen=True)
class OptionUse:
    """``option`` acts only when the option ``decider`` has one of ``values`` (with ``unused_at``: any value but
    those). Chosen (:func:`chosen_options`) where the decider's value leaves it unused, it is refused by
    :func:`refuse_unused_options`, not ignored.

    Attributes:
      option, decider: argparse dests.
      values: the decider's values under which ``option`` acts (with ``unused_at``: under which it does not).
      unused_at: whether ``values`` are those that leave ``option`` unused.
      note: where ``option`` acts, for the message (default: ``"langevin / npt only"`` from ``values``, nothing
        with ``unused_at``).
      remedy: what to do instead of removing ``option`` (default: choose a value of the decider that uses it, or
        leave the decider out).
    """

    option: str
    decider: str
    values: tuple
    unused_at: bool = False
    note: str = ""
    remedy: str = ""

    def acts_at(self, value) -> bool:
        return (value in self.values) != self.unused_at

    def where(self) -> str:
        """Where the option acts, for a message ("" for ``unused_at`` without a ``note``)."""
        return self.note or ("" if self.unused_at else f"{' / '.join(map(str, self.values))} only")


def refuse_unused_options(parser: argparse.ArgumentParser, args: argparse.Namespace, uses, chosen: dict) -> None:
    """Refuse the options in ``chosen`` (:func:`chosen_options`) that the values in ``args`` leave unused.

    One message per decider, naming its value (``(the default)`` when nobody chose it) and every option it leaves
    unused with where that option acts and the ``--config`` file that set it (said once after a run of options
    alike)::

        --ensemble nve (the default) does not use --friction (langevin only), --pressure (npt only): remove them
        or choose an --ensemble that uses them

    Args:
      parser: the parser the options belong to (a subcommand's parser for one), for the deciders' defaults.
      uses: :class:`OptionUse` records.

    Raises:
      PhysNetInputError: the first decider (in the order of ``uses``) that leaves chosen options unused.
    """
    unused: dict[str, list[OptionUse]] = {}
    for use in uses:
        if use.option in chosen and not use.acts_at(getattr(args, use.decider)):
            unused.setdefault(use.decider, []).append(use)
    for decider, found in unused.items():
        value = getattr(args, decider)
        named = f"--{decider.replace('_', '-')}"
        flag = named + ("" if value is True else f" {value:g}" if isinstance(value, float) else f" {value}")
        if decider not in chosen and value == parser.get_default(decider):
            flag += " (the default)"
        them = "it" if len(found) == 1 else "them"
        notes = [_parenthesised(use.where(), None if chosen[use.option] is None
                                else f"set in --config {chosen[use.option]}") for use in found]
        listed = ", ".join(f"--{use.option.replace('_', '-')}" + ("" if note == after else note)
                           for use, note, after in zip(found, notes, notes[1:] + [None]))
        remedies = {use.remedy or _remedy(use, named) for use in found}
        article = "an" if named[2] in "aeiou" else "a"
        remedy = remedies.pop() if len(remedies) == 1 else f"choose {article} {named} that uses {them}"
        raise PhysNetInputError(f"{flag} does not use {listed}: remove {them} or {remedy}")


def _parenthesised(*parts) -> str:
    """`` (a, b)`` of the parts that are not empty, "" without any."""
    shown = [part for part in parts if part]
    return f" ({', '.join(shown)})" if shown else ""


def _remedy(use: OptionUse, named: str) -> str:
    """The default remedy of an :class:`OptionUse`: choose the decider's value that uses it, or leave it out."""
    if use.unused_at or use.values == (None,):
        return f"leave out {named}"
    return f"choose {named} {' / '.join(map(str, use.values))}"


def read_config(parser: argparse.ArgumentParser, path) -> dict:
    """The options in the TOML file ``path`` for ``parser``, as dest → value (converted like the command line).

    Raises:
      PhysNetInputError: a directory, invalid TOML or UTF-8, an unknown key (with the
        closest known ones), a key given twice (dashes and underscores), a nested table,
        a wrong type or choice.
      FileNotFoundError: no such file.
    """
    if Path(path).is_dir():
        raise PhysNetInputError(f"--config {path} is a directory, not a TOML file")
    try:
        document = tomllib.loads(Path(path).read_bytes().decode("utf-8-sig"))  # a byte-order mark (Windows) passes
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PhysNetInputError(f"{path}: not a valid TOML file ({error})") from error
    actions = {action.dest: action for action in options(parser)}
    values: dict = {}
    for key, value in document.items():
        dest = key.replace("-", "_")
        if isinstance(value, dict):
            raise PhysNetInputError(f"{path}: key {key!r} is a table ([{key}]); config files are flat, "
                                    "one key per option")
        if dest not in actions:
            close = difflib.get_close_matches(dest, actions, n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise PhysNetInputError(f"{path}: unknown key {key!r}: not an option of {parser.prog}{hint} "
                                    f"({parser.prog} --print-config lists them all)")
        if dest in values:
            raise PhysNetInputError(f"{path}: key {key!r} is given twice (as {dest!r} and with dashes)")
        values[dest] = _converted(actions[dest], value, f"{path}: key {key!r}")
    return values


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The actions of ``parser`` that are configuration keys (all but help, --config, --print-config).

    Raises:
      TypeError: an action kind a config file cannot express (append, count, store_const):
        extend this module before adding one to a parser.
    """
    found = []
    for action in parser._actions:
        if action.dest in _NOT_KEYS or isinstance(action, (argparse._SubParsersAction, argparse._HelpAction)):
            continue
        if not isinstance(action, _VALUE_ACTIONS):
            raise TypeError(f"{parser.prog}: option {action.dest!r} is a {type(action).__name__}, "
                            "which config files do not support")
        found.append(action)
    return found


def render(parser: argparse.ArgumentParser, values: dict | None = None, resolved: bool = False) -> str:
    """TOML text of every option of ``parser``: help text as comment, then ``key = value``.

    ``values`` (dest → value) take precedence over the parser's defaults; a value of
    None (unset) is a commented-out line. ``resolved`` changes the header from template
    to record of a run.
    """
    values = {} if values is None else values
    command = parser.prog
    if resolved:
        header = [_RESOLVED_TITLE.format(command=command),
                  f"Repeat it with: {command} --config THIS_FILE  (command-line options override the file).",
                  f"Relative paths are relative to the directory it ran in: {Path.cwd()}"]
    else:
        header = [f"Configuration of {command} (TOML); use it with: {command} --config FILE",
                  "Keys are the option names with underscores (dashes work too); options on the command",
                  "line override the file. A commented-out key is unset: give a value to set it."]
    lines = [f"# {line}" for line in header]
    shown = _shown_defaults(parser)
    for action in options(parser):
        lines.append("")
        help_text = " ".join(_help(parser, action).split())
        if action.required:
            help_text += " [required: here or on the command line]"
        if help_text:
            lines += textwrap.wrap(help_text, width=100, initial_indent="# ", subsequent_indent="# ")
        if action.dest in values:
            value = values[action.dest]
        elif action.default is not argparse.SUPPRESS:
            value = action.default
        elif action.dest in shown:
            value = shown[action.dest]
        else:
            value = False if isinstance(action, _SWITCHES) else None
        if value is None:
            lines.append(f"# {action.dest} = {_placeholder(action)}")
        else:
            lines.append(f"{action.dest} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def check_config_replaceable(parser: argparse.ArgumentParser, path, what: str = "--out") -> None:
    """Refuse, before any work, a run whose resolved config would replace a file its command did not write.

    ``path`` is where :func:`write_resolved_config` will write (``OUT/config.toml``, md's
    ``OUT.config.toml``). An output directory holds one tool's outputs: ``eval --out RUN``
    into a training run would replace the trainer's ``config.toml`` with eval's options, and
    ``train --config RUN/config.toml`` would then fail on eval's keys; a hand-written file
    there would be lost. A resolved config of the same command (a rerun) is replaced; the
    writer is read from its first line.

    Raises:
      OutputPathError: ``path`` exists and was written by another command (named) or by none.
    """
    path = Path(path)
    if not path.is_file():
        return
    writer = config_writer(path)
    if writer == parser.prog:
        return
    held = f"the options of a run of {writer}" if writer is not None else "a file no physnetjax run wrote"
    raise OutputPathError(f"{what}: {path} holds {held}; this run of {parser.prog} would replace it with its own "
                          f"options: choose another {what}")


def config_writer(path) -> Optional[str]:
    """The command (``python -m physnetjax.eval``, ...) whose resolved config the file ``path`` is, read from its first
    line; None for a file no run wrote, or none at all."""
    try:
        with Path(path).open("rb") as stream:
            first = stream.readline(500).decode("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return None
    writer = re.fullmatch(re.escape(f"# {_RESOLVED_TITLE}").replace(r"\{command\}", "(.+)"), first)
    return None if writer is None else writer.group(1)


def check_outputs_replaceable(parser: argparse.ArgumentParser, directory, names: Sequence[str],
                              what: str = "--out") -> None:
    """Refuse, before any work, an output ``directory`` that holds files of the ``names`` the command writes there
    but no earlier run of the command (whose resolved ``config.toml``, written before its outputs, would be there).

    ``spectra ir --out .`` in a folder holding the user's own (experimental) ``spectrum.csv`` removed it and wrote
    the MD spectrum in its place; a rerun into the same ``--out`` replaces its outputs as before. Call it after
    :func:`check_config_replaceable` (which refuses the config of another command).

    Raises:
      OutputPathError: naming the files.
    """
    directory = Path(directory)
    held = [name for name in names if os.path.lexists(directory / name)]
    if held and config_writer(directory / CONFIG_NAME) != parser.prog:
        raise OutputPathError(f"{what} {directory} holds {', '.join(held)} but no earlier run of {parser.prog} (no "
                              f"{CONFIG_NAME} of it): this run would replace them; choose another {what}, or move "
                              "them out of it")


def write_resolved_config(parser: argparse.ArgumentParser, values, path) -> Path:
    """Write the options a run used (``values``: a dict or Namespace, dest → value) as TOML to ``path``."""
    values = vars(values) if isinstance(values, argparse.Namespace) else values
    path = Path(path)
    replace_text(path, render(parser, values, resolved=True))
    return path


def _chosen_parser(parser, argv):
    """(parser the options belong to, their tokens): the subcommand's parser when ``parser`` has subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for index, token in enumerate(argv):
                if token in action.choices:
                    return action.choices[token], argv[index + 1:]
    return parser, argv


def _flag(action) -> str:
    """``--option `` of an optional argument ("" for a positional one, whose value names itself)."""
    return f"{max(action.option_strings, key=len)} " if action.option_strings else ""


def _shown_defaults(parser) -> dict:
    for action in parser._actions:
        if isinstance(action, _PrintConfig):
            return action.shown_defaults
    return {}


def _element_type(action):
    if isinstance(action, _SWITCHES):
        return bool
    return action.type if action.type is not None else str


def _is_list(action) -> bool:
    return not isinstance(action, _SWITCHES) and (action.nargs in ("+", "*") or isinstance(action.nargs, int))


def _help(parser, action) -> str:
    if not action.help or action.help is argparse.SUPPRESS:
        return ""
    try:
        return action.help % dict(vars(action), prog=parser.prog)
    except (KeyError, TypeError, ValueError):
        return action.help


def _placeholder(action) -> str:
    kind = _element_type(action)
    name = {bool: "true|false", int: "<integer>", float: "<number>"}.get(kind, '"<string>"')
    if isinstance(action.metavar, str) and kind is str:
        name = f'"<{action.metavar}>"'
    if action.choices is not None:
        name = "|".join(json.dumps(c) for c in action.choices)
    return f"[{name}, ...]" if _is_list(action) else name


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) to a TOML config file")


def _describe(value) -> str:
    kinds = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}
    return f"{json.dumps(value, default=str)} ({kinds.get(type(value), type(value).__name__)})"


def _converted(action, value, where: str):
    """``value`` from the file for ``action``, converted as the command line would; PhysNetInputError if not."""
    kind = _element_type(action)
    if _is_list(action):
        if not isinstance(value, list):
            raise PhysNetInputError(f"{where} must be an array of {_PLURAL_NAMES.get(kind, 'strings')} "
                                    f"(e.g. [{_placeholder_element(kind)}]), received {_describe(value)}")
        if action.nargs == "+" and not value:
            raise PhysNetInputError(f"{where} needs at least one value, received []")
        return [_converted_scalar(action, kind, item, where) for item in value]
    return _converted_scalar(action, kind, value, where)


def _placeholder_element(kind) -> str:
    return {int: "1", float: "1.0"}.get(kind, '"..."')


def _converted_scalar(action, kind, value, where: str):
    expected = _TYPE_NAMES.get(kind, "a string")
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
        if ok and kind is not str:
            try:
                value = kind(value)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
                raise PhysNetInputError(f"{where}: invalid value {value!r} ({error})") from error
    if not ok:
        raise PhysNetInputError(f"{where} must be {expected}, received {_describe(value)}")
    if action.choices is not None and value not in action.choices:
        raise PhysNetInputError(f"{where} must be one of {list(action.choices)}, received {_describe(value)}")
    return value
