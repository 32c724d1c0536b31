"""
The fan-out benchmark (docs/benchmarks.md); run from the project's root as
`.venv/bin/python -m bench.run`. Its servers come from the test harness
(tests/harness/).
"""
