"""Side-by-side benchmarks for featurebridge (issues 6 and 14).

``python -m benchmarks.run --quick|--full`` generates the datasets
(`benchmarks.data`: the main spec and the text spec), runs every approach
(`benchmarks.approaches`) in its own subprocess on the same files, times the
cold start of a 1k-row job, times the exported model in a fresh
TensorFlow-only process (`benchmarks.serving`), checks the targets and writes
tables to stdout and to benchmarks/out/results-*.json (``--write-results``:
the generated blocks of RESULTS.md). RESULTS.md holds recorded numbers.
"""

__all__ = ["data", "approaches", "run", "serving"]
