from django.core.management.base import BaseCommand, CommandError

from core.errors import ServiceError
from core.money import format_money
from projects.models import Organization
from usage.services import credits_add


class Command(BaseCommand):
    help = "Adds credits (USD) to an organization's balance, with a ledger entry."

    def add_arguments(self, parser):
        parser.add_argument("org_id")
        parser.add_argument("amount", help="USD, e.g. 100 or 25.50")
        parser.add_argument("--note", default="", help="why, shown in the ledger")

    def handle(self, *args, org_id, amount, note, **options):
        organization = Organization.objects.filter(pk=org_id).first()
        if organization is None:
            raise CommandError(f"no organization with id {org_id}")
        try:
            entry = credits_add(organization=organization, amount=amount, note=note or "added by an operator")
        except ServiceError as e:
            raise CommandError(e.message) from None
        self.stdout.write(
            f"added {format_money(entry.amount)} USD to {organization.id}; "
            f"balance {format_money(entry.balance_after)} USD ({entry.id})"
        )
