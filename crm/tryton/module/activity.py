"""``leadscore.activity``: one thing a lead did, at the moment it did it.

Tryton records sales work (the opportunity, its lines, its sales) but not a
lead's marketing engagement. A website, form handler or marketing-automation
integration creates these records through Tryton's API, one per event, with
the time of the event itself: leadscore counts them over 7, 30 and 90 days
before each moment it scores, so a time when the record was keyed in instead
would shift every count.
"""

from leadscore.crm.vocabulary import ACTIVITY_TYPES
from trytond.model import Index, ModelSQL, ModelView, fields


class Activity(ModelSQL, ModelView):
    __name__ = "leadscore.activity"

    opportunity = fields.Many2One(
        "sale.opportunity", "Lead", required=True, ondelete="CASCADE",
        help="The lead (or opportunity) who did it.")
    occurred_at = fields.DateTime("Occurred At", required=True, help="When the lead did it (UTC).")
    type = fields.Selection([(kind.code, kind.past) for kind in ACTIVITY_TYPES], "Type", required=True, sort=False)
    detail = fields.Char("Detail", size=200, help="Free text, e.g. the page or the campaign e-mail; not scored.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        table = cls.__table__()
        # leadscore reads a lead's activities in time order; the nightly job reads those before a moment.
        cls._sql_indexes.add(Index(table, (table.opportunity, Index.Range()), (table.occurred_at, Index.Range())))
        cls._order.insert(0, ("occurred_at", "DESC"))
        # Whoever may read or change the lead may read or change what it did.
        cls.__access__.add("opportunity")
