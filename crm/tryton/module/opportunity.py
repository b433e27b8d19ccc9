"""``sale.opportunity`` extended with the lead's profile as it came in and leadscore's score of it."""

from leadscore.crm.vocabulary import (
    COMPANY_SIZE_LABELS,
    COMPANY_SIZES,
    SENIORITIES,
    SENIORITY_LABELS,
)
from trytond.model import fields
from trytond.pool import PoolMeta

# The codes leadscore writes, with the words a salesperson reads; empty until the lead is first scored.
TIER_SELECTION = [(None, ""), ("none", "Not qualified"), ("mql", "MQL"), ("sql", "SQL")]


class Opportunity(metaclass=PoolMeta):
    __name__ = "sale.opportunity"

    # The lead's profile, stored as it was when the lead came in (the web form or the import fills it): a value
    # corrected once the deal was known would teach the model the outcome. Channel and campaign are the
    # marketing_campaign module's medium and campaign.
    lead_industry = fields.Char(
        "Industry", help="The company's industry as the lead gave it: software, financial_services, "
                         "professional_services, healthcare, manufacturing, logistics, media, retail, government, "
                         "education, or your own value.")
    lead_company_size = fields.Selection(
        [(None, "")] + [(code, COMPANY_SIZE_LABELS[code]) for code in COMPANY_SIZES], "Company Size",
        help="The company's number of employees, as the lead gave it.")
    lead_job_title = fields.Char("Job Title", help="The lead's job title as written.")
    lead_seniority = fields.Selection(
        [(None, "")] + [(code, SENIORITY_LABELS[code]) for code in SENIORITIES], "Seniority")
    lead_department = fields.Char(
        "Department", help="marketing, sales, operations, it, engineering, finance, hr, other, or your own value.")
    leadscore_activities = fields.One2Many(
        "leadscore.activity", "opportunity", "Marketing Activities",
        help="What the lead did (pages viewed, downloads, e-mail clicks), as the website or the marketing "
             "tools report it.")

    # leadscore's verdict, written by its nightly job only. The job also writes conversion_probability while the
    # record is a lead; once sales work it, that field is the salesperson's forecast and leadscore's number stays
    # here beside it.
    leadscore_probability = fields.Float(
        "Leadscore Probability", digits=(1, 4), readonly=True,
        help="leadscore's calibrated probability that the lead becomes a customer within the model's horizon.")
    leadscore_tier = fields.Selection(TIER_SELECTION, "Leadscore Tier", readonly=True, sort=False)
    leadscore_reasons = fields.Text(
        "Leadscore Reasons", readonly=True, help="Why the score is what it is: the strongest reasons, one a line.")
    leadscore_model_version = fields.Char(
        "Leadscore Model", readonly=True, help="The registered model that scored the lead, as name/version.")
    leadscore_scored_at = fields.DateTime("Leadscore Scored At", readonly=True)

    @classmethod
    def copy(cls, opportunities, default=None):
        # A copied record is a new lead: it has done nothing yet and has not been scored.
        default = dict(default or {})
        for name in ("leadscore_activities", "leadscore_probability", "leadscore_tier", "leadscore_reasons",
                     "leadscore_model_version", "leadscore_scored_at"):
            default.setdefault(name, None)
        return super().copy(opportunities, default=default)
