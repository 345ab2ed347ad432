"""featurebridge's runnable jobs (analyze, train, predict, run, demo) and the CLI."""

import os

# The jobs import TensorFlow; keep its C++ start-up chatter out of users'
# terminals unless they ask for it (set TF_CPP_MIN_LOG_LEVEL=0 to see it).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
