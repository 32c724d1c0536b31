"""
Writes, one module per concern. Each state change is one named function,
`<noun>_<verb>`, that saves first and then tells the room on the channel layer
(chat/events.py): the database is the source of truth and the live event is a
doorbell that may be missed.

A synchronous function runs in Django's database thread; the coroutine function
for the same operation has the same name with an `a` in front (`room_join`,
`aroom_join`), as Django's own `aget` and `acreate`. Every coroutine function
here starts with that `a`, with or without a synchronous twin.

- instances: each server process's heartbeat, and the presence of the ones
  that stopped (chat/liveness.py runs them);
- presence: joining and leaving rooms, and telling the room;
- trips: work waiting for a database thread, taken there in lots;
- names: registered users' names, which no nickname may pose as;
- messages: saving messages with their seqs, and posting them;
- save_queue: the messages of a room waiting for their save, and its bound;
- moderation: what a moderator does in the admin.

Callers import the module (`from chat.services import presence`); nothing is
re-exported here.
"""
