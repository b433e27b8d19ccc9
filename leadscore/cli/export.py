"""``leadscore export``: the scores that changed, as Salesforce or HubSpot files, and sent with ``--push``."""

from __future__ import annotations

import enum
import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from leadscore.cli.common import (
    CrmOption,
    app,
    console,
    crm_engine,
    environment_tokens,
    errors,
    user_errors,
)
from leadscore.errors import LeadscoreError
from leadscore.progress import for_console
from leadscore.redact import redact


class Crm(str, enum.Enum):
    salesforce = "salesforce"
    hubspot = "hubspot"


CREDENTIALS = {
    Crm.salesforce: ("SALESFORCE_INSTANCE_URL", "SALESFORCE_ACCESS_TOKEN"),
    Crm.hubspot: ("HUBSPOT_BASE_URL", "HUBSPOT_ACCESS_TOKEN"),
}
HUBSPOT_API = "https://api.hubapi.com"


@app.command()
@user_errors
def export(
    to: Annotated[Crm, typer.Option("--to", help="The CRM the scores go to.", case_sensitive=False)],
    out: Annotated[Path, typer.Option(help="Folder for the files: salesforce-Lead-001.csv (Bulk API 2.0 ingest CSV, "
                                           "100 MB at most) or hubspot-contacts-001.jsonl (a batch update of 100 "
                                           "records a line).")],
    crm: CrmOption = None,
    push: Annotated[bool, typer.Option(
        "--push", help="Send the files through the CRM's API and record what it accepted in crm_exports. Credentials "
                       "come from the environment: SALESFORCE_INSTANCE_URL and SALESFORCE_ACCESS_TOKEN, or "
                       "HUBSPOT_ACCESS_TOKEN.")] = False,
    key: Annotated[str | None, typer.Option(
        help="How a lead finds its CRM record: a field holding leadscore's lead id (Salesforce External ID field, "
             "default Leadscore_Lead_Id__c; HubSpot property with unique values), hs_object_id when leadscore's lead "
             "id is the HubSpot record id (HubSpot's default), or a CSV file mapping lead_id to the record id (Id "
             "for Salesforce, hs_object_id for HubSpot).", show_default=False)] = None,
    object_name: Annotated[str | None, typer.Option(
        "--object", help="The CRM object whose records get the scores. Default: Lead (Salesforce), contacts (HubSpot).",
        show_default=False)] = None,
    reasons_length: Annotated[int | None, typer.Option(
        help="Length of the reasons field: the reasons are cut after the last whole sentence that fits. Default: 255 "
             "(a Salesforce Text Area), 65,536 (HubSpot).", min=20, show_default=False)] = None,
    base_url: Annotated[str | None, typer.Option(
        help="The API's address, instead of $SALESFORCE_INSTANCE_URL or https://api.hubapi.com (a sandbox, a test "
             "server).", show_default=False)] = None,
    resend_all: Annotated[bool, typer.Option(
        "--all", help="Every score, not only those that changed since the CRM last accepted them.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object (for a cron log).")] = False,
) -> None:
    """Write the scores that changed since the CRM last accepted them as Salesforce or HubSpot files, and send them
    with --push.

    Exit status: 0 done, 2 a problem to fix (named in the message), 3 some rows were refused or left unsent
    (recorded in crm_exports, and sent again by the next export).
    """
    from leadscore.pipelines.export import ExportOptions, export_scores

    address, token = _credentials(to, base_url) if push else (None, None)
    target = _target(to, key, object_name, reasons_length)
    with ExitStack() as stack:
        with crm_engine(crm):  # opened read-only first, which refuses a mistyped SQLite path rather than create it
            pass
        engine = stack.enter_context(crm_engine(crm, writable=push))
        sender = _sender(to, address, token, stack) if push else None
        progress = stack.enter_context(for_console(errors if as_json else console))
        result = export_scores(engine, target, ExportOptions(out, push=push, resend_all=resend_all), sender, progress)
    if as_json:
        print(json.dumps(result.as_dict()))
    else:
        _print(result, target)
    if result.exit_status:
        raise typer.Exit(result.exit_status)


def _credentials(to: Crm, base_url: str | None) -> tuple[str, str]:
    address_variable, token_variable = CREDENTIALS[to]
    address = base_url or os.environ.get(address_variable) or (HUBSPOT_API if to is Crm.hubspot else None)
    token = os.environ.get(token_variable, "").strip()
    missing = [name for name, value in ((address_variable, address), (token_variable, token)) if not value]
    if missing:
        how = ("a private app's access token (Settings > Integrations > Private Apps)" if to is Crm.hubspot else
               "your org's address and an access token: `sf org display --target-org ORG --json` shows both")
        raise LeadscoreError(f"--push to {to.value} needs {' and '.join(missing)} in the environment: {how}. Nothing "
                             "was written or sent.")
    if not address.startswith(("https://", "http://")):
        raise LeadscoreError(f"The API address {address!r} is not a URL: write it as https://host.")
    return address, token


def _target(to: Crm, key: str | None, object_name: str | None, reasons_length: int | None):
    from leadscore.crm.export_keys import key_mapping

    if to is Crm.salesforce:
        from leadscore.crm import salesforce

        mapping = key_mapping(key or salesforce.KEY_FIELD, salesforce.RECORD_IDS, salesforce.key_field_problem)
        return salesforce.SalesforceTarget(mapping, object_name or salesforce.OBJECT,
                                           reasons_length or salesforce.REASONS_LENGTH)
    from leadscore.crm import hubspot

    mapping = key_mapping(key or hubspot.RECORD_IDS.column, hubspot.RECORD_IDS, hubspot.key_property_problem)
    return hubspot.HubSpotTarget(mapping, object_name or hubspot.OBJECT, reasons_length or hubspot.REASONS_LENGTH)


def _sender(to: Crm, address: str, token: str, stack: ExitStack):
    from leadscore.crm.remote import open_client

    client = stack.enter_context(open_client(address, token))
    if to is Crm.salesforce:
        from leadscore.crm.salesforce import API_VERSION, BulkIngest

        return BulkIngest(client, api_version=os.environ.get("SALESFORCE_API_VERSION") or API_VERSION)
    from leadscore.crm.hubspot import BatchUpdate

    return BatchUpdate(client)


def _print(result, target) -> None:
    tokens = environment_tokens()

    def say(text: str, style: str | None = None) -> None:
        console.print(redact(text, tokens), style=style, soft_wrap=True)

    kept = result.scores - result.pending - result.unmapped
    say(f"{result.description}: {result.pending:,} of {result.scores:,} scores to send, changed since {target.crm} "
        f"last accepted them or refused last time; {kept:,} unchanged.")
    if result.unmapped:
        say(f"{result.unmapped:,} leads to send have no row in {target.key.source}: left out. Add them to the file to "
            "send their scores.", "yellow")
    for file in result.files[:10]:
        say(f"Wrote {file.path} ({_rows(file.rows)}, {_size(file.bytes)}).")
    if len(result.files) > 10:
        say(f"... and {len(result.files) - 10} files more, {_rows(sum(file.rows for file in result.files[10:]))}.")
    if result.removed:
        say(f"Removed {len(result.removed)} files of an earlier export that this one does not have: "
            f"{', '.join(path.name for path in result.removed[:5])}.")
    if not result.pushed:
        if result.pending:
            say(f"Not sent (no --push): crm_exports still says what {target.crm} last accepted, since these files may "
                f"never be loaded, and the next export writes these rows again. To load them yourself, "
                f"{target.how_to_load()}; or rerun with --push.")
        return
    if not result.pending:
        say(f"Nothing to send: {target.crm} holds every score.")
        return
    say(f"Sent {_rows(result.sent)} to {target.crm}: {result.tally.accepted:,} accepted, "
        f"{result.tally.refused_rows:,} refused; recorded in crm_exports.", "green" if not result.exit_status else None)
    for code, rows in sorted(result.tally.refused.items(), key=lambda item: -item[1])[:8]:
        say(f"Refused {_rows(rows)}: {result.tally.examples[code]}", "yellow")
    if result.stopped:
        say(f"Stopped: {result.stopped}. {_rows(result.unsent)} not sent.", "yellow")
    if result.exit_status:
        say("Refused and unsent rows are sent again by the next export.", "yellow")


def _rows(count: int) -> str:
    return f"{count:,} row{'' if count == 1 else 's'}"


def _size(count: int) -> str:
    return f"{count / 1e6:,.1f} MB" if count >= 1e6 else f"{count / 1e3:,.1f} kB"
