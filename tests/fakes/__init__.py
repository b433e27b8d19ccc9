"""In-repo fakes of the CRM APIs leadscore writes to: Salesforce's Bulk API 2.0 ingest and HubSpot's CRM v3 batch
update. Each enforces the rules its vendor documents and answers in the vendor's words, so that a test passing
against a fake says something about the real service. ``served`` puts either behind a real HTTP server for the
command line's tests."""

from fakes.hubspot import FakeHubSpot
from fakes.salesforce import FakeSalesforce
from fakes.serving import served

__all__ = ["FakeHubSpot", "FakeSalesforce", "served"]
