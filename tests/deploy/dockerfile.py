"""A small Dockerfile reader: enough to run an image's commands outside Docker.

Handles what our Dockerfile uses: line continuations, comments, stages (`FROM ... AS name`),
`ENV k=v ...`, exec-form (JSON) `ENTRYPOINT`/`CMD`/`HEALTHCHECK CMD`, and `.dockerignore` patterns.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self, start: dict[str, str] | None = None) -> dict[str, str]:
        """The stage's ENV lines applied in order onto `start`, with $VAR expansion."""
        env = dict(start or {})
        for args in self.all("ENV"):
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                env[key] = expand(value, env)
        return env

    def exec_form(self, keyword: str) -> list[str]:
        args = self.last(keyword)
        if args is None:
            return []
        if keyword == "HEALTHCHECK":
            args = args[args.index("CMD ") + 4:]
        parsed = json.loads(args)
        assert isinstance(parsed, list), f"{keyword} must use the exec (JSON) form"
        return parsed


def expand(value: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def instructions(text: str) -> list[tuple[str, str]]:
    logical, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    result = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
    return result


def stages(path: Path) -> list[Stage]:
    found: list[Stage] = []
    for keyword, args in instructions(path.read_text()):
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            found.append(Stage(base=parts[0], name=name))
        elif found:
            found[-1].instructions.append((keyword, args))
        else:
            raise ValueError(f"{keyword} before FROM")
    return found


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over a relative path."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            close = pattern.index("]", i)
            out.append(pattern[i : close + 1])
            i = close + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; matching a parent folder excludes its files."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def dockerignore(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]
