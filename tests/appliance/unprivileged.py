"""Real permission denials in tests that run as root (CI does), where chmod 000 denies nothing.

`as_unprivileged(command)` runs a command, when we are root, still as root but without the two
capabilities that let root pass file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH: setpriv
drops them from the bounding set), so a folder of mode 000 is denied as it is to anyone; as is
otherwise (a non-root user is denied by chmod 000 already). Staying root keeps the checkout
readable wherever CI clones it (`mktemp -d` makes a 0700 folder another user cannot enter).
`open_folder()` is a temporary folder anyone may use.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def as_unprivileged(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test permission denials as root"
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]


def open_folder() -> Path:
    """A new folder every user may read and write (sticky, like /tmp); the caller removes it."""
    folder = Path(tempfile.mkdtemp(prefix="mcnn-denial-"))
    folder.chmod(0o1777)
    return folder


def open_to_all(folder: Path) -> None:
    """Everything under folder readable and writable by the unprivileged user."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
