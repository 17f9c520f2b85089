"""Every default the published scripts define, pinned per script, so that none can drift.

Stages 1-4 and evaluation follow the published SEAM scripts (their argparse defaults, plus the
constants their code hard-codes, which we expose as flags). Stage 5 follows the authors'
retraining config (semantic-segmentation-codebase, experiment seamv1-pseudovoc). A row whose
`ours` is not SAME is a deliberate difference, with the reason beside it. The published values
are checked against tests/data/published_defaults.json (every add_argument of the published
scripts and the authors' config, read from their source): a published flag or config value
missing from the table, or a published value the table misstates, fails
test_the_table_holds_every_published_default. ENGINE lists what differs without a published flag
(precision, memory format, cuDNN, the optimiser's kernel). docs/fidelity.md is generated from both
(scripts/fidelity.py).
"""
import argparse
import glob
import json
import os
import re
import warnings

import pytest
import torch

import evaluation
import infer_aff
import infer_seam
import infer_seg
import train_aff
import train_seam
import train_seg
from tool.engine import runtime
from tool.optim import PolyOptimizer
from voc12.dataset import open_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLISHED = os.path.join(ROOT, "tests", "data", "published_defaults.json")

SAME = object()
REQUIRED = "required"
ABSENT = "absent"  # a published flag this code does not have
DATASET_WHY = "None = the data set's (voc12/dataset.py), the published value for VOC"
WORKERS_WHY = "None = the usable cores up to 16: 8 fed an H100 too slowly"


class FromDataSet(str):
    """Default None, resolved by the data set description: a split role's list or the class count.
    `voc`: what VOC resolves it to where that is not the published value."""

    def __new__(cls, role, voc=None):
        obj = super().__new__(cls, role)
        obj.voc = voc
        return obj

    def describe(self):
        what = "class count" if self == "num_classes" else f"{self} list"
        return f"None: the data set's {what}" + (f" ({self.voc} for VOC)" if self.voc else "")


# (flag, published value, our value or SAME, why we differ)
TABLES = {
    "train_seam": (train_seam.get_parser, [
        ("--batch_size", 8, SAME, ""),
        ("--max_epoches", 8, SAME, ""),
        ("--network", "network.resnet38_SEAM", SAME, ""),
        ("--lr", 0.01, SAME, ""),
        ("--num_workers", 8, None, WORKERS_WHY),
        ("--wt_dec", 5e-4, SAME, ""),
        ("--train_list", "voc12/train_aug.txt", FromDataSet("train_aug"), DATASET_WHY),
        ("--val_list", "voc12/val.txt", None, "a namesake: the published flag was never read; ours is a list to "
         "validate on while training (None: no validation)"),
        ("--session_name", "resnet38_SEAM", SAME, ""),
        ("--crop_size", 448, SAME, ""),
        ("--tblog_dir", "./tblog", None, "None = tblog/ beside --session_name (./tblog for the default one)"),
        ("--voc12_root", "VOC2012", REQUIRED, "no silent default data path"),
        ("--weights", REQUIRED, SAME, "none is the explicit random initialisation (synthetic data only)"),
        # constants of the published code, exposed as flags
        ("--momentum", 5e-4, SAME, "the published code's effective momentum (wd passed as momentum)"),
        ("--resize_long", (448, 768), SAME, ""),
        ("--scale_factor", 0.3, SAME, ""),
        ("--color_jitter", (0.3, 0.3, 0.3, 0.1), SAME, ""),
        ("--cls_weight", 1.0, SAME, "the published loss is the plain sum of its terms"),
        ("--min_pool_weight", 1.0, SAME, ""),
        ("--er_weight", 1.0, SAME, ""),
        ("--ecr_weight", 1.0, SAME, ""),
    ]),
    "infer_seam": (infer_seam.get_parser, [
        ("--weights", REQUIRED, SAME, ""),
        ("--network", "network.resnet38_SEAM", SAME, ""),
        ("--infer_list", "voc12/train.txt", FromDataSet("train"), DATASET_WHY),
        ("--num_workers", 8, SAME, ""),
        ("--voc12_root", "VOC2012", REQUIRED, "no silent default data path"),
        ("--out_cam", None, SAME, ""),
        ("--out_crf", None, SAME, ""),
        ("--out_cam_pred", None, SAME, ""),
        ("--out_cam_pred_alpha", 0.26, SAME, ""),
        ("--scales", (0.5, 1.0, 1.5, 2.0), SAME, ""),
        ("--crf_alphas", (4.0, 24.0), SAME, ""),
    ]),
    "train_aff": (train_aff.get_parser, [
        ("--batch_size", 8, SAME, ""),
        ("--max_epoches", 8, SAME, ""),
        ("--network", "network.resnet38_aff", SAME, ""),
        ("--lr", 0.01, SAME, ""),  # SEAM's value; the parent PSA code used 0.1
        ("--num_workers", 8, None, WORKERS_WHY),
        ("--wt_dec", 5e-4, SAME, ""),
        ("--train_list", "voc12/train_aug.txt", FromDataSet("train_aug"), DATASET_WHY),
        ("--val_list", "voc12/val.txt", ABSENT, "never read by the published code"),
        ("--session_name", "resnet38_aff", SAME, ""),
        ("--crop_size", 448, SAME, ""),
        ("--voc12_root", "VOC2012", REQUIRED, "no silent default data path"),
        ("--weights", REQUIRED, SAME, "none is the explicit random initialisation (synthetic data only)"),
        ("--la_crf_dir", REQUIRED, SAME, ""),
        ("--ha_crf_dir", REQUIRED, SAME, ""),
        ("--momentum", 5e-4, SAME, "the published code's effective momentum"),
        ("--radius", 5, SAME, ""),
    ]),
    "infer_aff": (infer_aff.get_parser, [
        ("--weights", REQUIRED, SAME, ""),
        ("--network", "network.resnet38_aff", SAME, ""),
        ("--infer_list", "voc12/val.txt", FromDataSet("train", voc="voc12/train.txt"),
         "the walk makes pseudo labels of training images: scored on train (the paper's 63.61), and stage 5 "
         "trains on train_aug's; val has none to make"),
        ("--num_workers", 8, SAME, ""),
        ("--cam_dir", REQUIRED, SAME, ""),
        ("--voc12_root", "VOC2012", REQUIRED, "no silent default data path"),
        ("--alpha", 6, SAME, ""),
        ("--out_rw", "out_rw", REQUIRED, "no silent default output folder in the current one"),
        ("--beta", 8, SAME, ""),
        ("--logt", 6, SAME, ""),
        ("--crf", False, SAME, "a real boolean (the published type=bool took any string as True)"),
        ("--radius", 5, SAME, ""),
    ]),
    "evaluation": (evaluation.build_parser, [
        ("--list", "./VOC2012/ImageSets/Segmentation/train.txt", REQUIRED, "no silent default data path"),
        ("--predict_dir", "./out_rw", REQUIRED, "no silent default data path"),
        ("--gt_dir", "./VOC2012/SegmentationClass", REQUIRED, "no silent default data path"),
        ("--logfile", "./evallog.txt", None, "None = evallog.txt beside --predict_dir, not the current folder"),
        ("--comment", REQUIRED, "", "optional"),
        ("--type", "png", SAME, ""),
        ("--t", None, SAME, ""),
        ("--curve", False, SAME, "a real boolean"),
        ("--num_classes", 21, FromDataSet("num_classes"), DATASET_WHY),
        ("--start", 0, SAME, ""),
        ("--end", 60, SAME, ""),
    ]),
    # stage 5: the values of the authors' config (CONFIG_KEYS maps them to these flags)
    "train_seg": (train_seg.get_parser, [
        ("--batch_size", 10, SAME, ""),
        ("--max_step", 20000, SAME, ""),
        ("--lr", 0.001, SAME, ""),
        ("--momentum", 0.9, SAME, ""),
        ("--wt_dec", 5e-4, SAME, ""),
        ("--crop_size", 448, SAME, ""),
        ("--scale_range", (0.5, 1.5), SAME, ""),
        ("--hsv_shift", 10, SAME, ""),
        ("--bn_momentum", 3e-4, SAME, ""),
        ("--bn_groups", 2, SAME, ""),  # GPUS '0,1': DataParallel's BN statistics per half batch
        ("--frozen_bn", False, SAME, ""),
        ("--unfreeze", False, SAME, ""),
        ("--num_classes", 21, FromDataSet("num_classes"), DATASET_WHY),
        ("--train_list", "voc12/train_aug.txt", FromDataSet("train_aug"), DATASET_WHY),
        ("--num_workers", 4, None, "None = the usable cores up to 16, as stages 1 and 3"),
        ("--label_dir", "/home1/wangyude/project/SEAM/out_rw", None,
         "None = the data set's ground-truth masks; scripts/train_seg.sh passes stage 4's rw/"),
        ("--session_name", "seamv1-pseudovoc", "resnet38_seg",
         "named like stages 1 and 3 (resnet38_SEAM, resnet38_aff)"),
    ]),
    "infer_seg": (infer_seg.get_parser, [
        ("--scales", (0.5, 0.75, 1.0, 1.25, 1.5, 1.75), SAME, ""),
        ("--crf", True, SAME, ""),
        ("--crf_t", 1, SAME, ""),
        ("--crf_bilateral_sxy", 32, SAME, ""),
        ("--num_classes", 21, FromDataSet("num_classes"), DATASET_WHY),
        ("--infer_list", "voc12/val.txt", FromDataSet("val"), DATASET_WHY),
        ("--num_workers", 4, 8, "the other inference scripts' (published) 8"),
    ]),
}

# Rows whose flag is no flag of the published script: a value its code hard-codes (or, for stage 5,
# one its code or data set defines outside the config), exposed here as a flag.
CONSTANTS = {
    "train_seam": {"--momentum", "--resize_long", "--scale_factor", "--color_jitter", "--cls_weight",
                   "--min_pool_weight", "--er_weight", "--ecr_weight"},
    "infer_seam": {"--scales", "--crf_alphas"},
    "train_aff": {"--momentum", "--radius"},
    "infer_aff": {"--radius"},
    "evaluation": {"--num_classes", "--start", "--end"},
    "train_seg": {"--unfreeze", "--train_list"},
    "infer_seg": {"--crf_t", "--crf_bilateral_sxy", "--infer_list"},
}
PUBLISHED_SCRIPTS = {"train_seam": "train_SEAM.py", "infer_seam": "infer_SEAM.py", "train_aff": "train_aff.py",
                     "infer_aff": "infer_aff.py", "evaluation": "evaluation.py"}
CONFIG = "seamv1-pseudovoc/config.py"
# every value of the authors' config: the rows that hold it, or what this code does instead of a flag
CONFIG_KEYS = {
    "TRAIN_BATCHES": [("train_seg", "--batch_size")],
    "TRAIN_ITERATION": [("train_seg", "--max_step")],
    "TRAIN_LR": [("train_seg", "--lr")],
    "TRAIN_MOMENTUM": [("train_seg", "--momentum")],
    "TRAIN_WEIGHT_DECAY": [("train_seg", "--wt_dec")],
    "TRAIN_BN_MOM": [("train_seg", "--bn_momentum")],
    "DATA_RANDOMCROP": [("train_seg", "--crop_size")],
    "DATA_RANDOMSCALE": [("train_seg", "--scale_range")],
    "DATA_RANDOM_H": [("train_seg", "--hsv_shift")],
    "DATA_RANDOM_S": [("train_seg", "--hsv_shift")],
    "DATA_RANDOM_V": [("train_seg", "--hsv_shift")],
    "GPUS": [("train_seg", "--bn_groups")],
    "MODEL_FREEZEBN": [("train_seg", "--frozen_bn")],
    "MODEL_NUM_CLASSES": [("train_seg", "--num_classes"), ("infer_seg", "--num_classes")],
    "DATA_WORKERS": [("train_seg", "--num_workers"), ("infer_seg", "--num_workers")],
    "DATA_PSEUDO_GT": [("train_seg", "--label_dir")],
    "EXP_NAME": [("train_seg", "--session_name")],
    "TEST_MULTISCALE": [("infer_seg", "--scales")],
    "TEST_CRF": [("infer_seg", "--crf")],
    "DATA_AUG": "always on in training (voc12/data.py SegDataset)",
    "DATA_RANDOMFLIP": "always a flip with probability 0.5 (voc12/data.py SegDataset)",
    "DATA_MEAN": "the fixed ImageNet normalisation (tool/imutils.py IMAGENET_MEAN), the same values",
    "DATA_STD": "the fixed ImageNet normalisation (tool/imutils.py IMAGENET_STD), the same values",
    "DATA_NAME": "--dataset voc12",
    "DATA_YEAR": "--dataset voc12 is VOC 2012",
    "MODEL_NAME": "--network network.resnet38_seg: DeepLab-v1 (tests/test_network.py::test_deeplab_golden)",
    "MODEL_BACKBONE": "--backbone's default, resnet38d: the published ResNet-38",
    "MODEL_BACKBONE_PRETRAIN": "--weights, required: the ImageNet .params as theirs, or none",
    "TRAIN_POWER": "the poly power, 0.9 in every stage (tool/optim.py)",
    "TRAIN_SHUFFLE": "every training script shuffles (tool/engine/training.py)",
    "TRAIN_MINEPOCH": "the epoch their loop starts at (0): no counterpart",
    "TRAIN_TBLOG": "every training script logs (tensorboard where tensorboardX is installed)",
    "TEST_BATCHES": "one image at a time: each scale's image and flip in one batch of 2",
    "TEST_FLIP": "always: every scale's flip (tool/cam.py)",
}

STAGE_SCRIPTS = ("train_seam", "infer_seam", "train_aff", "infer_aff", "train_seg", "infer_seg")
TRAINING_SCRIPTS = {"train_seam": train_seam, "train_aff": train_aff, "train_seg": train_seg}
# what differs without a published flag, in every stage script: (setting, published, ours, why, tests)
ENGINE = [
    ("precision on CUDA (`--amp`)", "fp32", "auto: bf16 autocast (fp32 on the CPU)",
     "speed; `--amp off` is exact fp32 (no TF32)", ["test_engine_defaults_on_cuda"]),
    ("memory format on CUDA (`--channels_last`)", "NCHW", "auto: channels-last (NHWC)",
     "Tensor Core convolutions want NHWC; `--channels_last off` is NCHW", ["test_engine_defaults_on_cuda"]),
    ("cuDNN autotuning (training)", "off (PyTorch's default)", "on (fixed crop sizes); off with `--amp off` or "
     "`--deterministic`, and while validating", "speed",
     ["test_engine_defaults_on_cuda",
      "tests/test_reproduction.py::test_deterministic_turns_on_pytorchs_deterministic_algorithms",
      "tests/test_gpu_paths.py::test_validation_runs_without_cudnn_autotuning_and_puts_it_back"]),
    ("SGD update on CUDA (training)", "a loop over the parameters", "fused (one kernel for all)",
     "speed; the same update up to float rounding", ["test_fused_sgd_is_the_same_update"]),
]

REQUIRED_ARGS = {  # what each parser needs to parse at all
    "train_seam": ["--voc12_root", "x", "--weights", "w"],
    "infer_seam": ["--voc12_root", "x", "--weights", "w"],
    "train_aff": ["--voc12_root", "x", "--weights", "w", "--la_crf_dir", "a", "--ha_crf_dir", "b"],
    "infer_aff": ["--voc12_root", "x", "--weights", "w", "--cam_dir", "c", "--out_rw", "o"],
    "evaluation": ["--list", "l", "--predict_dir", "p", "--gt_dir", "g"],
    "train_seg": ["--voc12_root", "x", "--weights", "w"],
    "infer_seg": ["--voc12_root", "x", "--weights", "w", "--out_seg", "o"],
}

ROWS = [(script, *row) for script, (_, rows) in TABLES.items() for row in rows]


def _action(parser, flag):
    (action,) = [a for a in parser._actions if flag in a.option_strings]
    return action


def _norm(value):
    return tuple(value) if isinstance(value, list) else value


@pytest.mark.parametrize("script,flag,published,ours,why", ROWS, ids=[f"{r[0]}{r[1]}" for r in ROWS])
def test_default_is_the_published_one_or_a_stated_deviation(script, flag, published, ours, why, tmp_path):
    voc_root = tmp_path
    (voc_root / "JPEGImages").mkdir()
    make_parser, _ = TABLES[script]
    parser = make_parser()
    want = published if ours is SAME else ours
    assert ours is SAME or why, f"{script} {flag}: a deviation needs its reason"
    if ours == ABSENT:
        assert not [a for a in parser._actions if flag in a.option_strings], f"{script} {flag} exists"
        return
    action = _action(parser, flag)
    if isinstance(ours, FromDataSet):  # None, and the VOC description gives the published value (or .voc)
        assert action.default is None and not action.required
        voc = open_dataset("voc12", str(voc_root))
        got = voc.num_classes if ours == "num_classes" else os.path.relpath(voc.list_path(ours), ROOT)
        assert got == (ours.voc or published), f"{script} {flag}: VOC resolves to {got!r}, published {published!r}"
        assert ours.voc != published, f"{script} {flag}: FromDataSet's voc is for a value that differs"
        return
    if want == REQUIRED:
        assert action.required, f"{script} {flag} should be required"
        return
    assert not action.required, f"{script} {flag} should have a default"
    args = parser.parse_args(REQUIRED_ARGS[script])
    got = _norm(getattr(args, action.dest))
    assert got == want and type(got) is type(want), f"{script} {flag}: {got!r}, table says {want!r}"


def test_the_table_holds_every_published_default():
    """Every flag of the published scripts and every value of the authors' config is in the table
    with its published value; every other row is a constant of the published code."""
    with open(PUBLISHED) as f:
        published = json.load(f)
    assert set(published) == {*PUBLISHED_SCRIPTS.values(), CONFIG}
    for script, name in PUBLISHED_SCRIPTS.items():
        table = {flag: value for flag, value, _, _ in TABLES[script][1]}
        for flag, spec in published[name].items():
            assert flag in table, f"{name} {flag}: missing from the table"
            want = REQUIRED if spec.get("required") else _norm(spec["default"])
            assert _norm(table[flag]) == want, f"{name} {flag}: the table says {table[flag]!r}, published {want!r}"
        for flag in table:
            assert (flag in published[name]) != (flag in CONSTANTS[script]), f"{script} {flag}: flag or constant?"
    config = published[CONFIG]
    assert set(config) == set(CONFIG_KEYS), "every config value has its rows or what stands for it"
    from_config = {}
    for key, rows in CONFIG_KEYS.items():
        for script, flag in rows if isinstance(rows, list) else ():
            table = {f: value for f, value, _, _ in TABLES[script][1]}
            assert _norm(table[flag]) == _norm(config[key]), f"{CONFIG} {key}: {flag} says {table[flag]!r}"
            from_config.setdefault(script, set()).add(flag)
    for script in ("train_seg", "infer_seg"):
        for flag, *_ in TABLES[script][1]:
            assert (flag in from_config[script]) != (flag in CONSTANTS[script]), f"{script} {flag}: config or constant?"


def test_a_misstated_published_value_fails_the_comparison(monkeypatch):
    rows = list(TABLES["infer_aff"][1])
    i = next(i for i, row in enumerate(rows) if row[0] == "--infer_list")
    rows[i] = ("--infer_list", "voc12/train.txt", SAME, "")
    monkeypatch.setitem(TABLES, "infer_aff", (TABLES["infer_aff"][0], rows))
    with pytest.raises(AssertionError, match="infer_aff.py --infer_list"):
        test_the_table_holds_every_published_default()


@pytest.mark.parametrize("script", STAGE_SCRIPTS)
def test_engine_flags_default_to_auto_and_name_the_published_value(script):
    parser = TABLES[script][0]()
    for flag in ("--amp", "--channels_last"):
        action = _action(parser, flag)
        assert action.default == "auto" and "published" in action.help, (script, flag)


def test_engine_defaults_on_cuda(monkeypatch, toy):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    with warnings.catch_warnings():  # "CUDA is not available": the context is only built, not entered
        warnings.simplefilter("ignore")
        assert runtime.autocast(cuda, "auto").fast_dtype == torch.bfloat16
    assert not isinstance(runtime.autocast(cuda, "off"), torch.autocast)  # fp32, as published
    assert not isinstance(runtime.autocast(cpu, "auto"), torch.autocast)
    assert runtime.channels_last_enabled(cuda, "auto") and not runtime.channels_last_enabled(cpu, "auto")
    assert not runtime.channels_last_enabled(cuda, "off")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", torch.backends.cudnn.allow_tf32)  # put back after
    for amp, fixed_shapes, want in (("auto", True, True), ("off", True, False), ("auto", False, False)):
        monkeypatch.setattr(torch.backends.cudnn, "benchmark", not want)
        runtime.set_precision(amp, fixed_shapes)
        assert torch.backends.cudnn.benchmark is want, (amp, fixed_shapes)
    # the training scripts ask for autotuning (fixed crop sizes); inference does not
    for name, module in {**TRAINING_SCRIPTS, "infer_seam": infer_seam, "infer_seg": infer_seg}.items():
        seen = {}

        def stop(*args, seen=seen, **kwargs):
            seen.update(kwargs)
            raise RuntimeError("stop")

        monkeypatch.setattr(module, "setup_device", stop)
        with pytest.raises(RuntimeError, match="stop"):
            module.run(TABLES[name][0]().parse_args([*REQUIRED_ARGS[name], "--voc12_root", str(toy)]))
        assert seen.get("fixed_shapes", False) is (name in TRAINING_SCRIPTS), name


def test_fused_sgd_is_the_same_update():
    def two_steps(fused):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(5)) for _ in range(4)]
        opt = PolyOptimizer([[p] for p in params], lr=0.1, weight_decay=5e-4, max_step=10, momentum=0.9, fused=fused)
        for _ in range(2):
            for p in params:
                p.grad = p.detach() ** 2
            opt.step()
        return torch.cat([p.detach() for p in params])

    torch.testing.assert_close(two_steps(True), two_steps(False), rtol=1e-6, atol=0)  # float rounding only


def test_boolean_flags_are_real_booleans():
    # the published `type=bool` made "--crf False" mean True; ours take no value
    for script, flag in (("infer_aff", "--crf"), ("evaluation", "--curve"), ("train_seg", "--frozen_bn")):
        parser = TABLES[script][0]()
        assert isinstance(_action(parser, flag), (argparse._StoreTrueAction, argparse.BooleanOptionalAction))
        with pytest.raises(SystemExit):
            parser.parse_args([*REQUIRED_ARGS[script], flag, "False"])


def test_infer_seg_crf_can_be_switched_off():
    parser = infer_seg.get_parser()
    for off in ("--no_crf", "--no-crf"):
        assert parser.parse_args([*REQUIRED_ARGS["infer_seg"], off]).crf is False


@pytest.mark.parametrize("script", list(TABLES))
def test_help_gives_every_flag_a_line_its_default_and_the_published_value_where_ours_differs(script):
    parser = TABLES[script][0]()
    assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
    text = parser.format_help()
    for action in parser._actions:
        if action.option_strings and action.help != argparse.SUPPRESS:
            assert action.help, f"{script} {action.option_strings[0]}: no help text"
            assert action.option_strings[0] in text
    assert "(default: " in text and "\ndata:\n" in text and "\nfaults:\n" in text  # grouped
    for flag, _, ours, _ in TABLES[script][1]:
        if ours is SAME or ours in (REQUIRED, ABSENT) or (isinstance(ours, FromDataSet) and not ours.voc):
            continue
        assert "published" in _action(parser, flag).help, f"{script} {flag}: help does not name the published value"


@pytest.mark.parametrize("script", list(TABLES))
def test_every_flag_is_read(script):
    """No flag without effect: each one's value is read by the script or the shared code it calls
    (the engine, the data set's and the weights' readers), by name or through getattr's f-string."""
    shared = ["tool/engine/*.py", "voc12/dataset.py", "network/weights.py"]
    text = "".join(open(f).read() for pattern in [f"{script}.py", *shared]
                   for f in glob.glob(os.path.join(ROOT, pattern)))
    by_pattern = [re.sub(r"\\\{[^}]*\\\}", r"\\w+", re.escape(f))  # f"{term}_weight" -> \w+_weight
                  for f in re.findall(r'getattr\(args, f"([^"]+)"', text)]
    for action in TABLES[script][0]()._actions:
        dest = action.dest
        if dest == "help" or re.search(rf"args\.{dest}\b|[\"']{dest}[\"']", text):
            continue
        assert any(re.fullmatch(p, dest) for p in by_pattern), f"{script}: --{dest} is never read"


def help_entries(parser):
    """--help as {flag: its whole entry}, on one line each (a terminal wide enough for any entry)."""
    entries, flag = {}, None
    for line in parser.format_help().splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = line
        elif flag and line.startswith("    "):
            entries[flag] += " " + line.strip()
        else:
            flag = None
    return entries


@pytest.mark.parametrize("script", list(TABLES))
def test_help_gives_no_default_to_a_required_flag_and_none_twice(script, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")
    parser = TABLES[script][0]()
    entries = help_entries(parser)
    required = [a for a in parser._actions if a.required]
    assert required
    for action in parser._actions:
        if not action.option_strings or argparse.SUPPRESS in (action.help, action.default):  # --help
            continue
        entry = entries[action.option_strings[0]]
        ours = re.findall(r"(?<!published )\bdefault\b", entry, re.IGNORECASE)
        if action.required:
            assert not ours, entry  # e.g. not "(default: None)" on --weights
        else:  # said once: by the text ("default: the data set's ...") or by argparse, not both
            assert len(ours) == 1, entry
