"""The numbers stated on docs/pitfalls.md and docs/conventions.md, recomputed.

A line of a Python block on those pages that ends in ``# label: value`` is a claim: the test runs
the blocks of each ``##`` section in order (one namespace per section), evaluates the claim's
expression and compares it with ``value``. A value is a number, a shape ``(2, 3)``, a list
``[0.5, 0.2]`` or ``raises TypeError``. Blocks that mention Keras run in test_pitfalls_keras.py,
once per backend; the rest run here. Independently of the snippets, ``HAND`` holds values worked
by hand (plain ``math``) for the right answers and the classic wrong ones, and the reduction table
of conventions.md is rebuilt from torch.nn, MONAI and lossplug. Editing a page or the code without
the other fails here.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = ("pitfalls.md", "conventions.md", "reductions.md")

_VALUE = r"raises \w+|-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|nan|-?inf|\(.*\)|\[.*\]"
_CLAIM = re.compile(rf"^(?P<code>\S.*?)\s+#\s*(?P<label>[A-Za-z][\w .,()'=\-]*?):\s*(?P<value>{_VALUE})\s*$")
_ASSIGN = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s*=(?!=)\s*(?P<expr>.+)$")
_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


@dataclass
class Claim:
    line: int  # 1-based line number on the page
    code: str
    label: str
    value: str


@dataclass
class Section:
    page: str
    title: str
    blocks: list[tuple[int, str]] = field(default_factory=list)  # (first line, code)

    def claims(self, keras: bool) -> list[Claim]:
        out = []
        for start, code in self.blocks:
            if is_keras(code) != keras:
                continue
            for i, line in enumerate(code.splitlines()):
                m = _CLAIM.match(line)
                if m:
                    out.append(Claim(start + i, m["code"], m["label"], m["value"]))
        return out


def is_keras(code: str) -> bool:
    return "keras" in code


def read_sections(page: str) -> list[Section]:
    """The ``##`` sections of a page with their Python blocks (``###`` stays in its section)."""
    text = (DOCS / page).read_text()
    sections = [Section(page, "(top)")]
    heading_at = [(m.start(), m["title"]) for m in re.finditer(r"^## (?P<title>.+)$", text, re.M)]
    for m in _FENCE.finditer(text):
        title = "(top)"
        for pos, t in heading_at:
            if pos < m.start():
                title = t
        if sections[-1].title != title:
            sections.append(Section(page, title))
        first_line = text.count("\n", 0, m.start(1)) + 1
        sections[-1].blocks.append((first_line, m[1]))
    return [s for s in sections if s.blocks]


def section_ids(keras: bool) -> list[tuple[str, str]]:
    return [
        (s.page, s.title) for page in PAGES for s in read_sections(page)
        if any(is_keras(code) == keras for _, code in s.blocks)
    ]


def find_section(page: str, title: str) -> Section:
    for s in read_sections(page):
        if s.title == title:
            return s
    raise AssertionError(f"docs/{page} has no section '## {title}' with a Python block")


# --- running the snippets ------------------------------------------------------------------------


def _to_array(value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def close(stated: float, computed: float) -> bool:
    """Equal to the printed digits: 1e-6 relative (float32 results printed with 6 decimals)."""
    if not (math.isfinite(stated) and math.isfinite(computed)):
        return str(stated) == str(computed)  # nan, inf and -inf match only themselves
    return abs(stated - computed) <= 1e-6 * max(1.0, abs(computed))


def compare(claim: Claim, computed) -> str | None:
    """None when ``computed`` matches the stated value, else what differs."""
    stated = claim.value
    if stated.startswith("("):
        got = tuple(int(d) for d in computed)
        want = tuple(ast.literal_eval(stated if stated != "()" else "()"))
        return None if got == want else f"shape {got}"
    arr = _to_array(computed)
    if stated.startswith("["):
        want = np.asarray(ast.literal_eval(stated), dtype=np.float64)
        if arr.shape != want.shape:
            return f"array of shape {arr.shape}: {arr.tolist()}"
        ok = all(close(w, g) for w, g in zip(want.ravel(), arr.ravel(), strict=True))
        return None if ok else f"{np.round(arr, 7).tolist()}"
    if arr.size != 1:
        return f"array of shape {arr.shape}, not one number"
    got = float(arr.reshape(()))
    return None if close(float(stated), got) else f"{got:.7g}"


def run_section(section: Section, keras: bool, backend: str | None = None) -> list[str]:
    """Run a section's blocks of one kind in order; return a message for each claim that fails.

    A label that names Keras backends, such as ``keras (TensorFlow backend)``, is compared only
    under a ``backend`` it names; elsewhere its line still runs.
    """
    namespace: dict = {"__name__": f"docs_{section.page}"}
    problems = []
    for start, code in section.blocks:
        if is_keras(code) != keras:
            continue
        pending: list[str] = []
        for i, line in enumerate(code.splitlines()):
            m = _CLAIM.match(line)
            if not m:
                pending.append(line)
                continue
            where = f"docs/{section.page}:{start + i}"
            exec(compile("\n".join(pending), where, "exec"), namespace)
            pending = []
            claim = Claim(start + i, m["code"], m["label"], m["value"])
            problems += _check_claim(claim, namespace, where, _applies(claim.label, backend))
        exec(compile("\n".join(pending), f"docs/{section.page}:{start}", "exec"), namespace)
    return problems


def _applies(label: str, backend: str | None) -> bool:
    if "backend" not in label:
        return True
    return backend is not None and backend in label.lower()


def _check_claim(claim: Claim, namespace: dict, where: str, applies: bool = True) -> list[str]:
    assign = _ASSIGN.match(claim.code)
    expr = assign["expr"] if assign else claim.code
    if claim.value.startswith("raises "):
        expected = claim.value.split()[1]
        try:
            eval(compile(expr, where, "eval"), namespace)
        except Exception as exc:  # the page says which exception; any other one is a failure
            if type(exc).__name__ == expected:
                return []
            return [f"{where}: `{claim.code}` raised {type(exc).__name__}, the page says {expected}"]
        return [f"{where}: `{claim.code}` raised nothing, the page says {expected}"]
    computed = eval(compile(expr, where, "eval"), namespace)
    if assign:
        namespace[assign["name"]] = computed
    if not applies:
        return []
    got = compare(claim, computed)
    return [] if got is None else [f"{where}: `{claim.code}` gives {got}, the page says {claim.value}"]


def stated(page: str, title: str, label: str) -> list[float]:
    """Every number a section states under ``label`` (any kind of block)."""
    claims = [c for kind in (False, True) for c in find_section(page, title).claims(kind)]
    values = [
        float(v) for c in claims if c.label == label and c.value[0] not in "r("
        for v in np.ravel(ast.literal_eval(c.value) if c.value[0] == "[" else float(c.value))
    ]
    assert values, f"docs/{page}, section '{title}', states no '{label}' number"
    return values


@pytest.mark.parametrize(("page", "title"), section_ids(keras=False))
def test_snippet_numbers(page, title):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problems = run_section(find_section(page, title), keras=False)
    assert not problems, "\n".join(problems)


def test_pages_state_numbers():
    for page in PAGES:
        claims = [c for s in read_sections(page) for kind in (False, True) for c in s.claims(kind)]
        assert len(claims) >= 10, f"docs/{page} states only {len(claims)} checked numbers"


# --- values worked by hand -----------------------------------------------------------------------

_L = math.log


def _xent(p):  # -log p
    return -_L(p)


def _bce(p, y):
    return -(y * _L(p) + (1 - y) * _L(1 - p))


def _kl(p, q):
    return sum(a * _L(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def _lse(xs):
    return _L(sum(math.exp(x) for x in xs))


def _dice(inter, den, s=1e-5):
    return 1 - (2 * inter + s) / (den + s)


def _huber(e, d=1.0):
    e = abs(e)
    return 0.5 * e * e if e <= d else d * (e - 0.5 * d)


_SMOOTHED = ((0.9, 0.9), (0.2, 0.1), (0.3, 0.1), (0.6, 0.9))
_P = "pitfalls.md"
_C = "conventions.md"
_R = "reductions.md"
_CE = "Probabilities fed to torch's CrossEntropyLoss"
_KL = "KLDivLoss with swapped arguments or without the log"
_MSE = "MSE as sum / len on 2-D input"
_DICE = "A channels-last Dice on channels-first tensors"
_HUBER = "Huber written with torch.min(tensor, float)"
_CLIP = "Keras's 1e-7 clip and torch's -100 log clamp"
_ORDER = "Torch's argument order in Keras"

HAND = {
    # pitfalls.md
    (_P, _CE, "wrong"): ((_lse([0.7, 0.2, 0.1]) - 0.7) + (_lse([0.1, 0.8, 0.1]) - 0.8)) / 2,
    (_P, _CE, "wrong (perfect prediction)"): _lse([1.0, 0.0, 0.0]) - 1.0,
    (_P, _CE, "right"): (_xent(0.7) + _xent(0.8)) / 2,
    (_P, _CE, "lossplug"): (_xent(0.7) + _xent(0.8)) / 2,
    (_P, _KL, "wrong (swapped)"): _kl([0.5, 0.3, 0.2], [0.7, 0.2, 0.1]),
    (_P, _KL, "wrong (no log)"): 0.7 * (_L(0.7) - 0.5) + 0.2 * (_L(0.2) - 0.3) + 0.1 * (_L(0.1) - 0.2),
    (_P, _KL, "wrong (mean)"): _kl([0.7, 0.2, 0.1], [0.5, 0.3, 0.2]) / 3,
    (_P, _KL, "right"): _kl([0.7, 0.2, 0.1], [0.5, 0.3, 0.2]),
    (_P, _KL, "lossplug"): _kl([0.7, 0.2, 0.1], [0.5, 0.3, 0.2]),
    (_P, _MSE, "wrong"): (0.25 + 0 + 1 + 0 + 4 + 0) / 2,
    (_P, _MSE, "right"): (0.25 + 0 + 1 + 0 + 4 + 0) / 6,
    (_P, _MSE, "lossplug"): (0.25 + 0 + 1 + 0 + 4 + 0) / 6,
    # per W column, pooled over C and H: the column with the object, then two plain ones
    (_P, _DICE, "wrong"): (_dice(0.3 + 0.9, 4) + 2 * _dice(1.8, 4)) / 3,
    # per class over H and W: background (5 pixels), object (1 pixel)
    (_P, _DICE, "right"): (_dice(4.5, 5.2 + 5) + _dice(0.3, 0.8 + 1)) / 2,
    (_P, _DICE, "lossplug"): (_dice(4.5, 5.2 + 5) + _dice(0.3, 0.8 + 1)) / 2,
    (_P, _DICE, "MONAI"): (_dice(4.5, 5.2 + 5) + _dice(0.3, 0.8 + 1)) / 2,
    # q = row minima [0.5, 0.2] broadcast along the last axis
    (_P, _HUBER, "wrong"): (0.125 + (0.02 + 2.8) + (0.125 + 0.5) + 0.02) / 4,
    (_P, _HUBER, "right"): (_huber(0.5) + _huber(3.0) + _huber(1.0) + _huber(0.2)) / 4,
    (_P, _HUBER, "lossplug"): (_huber(0.5) + _huber(3.0) + _huber(1.0) + _huber(0.2)) / 4,
    (_P, _CLIP, "torch.nn"): (100 + _bce(0.2, 0) + _bce(0.9, 1)) / 3,
    (_P, _CLIP, "lossplug"): (-_L(1e-7) + _bce(0.2, 0) + _bce(0.9, 1)) / 3,
    (_P, _CLIP, "keras"): (-_L(1e-7) + _bce(0.2, 0) + _bce(0.9, 1)) / 3,
    (_P, _CLIP, "keras (float32, p = 1, y = 0)"): -_L(2.0**-23),  # 1 - float32(1 - 1e-7) = 2^-23
    (_P, _CLIP, "logits"): _L(1 + math.exp(20.0)),
    (_P, _ORDER, "keras (right)"): (_bce(0.8, 1) + _bce(0.3, 0)) / 2,
    # conventions.md
    (_C, "Argument order", "torch.nn"): (_bce(0.8, 1) + _bce(0.3, 0)) / 2,
    (_C, "Clipping and logs", "lossplug (float64)"): -_L(1e-7),
    (_C, "Clipping and logs", "lossplug (float32)"): -_L(1e-7),  # 1 - p is clipped itself: no 2^-23
    (_C, "Huber", "torch.nn"): sum(_huber(e, 2) for e in (0.5, 3.0, 1.0, 0.2)) / 4,
    (_C, "Huber", "torch.nn (SmoothL1Loss)"): sum(_huber(e, 2) for e in (0.5, 3.0, 1.0, 0.2)) / 8,
    # labels smoothed with 0.2: 1 -> 0.9, 0 -> 0.1
    (_C, "Binary cross-entropy", "lossplug"): sum(_bce(p, y) for p, y in _SMOOTHED) / 4,
    (_C, "Categorical cross-entropy", "lossplug (sum 0.9)"): _xent(0.5),
    (_C, "Categorical cross-entropy", "keras (sum 0.9)"): _xent(0.5 / 0.9),
    (_C, "Sparse categorical cross-entropy", "keras (sum 0.9)"): _xent(0.5 / 0.9),
    (_C, "Sparse categorical cross-entropy", "keras (tensorflow backend)"): _xent(1e-7 / 0.8),
    (_C, "Sparse categorical cross-entropy", "keras (jax and torch backends)"): _xent(1e-7),
    # two positions, classes pooled: I = 0.8 + 0.7, sum p^2 = 1.26, sum p = 2, sum y = 2
    (_C, "Dice", "lossplug"): _dice(1.5, 1.26 + 2),
    (_C, "Dice", "lossplug (plain)"): _dice(1.5, 2 + 2),
    (_C, "Dice", "lossplug (per class)"): (_dice(0.8, 1.1 + 1) + _dice(0.7, 0.9 + 1)) / 2,
    (_C, "Dice", "lossplug (squared, per class)"): (_dice(0.8, 0.73 + 1) + _dice(0.7, 0.53 + 1)) / 2,
    (_C, "Dice", "lossplug (weights)"): (_dice(0.8, 1.1 + 1) + 3 * _dice(0.7, 0.9 + 1)) / 4,
    (_C, "Dice", "MONAI (weight)"): (_dice(0.8, 1.1 + 1) + 3 * _dice(0.7, 0.9 + 1)) / 2,
    (_C, "Dice", "keras"): 1 - 3 / (4 + 1e-7),
    (_C, "KL divergence", "lossplug"): _L(2),
    (_C, "KL divergence", "keras"): _L(2) + 1e-7 * _L(1e-7 / 0.5),
    # reductions.md
    (_R, "Mean and sum", "torch.nn"): 0.25 + 1 + 4,
    (_R, "Mean and sum", "keras"): 0.25 / 3 + (1 + 4) / 3,
}


def _nll(row, label):
    return _lse(row) - row[label]


_X = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.0], [1.0, -1.0, 3.0]]
_W = [1.0, 2.0, 3.0]
_CW = "Class weights and ignored targets"
_weighted = sum(_W[i] * _nll(_X[i], i) for i in range(3))
HAND[(_R, _CW, "torch.nn (index targets)")] = _weighted / sum(_W)
HAND[(_R, _CW, "torch.nn (probability targets)")] = _weighted / 3
HAND[(_R, _CW, "lossplug")] = _weighted / sum(_W)
HAND[(_R, _CW, "keras (sample_weight)")] = _weighted / 3
HAND[(_R, _CW, "lossplug (ignore_index)")] = (_nll(_X[0], 0) + 3 * _nll(_X[2], 2)) / 4
HAND[(_R, _CW, "lossplug (none)")] = [_nll(_X[0], 0), 0.0, 3 * _nll(_X[2], 2)]  # one per position
HAND[(_R, _CW, "keras (ignore)")] = (_nll(_X[0], 0) + _nll(_X[2], 2)) / 2


@pytest.mark.parametrize("key", list(HAND), ids=lambda k: f"{k[0]}:{k[1]}:{k[2]}")
def test_hand_values(key):
    page, title, label = key
    values = stated(page, title, label)
    hand = HAND[key] if isinstance(HAND[key], list) else [HAND[key]] * len(values)
    assert len(values) == len(hand), f"docs/{page} '{title}' states {len(values)} {label} numbers"
    for value, by_hand in zip(values, hand, strict=True):
        assert close(value, by_hand), f"docs/{page} '{title}' states {label}: {value}, by hand {by_hand:.7g}"


def test_every_right_and_wrong_number_of_pitfalls_is_worked_by_hand():
    for s in read_sections(_P):
        for claim in s.claims(False) + s.claims(True):
            if claim.label.startswith(("right", "wrong")) and claim.value[0] not in "r([":
                assert (_P, s.title, claim.label) in HAND, f"docs/pitfalls.md:{claim.line} has no hand value"


# --- the reduction="none" table of reductions.md -------------------------------------------------

NONE_TABLE = "What reduction=\"none\" returns"


def none_table() -> list[dict]:
    """The rows of the table: loss name, lossplug params, and each column's shape."""
    text = (DOCS / _R).read_text().split(f"## {NONE_TABLE}\n", 1)[1]
    rows = []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        shapes = [tuple(ast.literal_eval(c)) for c in cells[1:]]
        rows.append({
            "name": re.match(r"`(\w+)`", cells[0])[1],
            "params": {"aggregation": "batch"} if 'aggregation="batch"' in cells[0] else {},
            "torch_input": shapes[0], "last_input": shapes[1], "lossplug": shapes[2],
            "torch.nn": shapes[3], "lossplug.keras": shapes[4], "keras.losses": shapes[5],
        })
    assert len(rows) == 10, f"the table on docs/{_R} has {len(rows)} rows, expected 10"
    return rows


def none_inputs(name: str, shape: tuple, class_axis: int):
    """float64 ``(y_pred, y_true)`` for ``name``: probabilities, and targets that fit them."""
    rng = np.random.default_rng(0)
    if name in ("mse", "mae", "huber", "bce", "weighted_bce"):
        return rng.uniform(0.05, 0.95, shape), rng.integers(0, 2, shape).astype(np.float64)
    logits = rng.normal(size=shape)
    probs = np.exp(logits) / np.exp(logits).sum(axis=class_axis, keepdims=True)
    labels = rng.integers(0, shape[class_axis], np.delete(shape, class_axis))
    if name == "sparse_categorical_ce":
        return probs, labels
    if name == "kl_div":
        other = rng.normal(size=shape)
        return probs, np.exp(other) / np.exp(other).sum(axis=class_axis, keepdims=True)
    one_hot = np.moveaxis(np.eye(shape[class_axis])[labels], -1, class_axis)
    return probs, one_hot


def _torch_nn_none_shape(row) -> tuple:
    import torch
    from monai.losses import DiceLoss
    from torch import nn

    name = row["name"]
    y_pred, y_true = (torch.tensor(a) for a in none_inputs(name, row["torch_input"], 1))
    native = {
        "mse": lambda: nn.MSELoss(reduction="none")(y_pred, y_true),
        "mae": lambda: nn.L1Loss(reduction="none")(y_pred, y_true),
        "huber": lambda: nn.HuberLoss(reduction="none")(y_pred, y_true),
        "bce": lambda: nn.BCELoss(reduction="none")(y_pred, y_true),
        "weighted_bce": lambda: nn.BCEWithLogitsLoss(reduction="none", pos_weight=torch.tensor(2.0))(
            torch.logit(y_pred), y_true
        ),
        "categorical_ce": lambda: nn.CrossEntropyLoss(reduction="none")(y_pred.log(), y_true),
        "sparse_categorical_ce": lambda: nn.CrossEntropyLoss(reduction="none")(y_pred.log(), y_true),
        "dice": lambda: DiceLoss(reduction="none", batch=bool(row["params"]))(y_pred, y_true),
        "kl_div": lambda: nn.KLDivLoss(reduction="none")(y_pred.log(), y_true),
    }
    return tuple(native[name]().shape)


@pytest.mark.parametrize("row", none_table(), ids=lambda r: r["name"] + "-batch" * bool(r["params"]))
def test_none_table_numpy_torch(row):
    import lossplug.numpy
    import lossplug.torch
    from lossplug._spec import spec

    name, params = row["name"], {**row["params"], "reduction": "none"}
    y_pred, y_true = none_inputs(name, row["last_input"], -1)
    assert np.shape(getattr(lossplug.numpy, name)(y_pred, y_true, **params)) == row["lossplug"]
    y_pred, y_true = none_inputs(name, row["torch_input"], 1)
    module = getattr(lossplug.torch, spec(name).class_name)(**params)
    import torch

    assert tuple(module(torch.tensor(y_pred), torch.tensor(y_true)).shape) == row["lossplug"]
    assert _torch_nn_none_shape(row) == row["torch.nn"]
