"""The bot that docs/protocol.md documents, run against a real server."""

import os
import re

import pytest

from tests.unit.test_protocol import DOC, _section


def _documented_bot():
    section = _section(DOC.read_text(), "A minimal bot")
    blocks = re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert len(blocks) == 1, "the bot section has one Python block"
    return blocks[0]


@pytest.mark.processes
async def test_the_documented_bot_answers_and_comes_back_after_a_restart(
    tmp_path, _collected_static
):
    from tests.harness.clients import ChatClient
    from tests.harness.database import Database
    from tests.harness.http import session_cookie
    from tests.harness.process import PYTHON, Process
    from tests.harness.servers import Daphne, server_env, static_env

    database = Database(tmp_path)
    env = server_env(database, "", **static_env())
    database.create(env)
    server = Daphne("bot-server", tmp_path, env)
    bot = Process("bot", tmp_path / "bot.log")
    (tmp_path / "bot.py").write_text(_documented_bot())
    tester = ChatClient("tester", "general")
    try:
        server.start()
        tester.cookie = await session_cookie(server, "general")
        await tester.connect(server)
        bot.spawn(
            [PYTHON, str(tmp_path / "bot.py"), server.http, "general", "bot"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        await tester.expect("joined", nickname="bot", timeout=20)
        await tester.say("!echo hello there")
        reply = await tester.expect("message", nickname="bot")
        assert reply["text"] == "tester said: hello there"
        assert reply["client_id"]

        # The server restarts: the bot reconnects by itself and answers what was
        # said meanwhile (from its catch-up history, or live).
        await tester.close()
        server.stop()
        server.start()
        # A new visitor: the same one would count its client_ids from 1 again,
        # and be answered with its first message, as a resend.
        tester = ChatClient("tester", "general")
        await tester.connect(server)
        await tester.say("!echo again")
        # The bot's reconnect delay grows while the server is down (up to ~12 s).
        reply = await tester.expect(
            "message", nickname="bot", text="tester said: again", timeout=40
        )
        assert bot.alive, bot.log()
    finally:
        await tester.close()
        bot.stop()
        server.stop()
        database.drop()
    assert "Traceback" not in bot.log(), bot.log()
    assert not server.tracebacks(), server.log()
