"""fastrnn's benchmarks (SPEC §4).

    benches.harness     standard shapes, workloads, contenders, the timing loop and its worker processes
    benches.run         `python -m benches.run`: the comparison table (text, markdown, JSON)
    benches.test_bench  the same workloads under pytest-benchmark (`pytest benches/ --benchmark-only`)
"""
