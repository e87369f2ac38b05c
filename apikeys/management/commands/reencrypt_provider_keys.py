from django.core.management.base import BaseCommand

from apikeys.services import provider_keys_reencrypt


class Command(BaseCommand):
    help = "Re-encrypts every provider key with the first ENCRYPTION_KEYS key (after adding a new one)."

    def handle(self, *args, **options):
        count = provider_keys_reencrypt()
        self.stdout.write(f"re-encrypted {count} provider keys; older keys can now leave ENCRYPTION_KEYS")
