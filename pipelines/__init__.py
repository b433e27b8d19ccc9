"""Pipeline stages with typed inputs and outputs; the CLI and notebooks call these."""
