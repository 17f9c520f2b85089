"""The released-checkpoint table: stage | expected | measured | difference | PASS/FAIL.

    python scripts/reproduce_table.py WORK_DIR --expected cam=55.41 rw=63.61 seg=64.754 [--tolerance 0.25]

Reads WORK_DIR/results/{cam,rw,seg}.json (evaluation.py), writes WORK_DIR/reproduce.md and
.json with the environment fingerprint; exit status 1 when a stage is off by more than the
tolerance (in mIoU points) or has no result.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tool.engine.files import atomic_path  # noqa: E402
from tool.engine.fingerprint import fingerprint, fingerprint_line  # noqa: E402

STAGES = {"cam": "CAM (train, best threshold of the curve)", "rw": "random walk (train)",
          "seg": "segmentation (val, multi-scale + flip + CRF)"}


def table(work_dir, expected, tolerance):
    rows = []
    for key, value in expected.items():
        path = os.path.join(work_dir, "results", f"{key}.json")
        measured = None
        if os.path.exists(path):
            with open(path) as f:
                measured = json.load(f)["miou"]
        diff = None if measured is None else measured - value
        rows.append({"stage": STAGES[key], "expected": value, "measured": measured, "difference": diff,
                     "pass": diff is not None and abs(diff) <= tolerance})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work_dir")
    p.add_argument("--expected", nargs="+", required=True, metavar="STAGE=MIOU", help=f"stages: {', '.join(STAGES)}")
    p.add_argument("--tolerance", type=float, default=0.25, help="largest |measured - expected| that passes")
    args = p.parse_args(argv)
    expected = {}
    for item in args.expected:
        key, _, value = item.partition("=")
        if key not in STAGES:
            p.error(f"--expected {item}: the stage is one of {', '.join(STAGES)}")
        expected[key] = float(value)
    rows = table(args.work_dir, expected, args.tolerance)
    environment = fingerprint(precision_used="fp32 (--amp off)")
    lines = ["| stage | expected | measured | difference | within " + f"{args.tolerance} |", "|---|---|---|---|---|"]
    for r in rows:
        measured = "missing" if r["measured"] is None else f"{r['measured']:.2f}"
        diff = "-" if r["difference"] is None else f"{r['difference']:+.2f}"
        verdict = "PASS" if r["pass"] else "FAIL"
        lines.append(f"| {r['stage']} | {r['expected']:.2f} | {measured} | {diff} | {verdict} |")
    lines += ["", f"Environment: {fingerprint_line(environment)}"]
    text = "\n".join(lines) + "\n"
    with atomic_path(os.path.join(args.work_dir, "reproduce.md")) as tmp, open(tmp, "w") as f:
        f.write(text)
    with atomic_path(os.path.join(args.work_dir, "reproduce.json")) as tmp, open(tmp, "w") as f:
        json.dump({"rows": rows, "tolerance": args.tolerance, "environment": environment}, f, indent=1)
    print(text)
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
