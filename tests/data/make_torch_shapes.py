"""Regenerate ``torch_shapes.json``: output shapes torch computes for a random sweep.

Run once, with torch installed (the test suite itself never imports torch)::

    python tests/data/make_torch_shapes.py

Each case runs ``torch.nn.functional.conv2d`` or ``max_pool2d`` on a zero tensor of
shape (1, 1, H, W) with independent height and width parameters (kernel, stride,
padding, dilation; ceil mode for pools), and records the output (H', W') or, when
torch refuses, the kind of error. Sizes are often small, so that kernels larger
than the padded input, torch's pooling padding limit (at most half the window) and
ceil mode's overhanging or dropped last windows all come up many times.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
import torch.nn.functional as F

CASES_PER_OP = 4000
SEED = 20240617
OUT = Path(__file__).with_name("torch_shapes.json")
FIELDS = ["op", "h", "w", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "ceil", "out", "error"]
ERRORS = {
    "kernel": "Kernel size can't be greater than actual input size",
    "too_small": "Output size is too small",
    "pad": "pad should be",
}


def _size(rng: random.Random) -> int:
    return rng.randint(1, 12) if rng.random() < 0.5 else rng.randint(1, 64)


def _dilation(rng: random.Random) -> int:
    return 1 if rng.random() < 0.5 else rng.randint(2, 3)


def _case(rng: random.Random, op: str) -> dict:
    c = {"op": op, "h": _size(rng), "w": _size(rng)}
    c["kh"], c["kw"] = rng.randint(1, 9), rng.randint(1, 9)
    c["sh"], c["sw"] = rng.randint(1, 5), rng.randint(1, 5)
    if op == "conv2d":
        c["ph"], c["pw"] = rng.randint(0, 5), rng.randint(0, 5)
        c["ceil"] = False
    else:
        # mostly within torch's limit (half the window), sometimes beyond it
        def pad(k: int) -> int:
            return rng.randint(0, k // 2) if rng.random() < 0.9 else rng.randint(0, 5)

        c["ph"], c["pw"] = pad(c["kh"]), pad(c["kw"])
        c["ceil"] = rng.random() < 0.6
    c["dh"], c["dw"] = _dilation(rng), _dilation(rng)
    return c


def _run(c: dict) -> tuple[list[int] | None, str | None]:
    x = torch.zeros(1, 1, c["h"], c["w"])
    stride, padding = (c["sh"], c["sw"]), (c["ph"], c["pw"])
    dilation = (c["dh"], c["dw"])
    try:
        if c["op"] == "conv2d":
            w = torch.zeros(1, 1, c["kh"], c["kw"])
            y = F.conv2d(x, w, None, stride, padding, dilation)
        else:
            kernel = (c["kh"], c["kw"])
            y = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=c["ceil"])
    except RuntimeError as e:
        for kind, text in ERRORS.items():
            if text in str(e):
                return None, kind
        raise
    return list(y.shape[2:]), None


def main() -> None:
    rng = random.Random(SEED)
    rows = []
    for op in ("conv2d", "max_pool2d"):
        for _ in range(CASES_PER_OP):
            c = _case(rng, op)
            c["out"], c["error"] = _run(c)
            rows.append([c[f] for f in FIELDS])
    text = ",\n".join(json.dumps(r, separators=(",", ":")) for r in rows)
    header = {
        "about": "output shapes from torch "
        + torch.__version__
        + "; regenerate with make_torch_shapes.py",
        "fields": FIELDS,
        "errors": ERRORS,
    }
    head = json.dumps(header, indent=1)[:-2]
    OUT.write_text(head + ',\n "cases": [\n' + text + "\n ]\n}\n")
    errors = sum(r[-1] is not None for r in rows)
    print(f"wrote {len(rows)} cases ({errors} where torch raises) to {OUT}")


if __name__ == "__main__":
    main()
