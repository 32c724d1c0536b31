"""
manage.py room_create <slug> [--name NAME] [--topic TOPIC]: a room made from a
shell (a deployment script, the process tests), validated as the admin
validates it; prints the new room's id.
"""

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from chat.models import Room


class Command(BaseCommand):
    help = "Create a chat room and print its id."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug", help="the room's address: /rooms/<slug>/")
        parser.add_argument("--name", help="the room's name (default: the slug)")
        parser.add_argument("--topic", default="", help="the room's topic")

    def handle(
        self, *args: Any, slug: str, name: str | None, topic: str, **options: Any
    ) -> None:
        room = Room(slug=slug, name=name or slug, topic=topic)
        try:
            room.full_clean()
        except ValidationError as exc:
            raise CommandError(
                "; ".join(
                    f"{field}: {' '.join(messages)}"
                    for field, messages in exc.message_dict.items()
                )
            ) from exc
        room.save()
        self.stdout.write(str(room.pk))
