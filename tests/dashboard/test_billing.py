"""Credits and spending alerts of an organization: the balance and its ledger, alerts added
and deleted by admins, and the alerts that fired."""

import re

from django.utils import timezone

from tests.dashboard.conftest import text
from usage import services as usage_services
from usage.models import AlertNotice, SpendAlert


def _url(org, rest="billing/"):
    return f"/org/{org.pk}/{rest}"


def test_the_balance_and_the_ledger_newest_first(owner, org, as_user):
    usage_services.credits_add(organization=org, amount="100", note="first top-up")
    usage_services.credits_add(organization=org, amount="-2.5", kind="adjustment", note="correction")

    page = text(as_user(owner).get(_url(org)))

    assert 'id="credits-balance">$97.50<' in page
    assert page.index("correction") < page.index("first top-up")
    assert "+$100.00" in page and "-$2.50" in page


def test_the_ledger_scrolls_to_older_entries(owner, org, as_user):
    for i in range(52):
        usage_services.credits_add(organization=org, amount="1", note=f"entry {i}")
    browser = as_user(owner)

    first = text(browser.get(_url(org)))
    more = re.search(r'<tr class="more" hx-get="([^"]+)" hx-trigger="revealed"', first)[1].replace("&amp;", "&")
    rest = text(browser.get(more, htmx=True))

    assert "entry 51" in first and "entry 1<" not in first
    assert "entry 1<" in rest and "entry 0<" in rest and "<html" not in rest


def test_an_admin_adds_alerts_for_the_organization_and_for_a_project(admin, org, project, as_user):
    browser = as_user(admin)

    browser.post(_url(org, "alerts/add"), {"threshold_usd": "50", "period": "month", "project": ""}, htmx=True)
    response = browser.post(_url(org, "alerts/add"), {"threshold_usd": "5", "period": "day", "project": project.pk}, htmx=True)

    assert "Alert added." in text(response) and "Production API" in text(response)
    assert sorted((int(a.threshold_usd), a.period, a.project_id) for a in SpendAlert.objects.filter(organization=org)) == [
        (5, "day", project.pk), (50, "month", None)
    ]


def test_a_zero_threshold_is_refused_in_place(owner, org, as_user):
    response = as_user(owner).post(_url(org, "alerts/add"), {"threshold_usd": "0", "period": "month"}, htmx=True)

    assert response.status_code == 400 and "must be more than zero USD" in text(response)
    assert not SpendAlert.objects.exists()


def test_deleting_an_alert(owner, org, as_user):
    alert = usage_services.alert_create(organization=org, threshold_usd="10")

    response = as_user(owner).post(_url(org, f"alerts/{alert.pk}/delete"), htmx=True)

    assert "Alert deleted." in text(response)
    assert not SpendAlert.objects.filter(pk=alert.pk).exists()


def test_fired_alerts_are_listed(owner, org, as_user):
    alert = usage_services.alert_create(organization=org, threshold_usd="10", period="month")
    AlertNotice.objects.create(alert=alert, period_start=timezone.now().date().replace(day=1), spend="12.34", emailed=True)

    page = text(as_user(owner).get(_url(org)))

    assert "$12.34" in page and "$10.00 per month · organization" in page


def test_developers_see_credits_and_alerts_without_controls(developer, org, as_user):
    alert = usage_services.alert_create(organization=org, threshold_usd="10")
    browser = as_user(developer)

    page = text(browser.get(_url(org)))

    assert "$10.00" in page and "Add an alert" not in page and "/delete" not in page
    assert browser.post(_url(org, "alerts/add"), {"threshold_usd": "5", "period": "day"}).status_code == 403
    assert browser.post(_url(org, f"alerts/{alert.pk}/delete")).status_code == 403
    assert SpendAlert.objects.count() == 1


def test_outsiders_get_404(outsider, org, as_user):
    alert = usage_services.alert_create(organization=org, threshold_usd="10")
    browser = as_user(outsider)

    assert browser.get(_url(org)).status_code == 404
    assert browser.post(_url(org, "alerts/add"), {"threshold_usd": "5", "period": "day"}).status_code == 404
    assert browser.post(_url(org, f"alerts/{alert.pk}/delete")).status_code == 404
    assert as_user(outsider).post(_url(outsider.organization, f"alerts/{alert.pk}/delete")).status_code == 404
    assert SpendAlert.objects.filter(pk=alert.pk).exists()
