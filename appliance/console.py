"""What every `mcnn-appliance` command shares: where it prints, how it fails, and its exit codes.

Messages go to stderr and are never hard-wrapped (soft_wrap), so an error naming a file reads
whole in a terminal of any width and in a log; results and tables go to stdout.
"""

from __future__ import annotations

import contextlib
import importlib.metadata

import typer
from rich.console import Console
from rich.markup import escape

# Exit codes: everything done / some of it failed (or was stopped) / nothing could run.
EXIT_OK, EXIT_SOME_FAILED, EXIT_NOTHING_RAN = 0, 1, 2

# The optional packages behind the torch-side commands, and the extra that installs each.
EXTRAS = {
    "torch": "train",
    "safetensors": "train",
    "onnx": "export",
    "onnxruntime": "export",
    "onnxscript": "export",
    "nncf": "export",
}

console = Console(stderr=True, soft_wrap=True)


def error(message: str) -> None:
    console.print(f"[red]error:[/] {escape(str(message))}", highlight=False)


def fail(message: str, code: int = EXIT_NOTHING_RAN) -> typer.Exit:
    """Print the error and return the Exit to raise: `raise fail(...) from None`."""
    error(message)
    return typer.Exit(code)


@contextlib.contextmanager
def extra_needed(command: str):
    """Around a command's import of its torch-side code: a missing extra exits 2 naming it."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRAS:
            raise
        raise fail(f"`mcnn-appliance {command}` needs {top}: pip install 'mcnn-appliance[{EXTRAS[top]}]'") from None


def print_table(table) -> None:
    """A table on stdout at no less than its natural width: no cell is cut short to fit a narrow terminal
    or COLUMNS (a table wider than the terminal wraps there, whole)."""
    out = Console()
    natural = out.measure(table, options=out.options.update_width(10_000)).maximum  # unbounded by the terminal
    out.width = max(out.width, natural)
    out.print(table)


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected HEIGHTxWIDTH, e.g. 1024x1280") from None
    return height, width


def installed_commands(group: str = "mcnn_appliance.commands") -> list[typer.Typer]:
    """The command groups other packages of the project register (training, export), by entry point:
    the runtime composes the CLI from them without importing them by name."""
    return [entry.load() for entry in importlib.metadata.entry_points(group=group)]
