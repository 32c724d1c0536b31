"""
Server processes (instances) in the database: each one's heartbeat, and the
presence of those that stopped beating. A connection counts only while its
instance's heartbeat is fresh (chat/selectors.py); these functions take the
dead ones' connections and members out, and say who left which room.
chat/liveness.py runs them on a timer and tells the rooms.
"""

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from .. import selectors
from ..models import Connection, Instance, Member
from .presence import Departure, member_drop_if_gone, room_leave

logger = logging.getLogger(__name__)


def instance_heartbeat(*, instance: str) -> bool:
    """Record that the instance is alive; True when its row had to be made anew
    (the first beat, or after others took it for dead and reaped it)."""
    _instance, created = Instance.objects.update_or_create(
        name=instance, defaults={"heartbeat": timezone.now()}
    )
    return created


def instance_remove(*, instance: str) -> list[Departure]:
    """A clean shutdown: the instance's connections leave at once."""
    return _instances_reap(Instance.objects.filter(name=instance))


def instance_lapse(*, instance: str, after: float) -> None:
    """A shutdown with a grace: the instance is taken for dead `after` seconds
    from now (its connections stay live until then), and the other instances'
    sweeps take out whoever did not come back to one of them meanwhile."""
    Instance.objects.filter(name=instance).update(
        heartbeat=selectors.live_cutoff() + timedelta(seconds=after)
    )


def instances_sweep() -> list[Departure]:
    """Forget instances that stopped beating; returns who left which room."""
    return _instances_reap(
        Instance.objects.filter(heartbeat__lt=selectors.live_cutoff())
    )


def instance_connections_prune(
    *, instance: str, serving: Iterable[str], older_than: datetime
) -> list[Departure]:
    """
    Forget connections this instance recorded but no longer serves (their leave
    failed, say in a database outage); who left which room, as the sweep says.
    Only connections opened before `older_than`: a younger one may belong to a
    socket still joining.
    """
    recorded = Connection.objects.filter(
        instance_id=instance, opened__lt=older_than
    ).values_list("id", flat=True)
    departures = []
    for connection_id in set(recorded) - set(serving):
        # Guarded: an HTTP participant's stream may have moved it to another
        # instance meanwhile.
        departure = room_leave(connection_id=connection_id, instance=instance)
        if departure:
            departures.append(departure)
    return departures


def _instances_reap(instances: QuerySet[Instance]) -> list[Departure]:
    departures = []
    for name in list(instances.values_list("name", flat=True)):
        with transaction.atomic():
            member_ids = set(
                Connection.objects.filter(instance_id=name).values_list(
                    "member_id", flat=True
                )
            )
            # Only the process whose delete removed the row reports the
            # departures, so several sweeping instances announce them once. The
            # delete repeats the query's condition: an instance whose heartbeat
            # came back since it was listed stays.
            deleted, _counts = instances.filter(name=name).delete()
            if not deleted:
                continue
            for member in Member.objects.filter(pk__in=member_ids).select_for_update():
                departure = member_drop_if_gone(member)
                if departure:
                    departures.append(departure)
        logger.info("instance_reaped instance=%s members=%d", name, len(member_ids))
    return departures
