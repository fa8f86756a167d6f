from django.db import migrations

# Vectors of chunks already indexed move into the search index; chunks keep a vector only
# while their version is being embedded.
MOVE_VECTORS = """
UPDATE retrieval_passage AS p SET embedding = c.embedding FROM kb_chunk AS c WHERE c.id = p.id;
UPDATE kb_chunk SET embedding = NULL WHERE id IN (SELECT id FROM retrieval_passage);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("kb", "0001_initial"),
        ("retrieval", "0002_passage_embedding"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="chunk", name="chunk_embedding_hnsw"),
        migrations.RunSQL(MOVE_VECTORS, reverse_sql=migrations.RunSQL.noop),
    ]
