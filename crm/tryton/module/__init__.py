"""The Tryton module ``leadscore``: what Tryton needs to hold for leadscore to read leads and write scores back.

It adds to ``sale.opportunity`` the lead's profile as it came in (fields
Tryton has nowhere else: industry, company size, job title, seniority,
department), leadscore's verdict (its probability, tier, reasons, model
version and time), and a ``leadscore.activity`` model for what the lead did
(page views, downloads, e-mail clicks) that a website or marketing integration
fills. Channel and campaign come from Tryton's own ``marketing_campaign``
module, on which this one depends.

The classes are registered by ``tryton.cfg``; Tryton finds the module through
the ``trytond.modules`` entry point ``leadscore`` that installing leadscore
declares. It imports nothing from leadscore but its vocabulary (plain data), so
a Tryton server loads it without leadscore's scoring libraries being used.
"""
