"""Property-based check (hypothesis): every compiled backend agrees with the NumPy reference on random
sizes, options, dtypes and lengths, within SPEC §5 — shapes and mixes no fixed test lists."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import COMPILED, KERNELS, RESULT_NAMES, assert_close, make_problem, run

pytestmark = pytest.mark.skipif(not COMPILED, reason="no compiled backend built")


@st.composite
def problems(draw):
    T, B = draw(st.integers(0, 9)), draw(st.integers(0, 13))
    I, H = draw(st.integers(1, 20)), draw(st.integers(1, 70))
    kind, opts = draw(st.sampled_from(KERNELS))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    use_lengths = draw(st.booleans())
    lengths = draw(st.lists(st.integers(0, T), min_size=B, max_size=B)) if use_lengths else None
    return dict(kind=kind, opts=opts, T=T, B=B, I=I, H=H, dtype=dtype, lengths=lengths,
                reverse=draw(st.booleans()), h0=draw(st.booleans()), bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=problems(), backend=st.sampled_from(COMPILED or ["numpy"]))
def test_compiled_matches_reference(case, backend):
    c = case
    p = make_problem(c["kind"], c["T"], c["B"], c["I"], c["H"], c["dtype"], c["seed"], c["h0"], c["bias"])
    lengths = None if c["lengths"] is None else np.array(c["lengths"], dtype=np.int64)
    ref = run(c["kind"], c["opts"], p, backend="numpy", reverse=c["reverse"], lengths=lengths)
    got = run(c["kind"], c["opts"], p, backend=backend, reverse=c["reverse"], lengths=lengths)
    for name in RESULT_NAMES:
        assert_close(got[name], ref[name], c["dtype"], f"{backend} {name} {c}")
