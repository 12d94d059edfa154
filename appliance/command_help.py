"""How every `mcnn-appliance` command's help reads, at any terminal width and without a terminal.

Help is click's plain layout (`rich_markup_mode=None`): it wraps to the width it is given and never
cuts a line, where Typer's rich panels cut cells at a narrow COLUMNS. Each value is shown by its
metavar (PATH, HxW, I/N) or its choices ([f32|bf16|int8]), never Typer's `<str>` or `<list[Path]>`;
flags show no value; `-h` is `--help`; the command list shows each command's whole first sentence.
Typer has no setting for its parameter classes, so Command gives its parameters ours when built.
"""

from __future__ import annotations

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

CONTEXT = {"help_option_names": ["-h", "--help"]}
TYPE_NAMES = {"path": "PATH", "int": "INTEGER", "float": "NUMBER", "str": "TEXT"}


def value_name(param, ctx) -> str:
    """The metavar, else the choices, else the kind of value (PATH, INTEGER, NUMBER, TEXT)."""
    if param.metavar:
        return param.metavar
    if param.type_descriptor.is_choice:
        return "[" + "|".join(str(c) for c in param.type_descriptor.choices) + "]"
    label = param.display_type(ctx).strip("<>")  # Typer's <int>, <path>, <list[Path]>
    return TYPE_NAMES.get(label.removeprefix("list[").removesuffix("]"), label.upper())


class HelpFormatter(typer.Context.formatter_class):  # click's, as Typer vendors it
    def write_dl(self, rows, col_max: int = 30, col_spacing: int = 2) -> None:
        """Options and their help side by side; in a narrow terminal the name column narrows (a longer name
        then stands on its own line) so the help beside it keeps a readable width."""
        super().write_dl(rows, col_max=min(col_max, max(12, self.width // 3)), col_spacing=col_spacing)


class Context(typer.Context):
    formatter_class = HelpFormatter


class Argument(TyperArgument):
    def display_type_rich(self, ctx):
        return None  # the name says it: PLATE..., RUN

    def _rich_display_name(self) -> str:
        return self.metavar or self.name.upper() + ("..." if self.nargs != 1 else "")

    def _usage_display_name(self) -> str:
        name = self._rich_display_name()
        return name if self.required else f"[{name}]"


class Option(TyperOption):
    def display_type_rich(self, ctx):
        return None if self.is_flag else value_name(self, ctx)


class Command(TyperCommand):
    context_class = Context

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = Argument
            elif type(param) is TyperOption:
                param.__class__ = Option


class Group(TyperGroup):
    context_class = Context

    def format_commands(self, ctx: typer.Context, formatter: HelpFormatter) -> None:
        """Each command with the first paragraph of its help, wrapped rather than cut short with '...'."""
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, (command.help or "").split("\n\n")[0].replace("\n", " ").strip()))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def commands_app(**settings) -> typer.Typer:
    """A Typer app whose commands read as described above; give each command `cls=Command`."""
    return typer.Typer(cls=Group, rich_markup_mode=None, context_settings=CONTEXT, **settings)


def example(*lines: str) -> str:
    """An epilog of example command lines, kept as written (click's \\b: not rewrapped)."""
    return "\b\nExample:\n" + "\n".join(f"  {line}" for line in lines)
