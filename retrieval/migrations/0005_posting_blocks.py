import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models

# Pack each (scope, term, block of 1,024 passage ids)'s postings as retrieval.postings.POSTING
# records: big-endian id, frequency and length, sorted by id.
PACK = """
INSERT INTO retrieval_postingblock (scope, term, block, postings)
SELECT scope, term, passage_id >> 10,
       string_agg(int8send(passage_id) || int4send(frequency) || int4send(length), ''::bytea
                  ORDER BY passage_id)
FROM retrieval_posting GROUP BY scope, term, passage_id >> 10;
INSERT INTO retrieval_passageterms (passage_id, terms)
SELECT passage_id, array_agg(term ORDER BY term) FROM retrieval_posting GROUP BY passage_id;
"""

UNPACK = """
INSERT INTO retrieval_posting (passage_id, term, scope, frequency, length)
SELECT ('x' || encode(substring(postings FROM n * 16 + 1 FOR 8), 'hex'))::bit(64)::bigint, term, scope,
       ('x' || encode(substring(postings FROM n * 16 + 9 FOR 4), 'hex'))::bit(32)::integer,
       ('x' || encode(substring(postings FROM n * 16 + 13 FOR 4), 'hex'))::bit(32)::integer
FROM retrieval_postingblock, generate_series(0, length(postings) / 16 - 1) AS n;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("retrieval", "0004_embedding_state"),
    ]

    operations = [
        migrations.CreateModel(
            name="PostingBlock",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("scope", models.BigIntegerField()),
                ("term", models.TextField()),
                ("block", models.BigIntegerField()),
                ("postings", models.BinaryField()),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("term", "scope", "block"), name="unique_posting_block")
                ],
            },
        ),
        migrations.RunSQL(
            "ALTER TABLE retrieval_postingblock ALTER COLUMN postings SET STORAGE EXTERNAL",
            migrations.RunSQL.noop,
        ),
        migrations.CreateModel(
            name="PassageTerms",
            fields=[
                (
                    "passage",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="terms",
                        serialize=False,
                        to="retrieval.passage",
                    ),
                ),
                (
                    "terms",
                    django.contrib.postgres.fields.ArrayField(base_field=models.TextField(), size=None),
                ),
            ],
        ),
        migrations.RunSQL(PACK, UNPACK),
        migrations.DeleteModel(
            name="Posting",
        ),
    ]
