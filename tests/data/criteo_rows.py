"""Hand-made raw Criteo lines and files shared by the data tests."""
import gzip

import numpy as np

from mindrec.data.criteo import NUM_CATEGORICAL, NUM_DENSE


def line(label, ints=(), cats=()) -> str:
    """A raw line; ``ints`` and ``cats`` fill I1.. and C1.. in order, the rest is missing."""
    ints = [str(v) for v in ints] + [""] * (NUM_DENSE - len(ints))
    cats = list(cats) + [""] * (NUM_CATEGORICAL - len(cats))
    return "\t".join([str(label), *ints, *cats]) + "\n"


ONES = ["1"] * 10  # I4..I13
# C1: b b a a a c (a=0xa seen 3 times, b=0xb twice, c once); C2: ff five times, one missing;
# C3: 0xabcdef01 three times (case does not matter), 0x1 once, two missing.
HAND_ROWS = [
    line(1, ["5", "", "-1", *ONES], ["b", "ff", "ABCDEF01"]),
    line(0, ["-3", "", "-2", *ONES], ["b", "ff", "ABCDEF01"]),
    line(0, ["", "", "-3", *ONES], ["a", "", "abcdef01"]),
    line(1, ["10", "", "-4", *ONES], ["a", "ff", "00000001"]),
    line(0, ["0", "", "-5", *ONES], ["a", "ff", ""]),
    line(1, ["2", "", "-6", *ONES], ["c", "ff", ""]),
]


def random_rows(n, seed=0):
    """``n`` raw lines with small random vocabularies and some missing values."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    ints = rng.integers(-5, 50, (n, NUM_DENSE)).astype(str)
    ints[rng.random(ints.shape) < 0.2] = ""
    cats = np.char.mod("%x", rng.integers(0, 12, (n, NUM_CATEGORICAL)) * 4099)
    cats[rng.random(cats.shape) < 0.1] = ""
    return [line(labels[i], ints[i], cats[i]) for i in range(n)]


def write(path, rows, *, final_newline=True, newline="\n", bom=False):
    """Write raw lines to ``path`` (gzip when it ends in .gz), with LF or CRLF line ends
    and optionally a UTF-8 byte order mark."""
    text = "".join(rows)
    if not final_newline:
        text = text.rstrip("\n")
    data = (b"\xef\xbb\xbf" if bom else b"") + text.replace("\n", newline).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path
