"""On-demand benchmarks of the state branch (`python -m benchmarks.bench_state`).

They are not part of the test suite: each builds its repositories in a temporary
directory, measures gitgw against raw git plumbing doing the same work, and prints a table.
"""
