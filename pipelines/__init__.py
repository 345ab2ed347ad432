"""featurebridge's runnable jobs (analyze, train, predict, run, demo) and the CLI.

Importing this package changes nothing in the environment: the CLI (and each
job's entry point) quiets TensorFlow's C++ logging when it starts.
"""
