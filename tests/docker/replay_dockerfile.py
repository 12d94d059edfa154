"""Replay one Dockerfile target's install steps in a fresh virtualenv: the images' test without Docker.

Our build machines have no Docker engine. This reads the Dockerfile itself (ARG defaults, the
chain of stages up to the target, ENV, WORKDIR, COPY with .dockerignore, and the pip commands of
RUN) and carries the steps out in a folder standing for the image's file system, with a fresh
`python -m venv` standing for the image's Python. Where it differs from a real build, and why:

- RUN commands other than pip (useradd) change the system, not the Python environment: they are
  listed as skipped;
- pip's cache is used (--no-cache-dir and PIP_NO_CACHE_DIR are dropped), so repeats are fast;
- PyTorch's CPU index cannot be reached from our machines: its --index-url is dropped and pip
  finds the same CPU wheel through the machine's pip configuration (the tests check the +cpu build);
- USER, VOLUME, ENTRYPOINT and CMD are recorded for the tests to check.

    python tests/docker/replay_dockerfile.py --target runtime /tmp/runtime   # then /tmp/runtime/venv/bin/...
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
NOT_FOR_THE_REPLAY = {"PIP_NO_CACHE_DIR"}  # the replay keeps pip's cache: repeats are fast
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


class ReplayError(ValueError):
    """The Dockerfile uses something the replay cannot carry out; the message names the line."""


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Replay:
    root: Path
    python: Path  # the virtualenv's interpreter, standing for the image's
    env: dict[str, str]  # the environment the image's processes get (the Dockerfile's ENV on ours)
    workdir: Path
    user: str | None = None
    volumes: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def bin(self) -> Path:
        return self.python.parent


def logical_lines(text: str):
    """(line number, instruction text) with continuation lines joined and comment lines dropped."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        start = start or number
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        yield start, pending + stripped
        pending, start = "", 0
    if pending:
        yield start, pending


def expand(text: str, variables: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: variables.get(m[1] or m[2], ""), text)


def parse(text: str) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = expand(args, global_args).split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name, words[0]))
        elif not stages:
            if keyword != "ARG":
                raise ReplayError(f"line {number}: {keyword} before the first FROM")
            key, _, default = args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, args, number))
    return stages


def stage_chain(stages: list[Stage], target: str) -> list[Stage]:
    """The target and the stages it is built FROM, base first."""
    by_name = {s.name: s for s in stages if s.name}
    if target not in by_name:
        raise ReplayError(f"no stage named {target!r}; the stages are {', '.join(by_name)}")
    chain = [by_name[target]]
    while chain[0].base in by_name:
        chain.insert(0, by_name[chain[0].base])
    return chain


class DockerIgnore:
    def __init__(self, path: Path):
        lines = path.read_text().splitlines() if path.exists() else []
        self.patterns = [p.strip().rstrip("/") for p in lines if p.strip() and not p.strip().startswith("#")]
        if any(p.startswith("!") for p in self.patterns):
            raise ReplayError(f"{path}: exceptions (!pattern) are not replayed")

    def ignored(self, relative: str) -> bool:
        parts = relative.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            for pattern in self.patterns:
                if fnmatch.fnmatch(prefix, pattern) or (
                    pattern.startswith("**/") and fnmatch.fnmatch(parts[i - 1], pattern[3:])
                ):
                    return True
        return False


def pip_command(words: list[str], python: Path, replay: Replay, number: int) -> list[str]:
    """The RUN's pip command for the virtualenv, with the replay's documented differences."""
    start = 1 if words[0] == "pip" else 3  # pip ... / python -m pip ...
    out, rest = [str(python), "-m", "pip"], words[start:]
    i = 0
    while i < len(rest):
        word = rest[i]
        if word == "--no-cache-dir":
            pass
        elif word in ("--index-url", "-i") and rest[i + 1].rstrip("/") == PYTORCH_CPU_INDEX:
            replay.skipped.append(
                f"line {number}: --index-url {PYTORCH_CPU_INDEX} (the CPU wheel comes from "
                "this machine's pip configuration)"
            )
            i += 1
        else:
            out.append(word)
        i += 1
    return out


def run_step(words: list[str], replay: Replay, number: int, log) -> None:
    is_pip = words[:1] == ["pip"] or (words[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]))
    if not is_pip:
        replay.skipped.append(f"line {number}: {shlex.join(words)} (not a pip step)")
        return
    command = pip_command(words, replay.python, replay, number)
    log(f"line {number}: {shlex.join(words)}")
    result = subprocess.run(
        command, cwd=replay.workdir, env=replay.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if result.returncode:
        raise ReplayError(
            f"line {number}: `{shlex.join(words)}` failed ({result.returncode}):\n{result.stdout[-4000:]}"
        )
    replay.ran.append(f"line {number}: {shlex.join(words)}")


def inside(root: Path, container_path: str, workdir: Path) -> Path:
    """A path of the image, under the replay's root."""
    if container_path.startswith("/"):
        return root / container_path.lstrip("/")
    return workdir / container_path


def copy(args: str, replay: Replay, context: Path, ignore: DockerIgnore, number: int) -> None:
    words = shlex.split(args)
    flags = [w for w in words if w.startswith("--")]
    if any(f.startswith("--from") for f in flags):
        raise ReplayError(f"line {number}: COPY --from is not replayed")
    *sources, dest = [w for w in words if not w.startswith("--")]
    target = inside(replay.root, dest, replay.workdir)
    into_folder = dest.endswith("/") or len(sources) > 1
    for source in sources:
        path = context / source
        if not path.exists() or ignore.ignored(os.path.normpath(source)):
            raise ReplayError(f"line {number}: COPY {source}: not in the build context (or .dockerignore'd)")
        where = target / path.name if into_folder else target
        if path.is_dir():
            shutil.copytree(
                path,
                where,
                dirs_exist_ok=True,
                ignore=lambda folder, names: [
                    n for n in names if ignore.ignored((Path(folder) / n).relative_to(context).as_posix())
                ],
            )
        else:
            where.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, where)


def set_env(args: str, replay: Replay, number: int) -> None:
    words = shlex.split(args)
    pairs = [w.partition("=")[::2] for w in words] if "=" in words[0] else [(words[0], " ".join(words[1:]))]
    for key, value in pairs:
        if key == "PATH":
            raise ReplayError(f"line {number}: ENV PATH is not replayed (container paths)")
        if key not in NOT_FOR_THE_REPLAY:
            replay.env[key] = expand(value, replay.env)


def replay(
    target: str, root: Path, dockerfile: Path = REPO / "Dockerfile", context: Path | None = None, log=print
) -> Replay:
    """Carry out the target's steps under root (which must not exist yet); root/venv is the image's Python."""
    context = Path(context or dockerfile.parent)
    root = Path(root)
    root.mkdir(parents=True)
    chain = stage_chain(parse(dockerfile.read_text()), target)
    ignore = DockerIgnore(context / ".dockerignore")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", *NOT_FOR_THE_REPLAY)
    }
    env["PATH"] = f"{root / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    result = Replay(root, root / "venv" / "bin" / "python", env, root)
    log(f"replaying {dockerfile} --target {target} (stages {' -> '.join(s.name or s.base for s in chain)}) in {root}")
    for stage in chain:
        for ins in stage.instructions:
            if ins.keyword == "ENV":
                set_env(ins.args, result, ins.line)
            elif ins.keyword == "WORKDIR":
                result.workdir = inside(root, expand(ins.args, result.env), result.workdir)
                result.workdir.mkdir(parents=True, exist_ok=True)
            elif ins.keyword == "COPY":
                copy(ins.args, result, context, ignore, ins.line)
            elif ins.keyword == "RUN":
                if ins.args.startswith("["):
                    raise ReplayError(f"line {ins.line}: RUN in exec form is not replayed")
                if re.search(r"[;|`]|\$\(", ins.args):
                    raise ReplayError(f"line {ins.line}: only commands joined by && are replayed")
                for command in ins.args.split("&&"):
                    run_step(shlex.split(command), result, ins.line, log)
            elif ins.keyword == "USER":
                result.user = ins.args
            elif ins.keyword == "VOLUME":
                result.volumes = json.loads(ins.args) if ins.args.startswith("[") else ins.args.split()
            elif ins.keyword == "ENTRYPOINT":
                result.entrypoint = json.loads(ins.args)
            elif ins.keyword == "CMD":
                result.cmd = json.loads(ins.args)
            elif ins.keyword in ("ARG", "LABEL", "EXPOSE", "STOPSIGNAL"):
                result.skipped.append(f"line {ins.line}: {ins.keyword} {ins.args}")
            else:
                raise ReplayError(f"line {ins.line}: {ins.keyword} is not replayed")
    for note in result.skipped:
        log(f"skipped {note}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="new folder for the replay (root/venv is the image's Python)")
    parser.add_argument("--target", required=True)
    parser.add_argument("--dockerfile", type=Path, default=REPO / "Dockerfile")
    args = parser.parse_args()
    try:
        done = replay(args.target, args.root, args.dockerfile)
    except ReplayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"done: {shlex.join([str(done.bin / done.entrypoint[0]), *done.entrypoint[1:], *done.cmd])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
