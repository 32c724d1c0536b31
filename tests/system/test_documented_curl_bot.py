"""The curl bot that docs/protocol.md documents, run with sh against a real
server: the HTTP transport as a client with no JSON parser sees it."""

import contextlib
import os
import re
import shutil
import signal
from pathlib import Path

import pytest

from tests.harness.process import STOP_TIMEOUT, Process
from tests.unit.test_protocol import DOC

# All the bot may run besides the shell and its builtins: it runs with a PATH
# that holds these alone.
TOOLS = ("curl", "sed")
SHELL = shutil.which("sh") or "/bin/sh"


def _documented_curl_bot() -> str:
    doc = DOC.read_text()
    # Up to the next heading; the script's own comments start with one `#`.
    section = re.search(r"^### A bot with curl\n(.*?)(?=^##+ |\Z)", doc, re.S | re.M)
    assert section, "docs/protocol.md has no '### A bot with curl' section"
    blocks = re.findall(r"^```sh\n(.*?)^```", section.group(1), re.S | re.M)
    assert len(blocks) == 1, "the curl bot section has one sh block"
    return blocks[0]


class ShellBot(Process):
    """The bot's shell, in a process group of its own with the curl and sed it
    starts: stopped together, by the shell's PID (the group's id)."""

    own_group = True

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        super().stop(timeout)
        # A curl that outlived its shell.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def _bot_env(bin_dir: Path) -> dict[str, str]:
    """The environment of the bot: TOOLS alone on its PATH, and no proxies
    (curl reaches 127.0.0.1 itself)."""
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"{tool} is not installed")
        (bin_dir / tool).symlink_to(found)
    proxies = {"http_proxy", "https_proxy", "all_proxy"}
    env = {k: v for k, v in os.environ.items() if k.lower() not in proxies}
    env["PATH"] = str(bin_dir)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1"
    return env


async def _answered(bot: Process, count: int) -> None:
    """Until the bot has logged `count` answers: their POSTs were answered, so
    none is in flight when the server stops."""
    from tests.harness.waiting import wait_until_async

    await wait_until_async(
        lambda: bot.log().count("answered ") >= count, 5, f"{count} answers"
    )


@pytest.mark.processes
async def test_the_documented_curl_bot_answers_and_resumes_after_a_restart(
    tmp_path: Path, _collected_static: None
) -> None:
    from tests.harness.clients import ChatClient
    from tests.harness.database import Database
    from tests.harness.http import session_cookie
    from tests.harness.servers import Daphne, server_env, static_env

    env_of_bot = _bot_env(tmp_path / "bin")
    database = Database(tmp_path)
    env = server_env(database, "", **static_env())
    database.create(env)
    server = Daphne("curl-bot-server", tmp_path, env)
    bot = ShellBot("curl-bot", tmp_path / "bot.log")
    (tmp_path / "bot.sh").write_text(_documented_curl_bot())
    tester = ChatClient("tester", "general")
    try:
        server.start()
        tester.cookie = await session_cookie(server, "general")
        await tester.connect(server)
        bot.spawn(
            [SHELL, str(tmp_path / "bot.sh"), server.http, "general", "bot"],
            env=env_of_bot,
        )
        await tester.expect("joined", nickname="bot", timeout=10)
        await tester.say("!echo hi")
        reply = await tester.expect("message", nickname="bot", timeout=5)
        assert reply["text"] == "tester said: hi"
        assert reply["client_id"] == f"echo-{reply['seq'] - 1}"

        # Quotes, backslashes and other scripts go back as they came.
        words = 'a "quoted" \\ back\\slash, ünï 😀'
        await tester.say(f"!echo {words}")
        await tester.expect(
            "message", nickname="bot", text=f"tester said: {words}", timeout=5
        )

        # Both answers complete (their POSTs answered) before the restart.
        await _answered(bot, 2)

        # The server restarts: the bot's stream ends, it reconnects by itself
        # and answers what was said meanwhile, from the welcome that resumes
        # its stream. (Another nickname: the first tester's may still be held
        # until its presence is swept.)
        await tester.close()
        server.stop()
        server.start()
        tester = ChatClient("tester2", "general")
        await tester.connect(server)
        await tester.say("!echo again")
        await tester.expect(
            "message", nickname="bot", text="tester2 said: again", timeout=10
        )
        await _answered(bot, 3)
        assert bot.alive, bot.log()
    finally:
        await tester.close()
        bot.stop()
        server.stop()
        database.drop()
    log = bot.log()
    assert "joined general" in log, log
    assert "refused" not in log, log
    assert not server.tracebacks(), server.log()
