"""``python -m featurebridge.pipelines COMMAND ...``: the `featurebridge` command."""

import sys

from featurebridge.pipelines.cli import main

sys.exit(main())
