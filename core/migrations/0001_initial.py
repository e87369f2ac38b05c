# The Event model moved here from the gateway app; its table stays as it is.

from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("gateway", "0002_cachedresponse_cachestats"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Event",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("data", models.JSONField()),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                    ],
                    options={"db_table": "gateway_event"},
                ),
            ],
        ),
    ]
