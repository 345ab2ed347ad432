"""Shared pytest fixtures. Fixtures that start real servers live beside the tests
that use them; this file keeps the process environment sane for all tests."""

import os
import sys

# The external worker pool starts workers with `python` from PATH: make it ours.
_VENV_BIN = os.path.dirname(sys.executable)
if not os.environ.get("PATH", "").startswith(_VENV_BIN):
    os.environ["PATH"] = _VENV_BIN + os.pathsep + os.environ.get("PATH", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
