"""``python -m featurebridge.pipelines COMMAND ...``: the `featurebridge` command."""

from featurebridge.pipelines.cli import console_main

console_main()
