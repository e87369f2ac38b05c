"""Credits: the operator's `addcredits` command, the ledger over REST, and spending alerts."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from projects import services as project_services
from usage.models import CreditTransaction, SpendAlert


def _addcredits(*args, **options) -> str:
    out = StringIO()
    call_command("addcredits", *args, stdout=out, **options)
    return out.getvalue()


def _credits(person, org) -> str:
    response = person.api.get(f"/api/v1/organizations/{org.id}")
    assert response.status_code == 200, response.json()
    return response.json()["organization"]["credits"]


# --- addcredits ----------------------------------------------------------------------------------


def test_addcredits_raises_the_balance_and_records_a_ledger_entry(owner, org):
    assert _credits(owner, org) == "0.00"

    output = _addcredits(org.id, "100", note="welcome")

    assert _credits(owner, org) == "100.00"
    entry = CreditTransaction.objects.get(organization=org)
    assert (entry.kind, entry.amount, entry.balance_after, entry.note) == (
        "topup", Decimal("100"), Decimal("100"), "welcome",
    )
    assert org.id in output
    assert "100.00" in output


def test_addcredits_adds_to_the_existing_balance(owner, org):
    _addcredits(org.id, "100", note="welcome")
    _addcredits(org.id, "25.50")

    assert _credits(owner, org) == "125.50"
    assert CreditTransaction.objects.filter(organization=org).count() == 2
    latest = CreditTransaction.objects.filter(organization=org).order_by("-created_at").first()
    assert latest.balance_after == Decimal("125.50")
    assert latest.note  # a default note says who added it


def test_addcredits_refuses_an_unknown_organization(db):
    with pytest.raises(CommandError, match="org_doesnotexist"):
        _addcredits("org_doesnotexist", "10")
    assert CreditTransaction.objects.count() == 0


@pytest.mark.parametrize("amount", ["0", "0.00", "-5", "ten", "NaN"])
def test_addcredits_refuses_an_amount_that_is_not_a_positive_number(org, amount):
    with pytest.raises(CommandError):
        _addcredits(org.id, amount)

    org.refresh_from_db()
    assert org.credits == 0
    assert CreditTransaction.objects.count() == 0


# --- the ledger over REST ------------------------------------------------------------------------


def test_the_ledger_lists_entries_newest_first_with_amount_balance_kind_and_note(owner, org):
    _addcredits(org.id, "100", note="welcome")
    _addcredits(org.id, "5.25", note="bonus")

    response = owner.api.get(f"/api/v1/organizations/{org.id}/transactions")

    assert response.status_code == 200, response.json()
    entries = response.json()["transactions"]
    assert [(e["amount"], e["balanceAfter"], e["kind"], e["note"]) for e in entries] == [
        ("5.25", "105.25", "topup", "bonus"),
        ("100.00", "100.00", "topup", "welcome"),
    ]
    assert entries[0]["id"].startswith("txn_")
    assert entries[0]["createdAt"] >= entries[1]["createdAt"]
    assert response.json()["nextCursor"] is None


def test_developers_can_read_the_ledger_and_outsiders_cannot(developer, outsider, org):
    _addcredits(org.id, "10")

    assert len(developer.api.get(f"/api/v1/organizations/{org.id}/transactions").json()["transactions"]) == 1
    assert outsider.api.get(f"/api/v1/organizations/{org.id}/transactions").status_code == 404


def test_the_ledger_cursor_walks_every_entry_exactly_once(owner, org):
    for amount in range(1, 6):
        _addcredits(org.id, str(amount), note=f"entry {amount}")

    seen, pages, cursor = [], 0, None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = owner.api.get(f"/api/v1/organizations/{org.id}/transactions", **query)
        assert response.status_code == 200, response.json()
        page = response.json()
        assert len(page["transactions"]) <= 2
        seen += [e["note"] for e in page["transactions"]]
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break
        assert pages < 10, "the cursor never ends"

    assert seen == [f"entry {n}" for n in range(5, 0, -1)]
    assert pages == 3


@pytest.mark.parametrize("cursor", ["garbage", "bm90IGEgY3Vyc29y", "%%%"])
def test_a_cursor_the_api_did_not_give_out_is_refused_naming_cursor(owner, org, cursor):
    _addcredits(org.id, "1")

    response = owner.api.get(f"/api/v1/organizations/{org.id}/transactions", cursor=cursor)

    assert response.status_code == 400, response.json()
    assert "cursor" in response.json()["error"]["fields"]


@pytest.mark.parametrize("limit", ["0", "101", "many"])
def test_a_page_limit_outside_1_to_100_is_refused_naming_limit(owner, org, limit):
    response = owner.api.get(f"/api/v1/organizations/{org.id}/transactions", limit=limit)

    assert response.status_code == 400
    assert "limit" in response.json()["error"]["fields"]


# --- alerts --------------------------------------------------------------------------------------


def _alerts_url(org, alert_id=None):
    return f"/api/v1/organizations/{org.id}/alerts" + (f"/{alert_id}" if alert_id else "")


def test_it_creates_lists_and_deletes_spending_alerts(owner, org, project):
    monthly = owner.api.post(_alerts_url(org), {"thresholdUsd": "50"})
    daily = owner.api.post(_alerts_url(org), {"thresholdUsd": 5.5, "period": "day", "projectId": project.id})

    assert monthly.status_code == 201, monthly.json()
    assert daily.status_code == 201, daily.json()
    monthly, daily = monthly.json()["alert"], daily.json()["alert"]
    assert {"id", "thresholdUsd", "period", "projectId"} <= set(monthly)
    assert (monthly["thresholdUsd"], monthly["period"], monthly["projectId"]) == ("50.00", "month", None)
    assert (daily["thresholdUsd"], daily["period"], daily["projectId"]) == ("5.50", "day", project.id)

    listed = owner.api.get(_alerts_url(org))
    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()["alerts"]] == [monthly["id"], daily["id"]]

    assert owner.api.delete(_alerts_url(org, monthly["id"])).status_code == 204
    assert [a["id"] for a in owner.api.get(_alerts_url(org)).json()["alerts"]] == [daily["id"]]
    assert owner.api.delete(_alerts_url(org, monthly["id"])).status_code == 404


def test_admins_manage_alerts(admin, org):
    created = admin.api.post(_alerts_url(org), {"thresholdUsd": "10"})

    assert created.status_code == 201
    assert admin.api.delete(_alerts_url(org, created.json()["alert"]["id"])).status_code == 204


def test_developers_cannot_create_or_delete_alerts_but_can_read_them(developer, owner, org):
    assert developer.api.post(_alerts_url(org), {"thresholdUsd": "10"}).status_code == 403
    assert SpendAlert.objects.count() == 0

    alert_id = owner.api.post(_alerts_url(org), {"thresholdUsd": "10"}).json()["alert"]["id"]
    assert developer.api.delete(_alerts_url(org, alert_id)).status_code == 403
    assert SpendAlert.objects.filter(pk=alert_id).exists()
    assert [a["id"] for a in developer.api.get(_alerts_url(org)).json()["alerts"]] == [alert_id]


def test_outsiders_cannot_see_or_add_alerts(outsider, org):
    assert outsider.api.get(_alerts_url(org)).status_code == 404
    assert outsider.api.post(_alerts_url(org), {"thresholdUsd": "10"}).status_code == 404
    assert SpendAlert.objects.count() == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"thresholdUsd": "0"}, "thresholdUsd"),
        ({"thresholdUsd": 0}, "thresholdUsd"),
        ({"thresholdUsd": "-10"}, "thresholdUsd"),
        ({"thresholdUsd": "lots"}, "thresholdUsd"),
        ({}, "thresholdUsd"),
        ({"thresholdUsd": "10", "period": "week"}, "period"),
        ({"thresholdUsd": "10", "email": "x@example.com"}, "email"),
    ],
    ids=["zero_string", "zero_number", "negative", "not_a_number", "missing", "week", "unknown_field"],
)
def test_an_invalid_alert_is_refused_naming_the_field(owner, org, body, field):
    response = owner.api.post(_alerts_url(org), body)

    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert SpendAlert.objects.count() == 0


def test_an_alert_cannot_name_a_project_of_another_organization(owner, org, outsider):
    foreign = project_services.project_create(organization=outsider.organization, name="Theirs")

    response = owner.api.post(_alerts_url(org), {"thresholdUsd": "10", "projectId": foreign.id})

    assert response.status_code in (400, 404)
    assert SpendAlert.objects.count() == 0
