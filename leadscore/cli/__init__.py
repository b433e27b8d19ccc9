"""The ``leadscore`` command line: thin wrappers around the pipeline stages, one module per group of commands."""

from leadscore.cli.common import app

# Importing a command module registers its commands on the app; `leadscore --help` lists them in this order.
from leadscore.cli import crm_commands  # noqa: E402, F401, I001
from leadscore.cli import training  # noqa: E402, F401
from leadscore.cli import scoring  # noqa: E402, F401
from leadscore.cli import backtest  # noqa: E402, F401
from leadscore.cli import export  # noqa: E402, F401

__all__ = ["app"]
