"""Side-by-side benchmarks for featurebridge (issue 6).

``python -m benchmarks.run --quick|--full`` generates the dataset
(`benchmarks.data`), runs every approach (`benchmarks.approaches`) in its
own subprocess on the same files and writes a table to stdout and to
benchmarks/out/results-*.json. RESULTS.md holds recorded numbers.
"""

__all__ = ["data", "approaches", "run"]
