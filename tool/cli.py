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


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, every flag with its default."""


# --help groups, in the order a researcher scans them; a flag named in none goes under "other"
HELP_GROUPS = {
    "data": ("voc12_root", "dataset", "data_root", "cls_labels", "train_list", "infer_list", "val_list", "list",
             "predict_dir", "gt_dir", "type", "num_classes", "label_dir", "la_crf_dir", "ha_crf_dir", "cam_dir"),
    "network and weights": ("network", "backbone", "width", "weights", "allow_pickle", "unfreeze", "no_dropout",
                            "frozen_bn", "bn_momentum", "bn_groups", "sync_bn"),
    "method": ("crop_size", "resize_long", "scale_factor", "color_jitter", "scale_range", "hsv_shift", "radius",
               "no_er", "no_ecr", "no_pcm", "cls_weight", "min_pool_weight", "er_weight", "ecr_weight", "scales",
               "crf_alphas", "out_cam_pred_alpha", "alpha", "beta", "logt", "crf", "crf_t", "crf_bilateral_sxy", "t",
               "curve", "start", "end", "mean", "val_thresholds"),
    "optimisation": ("batch_size", "max_epoches", "max_step", "lr", "wt_dec", "momentum", "seed"),
    "speed": ("device", "amp", "channels_last", "compile", "deterministic", "num_workers", "crf_workers"),
    "outputs, checkpoints and logs": ("session_name", "out_cam", "out_cam_npy", "out_crf", "out_cam_pred",
                                      "cam_dtype", "out_rw", "out_seg", "overwrite", "resume", "restart",
                                      "keep_resume", "ckpt_interval", "log_interval", "vis_interval", "val_interval",
                                      "tblog_dir", "logfile", "out_json", "comment"),
    "faults": ("skip_bad_images", "ignore_disk_check", "debug"),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with every flag's default in --help, the flags in HELP_GROUPS, and the error on
    one line (`error: ...`, exit status 2), not behind the usage."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    def format_help(self):
        group_of = {dest: title for title, dests in HELP_GROUPS.items() for dest in dests}
        groups = {}
        for action in list(self._optionals._group_actions):
            title = group_of.get(action.dest)
            if title is None or isinstance(action, argparse._HelpAction):
                continue
            if title not in groups:
                groups[title] = self.add_argument_group(title)
            self._optionals._group_actions.remove(action)
            groups[title]._group_actions.append(action)
        order = list(HELP_GROUPS)
        named = sorted((g for g in self._action_groups if g.title in order), key=lambda g: order.index(g.title))
        self._action_groups = [g for g in self._action_groups if g.title not in order] + named
        return super().format_help()


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
