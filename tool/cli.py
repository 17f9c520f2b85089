"""The scripts' entry point and flag types.

`run_script(parser, run, argv)` parses the flags once and runs `run(args)`; whatever a user can
mend (a missing or damaged file, a bad value, an output that cannot be written, a data loader
worker's or a pool's report of one) ends the run in one `error:` line, printed after every open
progress bar is closed, so it stands on a line of its own. `--debug` shows the traceback instead.

The argparse types check numbers where they are parsed: an argparse-style one-line error (exit
status 2) before anything is read or written.
"""
import argparse
import dataclasses
import math
import re
import sys

from tool.fileio import WriteError
from tool.logger import close_progress_bars

# What a user can mend, as raised by the readers, checks and writers of this project.
USER_ERRORS = (FileNotFoundError, ValueError, WriteError)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the error on one line (`prog: error: ...`, exit status 2), not behind the usage."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def add_debug_flag(parser):
    parser.add_argument("--debug", action="store_true", help="show the traceback behind a one-line error")


def one_line(exc):
    """An exception as one line: a data loader re-raises a worker's error with its traceback in
    the message; its last line is the error."""
    text = str(exc).strip() or type(exc).__name__
    if "Original Traceback" in text:
        text = re.sub(r"^\w+(Error|Exception): ", "", text.splitlines()[-1].strip())
    return text.splitlines()[0] if "\n" in text else text


def run_script(parser, run, argv=None, status=1):
    """parse, then run(args) under the one-line error handler. `status`: the exit status of a
    one-line error (1; evaluation.py's is 2, as published)."""
    args = parser.parse_args(argv)
    try:
        return run(args)
    except SystemExit:
        close_progress_bars()  # a one-line exit of the code itself: printed by Python, after the bars
        raise
    except USER_ERRORS as e:
        close_progress_bars()
        if getattr(args, "debug", False):
            raise
        message = f"error: {one_line(e)}"
        if status == 1:
            raise SystemExit(message) from None
        print(message, file=sys.stderr)
        raise SystemExit(status) from None


def from_flags(cls, args):
    """The dataclass `cls` from a parsed namespace: its fields by name, and `flags` (when it has
    one) every flag, for a log. The one place a namespace becomes a config."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    if "flags" in names:
        values["flags"] = dict(sorted(vars(args).items()))
    return cls(**values)


def _number(kind, test, what):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not (math.isfinite(value) and test(value)):
            raise argparse.ArgumentTypeError(f"{text} must be {what}")
        return value

    parse.__name__ = f"{kind.__name__} {what}"
    return parse


count = _number(int, lambda v: v >= 1, ">= 1")  # batch size, steps, epochs, sizes, iterations, intervals
non_negative_int = _number(int, lambda v: v >= 0, ">= 0")  # processes, log t, shifts
positive = _number(float, lambda v: v > 0, "> 0")  # rates, scales, powers, widths
non_negative = _number(float, lambda v: v >= 0, ">= 0")  # weight decay, momentum, loss weights
