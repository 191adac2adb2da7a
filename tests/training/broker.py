"""Read what the server queued for training workers, as a worker would receive it."""

from __future__ import annotations

from typing import Any


def take_training_task(timeout: float = 5.0) -> tuple[str, list[Any]]:
    """The next message on the ``train`` queue: (task name, args)."""
    from app.core.celery import get_celery

    app = get_celery()
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue("train")
        try:
            message = queue.get(block=True, timeout=timeout)
            message.ack()
        finally:
            queue.close()
    args = message.decode()[0] if isinstance(message.decode(), list) else message.payload[0]
    return message.headers["task"], args
