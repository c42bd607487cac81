"""The live queue's work: a chat answer written by a worker that keeps the system loaded
(evalsite/answering/chat.py). Start one with ``-P threads`` so that its threads share the loaded
backends: ``celery -A evalsite worker -Q live -P threads -c 4``."""

from celery import shared_task
from celery.signals import worker_ready
from django.db import connections

from evalsite.answering import chat


@shared_task(name=chat.ANSWER_TASK, acks_late=False, ignore_result=True)
def chat_answer(turn_pk: int) -> str:
    """Write one chat turn's answer; a message delivered twice finds the turn written and stops."""
    try:
        return chat.write(turn_pk).state
    finally:
        connections.close_all()  # a pool thread's own connection, not kept across messages


@worker_ready.connect
def preload_chat_systems(sender=None, **_kwargs) -> None:
    """A worker that takes the live queue loads CHAT_PRELOAD_SYSTEMS as it starts."""
    consumer = getattr(sender, "task_consumer", None)
    queues = {queue.name for queue in getattr(consumer, "queues", [])}
    if chat.LIVE_QUEUE in queues:
        chat.preload_configured()
