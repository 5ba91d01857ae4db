from __future__ import annotations

import numpy as np
import pytest

from ui import figmemo


def test_fingerprint_sees_every_byte_and_type():
    a = np.arange(10_000, dtype=np.float32)
    b = a.copy()
    b[7_777] += 1  # one element deep inside a big array
    assert figmemo.fingerprint(a) == figmemo.fingerprint(a.copy())
    assert figmemo.fingerprint(a) != figmemo.fingerprint(b)
    assert figmemo.fingerprint(a) != figmemo.fingerprint(a.astype(np.float64))
    assert figmemo.fingerprint([1, 2]) != figmemo.fingerprint((1, 2)) != figmemo.fingerprint([1, 2, None])
    assert figmemo.fingerprint({"x": 1}) == figmemo.fingerprint({"x": 1}) != figmemo.fingerprint({"x": 1.0})
    with pytest.raises(TypeError):
        figmemo.fingerprint(object())


def test_memo_builds_once_per_input_and_evicts():
    calls = []
    suffix = [""]  # not an argument: it does not enter the key

    def build(x, tag):
        calls.append(f"{tag}{suffix[0]}")
        return {"tag": tag}

    first = figmemo.memo(build, np.ones(3), "a")
    assert figmemo.memo(build, np.ones(3), "a") is first
    figmemo.memo(build, np.ones(3), "b")
    assert calls == ["a", "b"]
    for i in range(figmemo.MAX_FIGURES):
        figmemo.memo(build, i, "n")
    suffix[0] = " again"
    figmemo.memo(build, np.ones(3), "a")
    assert calls[-1] == "a again"  # evicted by the newer entries
