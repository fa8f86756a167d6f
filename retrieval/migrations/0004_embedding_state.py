import django.db.models.deletion
import pgvector.django.vector
from django.conf import settings
from django.db import migrations, models


def record_current_model(apps, schema_editor):
    # The vectors stored so far were made with the configured model.
    apps.get_model("retrieval", "EmbeddingState").objects.create(pk=1, model=settings.KB_EMBEDDING_MODEL)


class Migration(migrations.Migration):
    dependencies = [
        ("retrieval", "0003_posting_length"),
    ]

    operations = [
        migrations.CreateModel(
            name="NextEmbedding",
            fields=[
                (
                    "passage",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="next_embedding",
                        serialize=False,
                        to="retrieval.passage",
                    ),
                ),
                ("embedding", pgvector.django.vector.VectorField(dimensions=384)),
            ],
        ),
        migrations.CreateModel(
            name="EmbeddingState",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("model", models.CharField(max_length=100)),
                ("next_model", models.CharField(blank=True, max_length=100)),
            ],
        ),
        migrations.RunPython(record_current_model, migrations.RunPython.noop),
    ]
