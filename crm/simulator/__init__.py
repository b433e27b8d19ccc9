"""A realistic, seeded B2B CRM to train and test on; the data card is ``card``'s docstring."""

from leadscore.crm.simulator.generate import SimulatedCrm, SimulationConfig, simulate

__all__ = ["SimulatedCrm", "SimulationConfig", "simulate"]
