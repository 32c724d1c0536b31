"""
Nicknames compared by skeleton (chat/nicknames.py) instead of the database's
lower(), and the skeletons of registered users' usernames.
"""

import django.db.models.deletion
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import migrations, models

from chat.nicknames import skeleton

SKELETON_MAX_LENGTH = 256


def fill_member_skeletons(apps, schema_editor):
    """
    Give each member its nickname's skeleton. Members whose nicknames now share
    a skeleton in a room (émile beside Émile on SQLite, admin beside a Cyrillic
    look-alike) were look-alikes held at once: the first to have joined keeps
    the nickname.
    """
    Member = apps.get_model("chat", "Member")
    seen = set()
    duplicates = []
    # Presence only (members leave with their last connection): few rows.
    for member in Member.objects.order_by("pk").only("pk", "room_id", "nickname"):
        member.skeleton = skeleton(member.nickname)
        key = (member.room_id, member.skeleton)
        if key in seen:
            duplicates.append(member.pk)
            continue
        seen.add(key)
        member.save(update_fields=["skeleton"])
    if duplicates:
        # Their connections go with them (on_delete=CASCADE).
        Member.objects.filter(pk__in=duplicates).delete()
        if schema_editor.connection.vendor == "postgresql":
            # The deletes queued the deferred foreign key checks, and PostgreSQL
            # alters no table with checks pending: the constraint added next.
            schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def fill_registered_names(apps, schema_editor):
    """The skeleton of every user's username; of look-alikes, the oldest user's."""
    User = apps.get_model(settings.AUTH_USER_MODEL)
    RegisteredName = apps.get_model("chat", "RegisteredName")
    # The historical model has no USERNAME_FIELD; the model itself has.
    username_field = get_user_model().USERNAME_FIELD
    taken = set()
    names = []
    users = User.objects.order_by("pk").values_list("pk", username_field)
    for pk, username in users.iterator():
        name = skeleton(username or "")
        if len(name) > SKELETON_MAX_LENGTH or name in taken:
            continue
        taken.add(name)
        names.append(RegisteredName(user_id=pk, skeleton=name))
    RegisteredName.objects.bulk_create(names, batch_size=500)


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0002_general_room'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='member',
            name='member_room_nickname_ci',
        ),
        migrations.AddField(
            model_name='member',
            name='skeleton',
            field=models.CharField(default='', max_length=SKELETON_MAX_LENGTH),
            preserve_default=False,
        ),
        migrations.RunPython(fill_member_skeletons, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='member',
            constraint=models.UniqueConstraint(fields=('room', 'skeleton'), name='member_room_skeleton'),
        ),
        migrations.CreateModel(
            name='RegisteredName',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('skeleton', models.CharField(max_length=SKELETON_MAX_LENGTH, unique=True)),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.RunPython(fill_registered_names, migrations.RunPython.noop),
    ]
