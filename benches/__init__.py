"""fastrnn's benchmarks (SPEC §4). Each contender is timed in a worker process of its own, so that the
thread pools of different libraries never share a process; the rounds alternate the contenders; a
worker warms up, then takes the median of its calls, and the result is the median of the rounds.

    benches.workloads     standard shapes, workloads (cell, shape, pass, dtype), their inputs, GEMM work
    benches.contenders    the registry CONTENDERS (name -> contender), one module per contender
    benches.timing        time_call: the warm-up and the timed calls in a worker
    benches.memory        memory_step: the memory of one training step, measured in a worker
    benches.worker        `python -m benches.worker --worker NAME ...`: one worker process (JSON lines)
    benches.orchestrate   measure / measure_memory: the worker processes, rounds and medians (the protocol)
    benches.tables        the text and markdown tables
    benches.run           `python -m benches.run`: the comparison table (text, markdown, JSON)
    benches.torch_train   `python -m benches.torch_train`: a whole PyTorch training step, torch vs fastrnn.torch
    benches.scaling       `python -m benches.scaling`: thread scaling of fastrnn and torch
    benches.gemm          `python -m benches.gemm`: the FMA peak, fastrnn's GEMM and OpenBLAS (benches/gemm.c)
    benches.test_bench    the same workloads under pytest-benchmark (`pytest benches/ --benchmark-only`)
    benches.test_*        the benchmarks' own tests (`pytest benches`)
"""
