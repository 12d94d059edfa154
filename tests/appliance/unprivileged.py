"""Real permission denials in tests that run as root (CI does), where chmod 000 denies nothing.

`as_unprivileged(command)` runs a command as the user `nobody` through setpriv when we are root,
and as is otherwise (a non-root user is denied by chmod 000 already). `open_folder()` is a
temporary folder that user can reach: pytest's tmp_path lies under a 0700 folder of root's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

NOBODY = 65534


def as_unprivileged(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to test permission denials as root"
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


def open_folder() -> Path:
    """A new folder every user may read and write (sticky, like /tmp); the caller removes it."""
    folder = Path(tempfile.mkdtemp(prefix="mcnn-denial-"))
    folder.chmod(0o1777)
    return folder


def open_to_all(folder: Path) -> None:
    """Everything under folder readable and writable by the unprivileged user."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
