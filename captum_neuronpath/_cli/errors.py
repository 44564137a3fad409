"""One error policy for every subcommand: the exit statuses and the stop signals (see :mod:`captum_neuronpath._cli`)."""

import signal
import threading
from contextlib import contextmanager
from typing import Iterator, List, Optional

USAGE_ERROR = 2
FAILURE = 1

# SIGHUP does not exist on Windows.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class CommandLineError(Exception):
    """A mistake in a command line or in what it names: exit status 2."""


class RunFailure(Exception):
    """A failure during the run (not a mistake in the command line): exit status 1."""


class Interrupted(KeyboardInterrupt):
    """A stop signal (Ctrl-C, SIGTERM, SIGHUP): exit status 128 + ``signum``."""

    def __init__(self, message: str = "interrupted", signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum


def describe(error: Exception) -> str:
    """An ``OSError`` as ``FILE: cause``; other errors as their message."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error)


# Inside deferred_stops: the stop signals held back until it ends.
_held: Optional[List[int]] = None


def _stop(signum: int, frame) -> None:
    """Raise :class:`Interrupted` at once or, inside :func:`deferred_stops`, when it ends."""
    if _held is None:
        raise Interrupted(signum=signum)
    _held.append(signum)


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """Meanwhile stop signals not set to be ignored raise :class:`Interrupted` (main thread only)."""
    in_main_thread = threading.current_thread() is threading.main_thread()  # elsewhere handlers cannot be set
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS if in_main_thread}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def deferred_stops() -> Iterator[None]:
    """Hold a stop signal back until the block is done (a write that must not be cut), then raise it."""
    global _held
    _held = []
    try:
        yield
    finally:
        held, _held = _held, None
    if held:
        raise Interrupted(signum=held[-1])
