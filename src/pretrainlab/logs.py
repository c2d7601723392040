"""pretrainlab's messages go through `logging`, to the `pretrainlab` logger (each module logs to its child,
`pretrainlab.train`, `pretrainlab.finetune`, ...): progress lines and notes at INFO, warnings at WARNING.

A library call configures nothing, so Python's defaults apply: warnings reach stderr, the rest (and the
progress bars, which follow the INFO level) stays quiet. The command line shows INFO on stderr (`-q`:
warnings only, `-v`: DEBUG too); a notebook gets the same with `pretrainlab.logs.show_messages()`, or
configures `logging.getLogger("pretrainlab")` as it likes.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

LOGGER = "pretrainlab"


class _CurrentStderr(logging.StreamHandler):
    """Writes to sys.stderr as it is at each message (a notebook's or pytest's replacement included)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it: always the current sys.stderr
        pass


def show_messages(level: int = logging.INFO) -> logging.Handler:
    """Print pretrainlab's messages of `level` and above on stderr, as the command line does (in place of an
    earlier call's); -> the handler (logging.getLogger("pretrainlab").removeHandler(it) undoes it)."""
    logger = logging.getLogger(LOGGER)
    for old in [h for h in logger.handlers if isinstance(h, _CurrentStderr)]:
        logger.removeHandler(old)
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # once on stderr is enough, whatever the root logger does
    return handler


@contextlib.contextmanager
def messages_shown(level: int = logging.INFO) -> Iterator[None]:
    """show_messages while inside, then the logger as it was (the CLI's main runs in-process in tests and notebooks)."""
    logger = logging.getLogger(LOGGER)
    before = logger.level, logger.propagate, list(logger.handlers)
    show_messages(level)
    try:
        yield
    finally:
        logger.setLevel(before[0])
        logger.propagate = before[1]
        logger.handlers[:] = before[2]


def shows_progress() -> bool:
    """Whether a progress bar belongs on screen: when INFO messages are shown."""
    return logging.getLogger(LOGGER).isEnabledFor(logging.INFO)
