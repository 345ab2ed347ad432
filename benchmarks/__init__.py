"""Side-by-side benchmarks for featurebridge (issue 6).

``python -m benchmarks.run --quick|--full`` generates the dataset
(`benchmarks.data`), runs every approach (`benchmarks.approaches`) in its
own subprocess on the same files, times the exported model in a fresh
TensorFlow-only process (`benchmarks.serving`) and writes a table to stdout and to
benchmarks/out/results-*.json. RESULTS.md holds recorded numbers.
"""

__all__ = ["data", "approaches", "run", "serving"]
