"""Tryton as leadscore's CRM: its leads and opportunities read into leadscore's data model, scores written back.

``leadscore.crm.tryton.module`` is the Tryton module (``leadscore``) that
gives Tryton the fields and the activity records leadscore reads and writes;
the rest runs in leadscore's process, on Tryton's own API (``trytond``'s pool
and transactions), never on Tryton's tables behind its back.
"""
