"""The CRM edge: data model, connection, bulk I/O, history loading and the simulator."""
