"""TensorFlow's own logging, set before TensorFlow is imported (not at import of ours)."""

import os

__all__ = ["quiet_tensorflow"]


def quiet_tensorflow() -> None:
    """Keeps TensorFlow's C++ start-up chatter out of users' terminals unless
    they ask for it (TF_CPP_MIN_LOG_LEVEL=0). Jobs call it before importing TF."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
