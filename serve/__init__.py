"""Serving: batch scoring that writes probability, tier and reasons back to the CRM.

Filled by the scoring issues; the CRM's ``lead_scores`` and ``lead_score_history``
tables (``leadscore.crm.schema``) are its destination.
"""
