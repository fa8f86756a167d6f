"""What waits in the Celery queues. A job that has waited longer than KB_QUEUED_JOB_TIMEOUT counts
as lost (its message never reached the broker) only while its queue is empty: behind a backlog, as
when a large upload keeps the embedding workers busy for hours, its message is most likely still
in the queue, and sending it again would only pile duplicates on the backlog."""

from amqp.exceptions import ChannelError

from kb.celery import app as celery_app


def waiting_messages(queue: str) -> int:
    """Messages in `queue` that no worker has taken yet (0 for a queue nobody has declared yet)."""
    with celery_app.connection_for_read() as connection:
        try:
            return connection.default_channel.queue_declare(queue=str(queue), passive=True).message_count
        except ChannelError:
            return 0
