"""Hand-made raw Criteo lines shared by the data tests."""
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
