from django.db import migrations, models

BACKFILL = """
UPDATE retrieval_posting AS p SET length = ps.length FROM retrieval_passage AS ps WHERE ps.id = p.passage_id
"""


class Migration(migrations.Migration):
    dependencies = [
        ("retrieval", "0002_passage_embedding"),
    ]

    operations = [
        migrations.AddField(
            model_name="posting",
            name="length",
            field=models.PositiveIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
        migrations.RemoveIndex(model_name="posting", name="posting_term_scope"),
        migrations.AddIndex(
            model_name="posting",
            index=models.Index(
                fields=["term", "scope"],
                include=["passage", "frequency", "length"],
                name="posting_term_scope",
            ),
        ),
    ]
