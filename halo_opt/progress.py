"""Progress that works on a terminal and in logs (nohup, CI).

On a terminal (stderr is a TTY) a transient rich bar; otherwise one plain line per step on stderr,
``[  12.3 s] cost tables 3/36: encoder.layer.0.attention.self.value``, with the seconds since the
loop started and what the step works on. Loops of more than :data:`MAX_LINES` steps print a line at
most every :data:`EVERY_S` seconds (and the last one), so a log stays readable.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
MAX_LINES = 50
EVERY_S = 10.0


def is_tty() -> bool:
    return sys.stderr.isatty()


class Steps:
    """``with Steps("quantize", n, on) as s: ... s.advance(what=name)``."""

    def __init__(self, description: str, total: int, on: bool = True):
        self.description, self.total, self.on = description, int(total), on
        self.done, self.t0, self.last = 0, time.perf_counter(), -1e9
        self.bar = None

    def __enter__(self) -> "Steps":
        self.t0 = time.perf_counter()
        if self.on and is_tty():
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int = 1, what: str = "") -> None:
        self.done += n
        if not self.on:
            return
        if self.bar is not None:
            self.bar.update(self.task, advance=n, description=f"{self.description} {what}".strip())
            return
        now = time.perf_counter()
        if self.total <= MAX_LINES or now - self.last >= EVERY_S or self.done >= self.total:
            self.last = now
            print(f"[{now - self.t0:7.1f} s] {self.description} {self.done}/{self.total}{': ' + what if what else ''}",
                  file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> bool:
        if self.bar is not None:
            self.bar.stop()
        return False


def track(items: Iterable[T], description: str, on: bool = True, total: int | None = None,
          label: Callable[[T], str] | None = None) -> Iterator[T]:
    """Iterate ``items``, reporting each finished step (``label(item)`` says what it was)."""
    items = list(items) if total is None else items
    with Steps(description, total if total is not None else len(items), on) as s:
        for x in items:
            yield x
            s.advance(what=label(x) if label else "")


def logger(console=None) -> Callable[[str], None]:
    """A stage log (the messages carry their elapsed time): bold on a terminal (through ``console``,
    a rich Console), else plain lines on stderr, flushed at once."""
    if console is not None and is_tty():
        return lambda m: console.print(f"[bold cyan]{m}[/]", highlight=False)
    return lambda m: print(m, file=sys.stderr, flush=True)
