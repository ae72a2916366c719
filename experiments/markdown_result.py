"""The tail every experiment script shares: its result table, then the command that made it,
written as markdown under ``--out`` and echoed to the terminal."""
from __future__ import annotations

from pathlib import Path


def write_markdown(out: str | Path, name: str, lines: list[str], command: str) -> None:
    """Write ``lines`` and a fenced ``command`` to ``out/name``, creating ``out``, and print them."""
    lines = [*lines, "", "```", command, "```"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
