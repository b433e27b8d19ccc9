"""leadscore: lead-conversion scoring learned from CRM history.

The distribution installs the project's top-level folders under this one
namespace: ``leadscore.crm`` (data model, connectors, simulator),
``leadscore.features`` (point-in-time features and their registry),
``leadscore.pipelines`` (the stages the CLI and notebooks call).
"""

__version__ = "0.1.0"
