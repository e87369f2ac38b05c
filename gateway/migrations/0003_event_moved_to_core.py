# The Event model moved to the core app; its table stays as it is.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("gateway", "0002_cachedresponse_cachestats"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="Event")]),
    ]
