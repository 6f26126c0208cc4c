"""The FastAGI server against bad input: unknown scripts, missing arguments, hung-up channels,
malformed requests (connect + close, CRLF, Latin-1 bytes); 200 sessions at once. It never
dies: after each bad session a good one is still answered."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
import sys

import pytest

from ami_listener.agi.server import build_scripts, start
from lua.credit import CreditEngine, Payer
from lua.keys import Keys
from ops.settings import load_settings
from rating.book import RedisRateBook
from rating.price import Rate
from rating.select import BookRow
from tests import agi_client

DE = Rate(5, 400_000, 60, 400_000, 60, "Germany")


@pytest.fixture
def scripts(redis_server, key_prefix):
    keys = Keys(key_prefix)
    engine = CreditEngine(redis_server, keys)
    RedisRateBook(redis_server, keys).replace([BookRow("customer", "0049", 0, 0, 0, DE)])
    engine.provision(Payer(1, 10, 100), payer_key="8001", limits={"clid": ("prepaid", 10**7)})
    settings = load_settings({"ASTERBILL_KEY_PREFIX": key_prefix}, env_file=None)
    return build_scripts(engine, settings)


def run(scripts, scenario):
    async def main():
        _, server = await start(scripts, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await asyncio.wait_for(scenario(port), 30)

    return asyncio.run(main())


async def still_answers(port: int) -> None:
    good = await agi_client.call(port, "admit")
    assert good.variables["ASTERBILL_STATUS"] == "OK"


def test_an_unknown_script_answers_error_with_a_log_line(scripts, caplog):
    async def scenario(port):
        bad = await agi_client.call(port, "no-such-script")
        await still_answers(port)
        return bad

    with caplog.at_level(logging.INFO, "asterbill.agi"):
        bad = run(scripts, scenario)
    assert bad.variables["ASTERBILL_STATUS"] == "ERROR"
    assert "unknown script 'no-such-script'" in caplog.text


def test_a_missing_number_answers_error(scripts, caplog):
    async def scenario(port):
        bad = await agi_client.call(port, "admit", extension="")
        letters = await agi_client.call(port, "admit", extension="s")
        await still_answers(port)
        return bad, letters

    with caplog.at_level(logging.INFO, "asterbill.agi"):
        bad, letters = run(scripts, scenario)
    assert bad.variables["ASTERBILL_STATUS"] == "ERROR"
    assert "no number" in caplog.text
    assert letters.variables["ASTERBILL_STATUS"] == "ERROR"
    assert "is not digits" in letters.variables["ASTERBILL_REASON"]


def test_a_query_string_reaches_its_script(scripts):
    async def scenario(port):
        return await agi_client.call(port, "admit?number=0049301234", extension="s")

    assert run(scripts, scenario).variables["ASTERBILL_STATUS"] == "OK"


def test_a_channel_hung_up_stops_the_script_at_once(scripts, caplog):
    async def scenario(port):
        gone = await agi_client.call(port, "admit", hangup_at="SET VARIABLE")
        await still_answers(port)
        return gone

    with caplog.at_level(logging.INFO, "asterbill.agi"):
        gone = run(scripts, scenario)
    # Nothing after the command that met the hang-up: the replies would be one off.
    assert len(gone.commands) == 1
    assert gone.closed_by_server
    assert "channel gone" in caplog.text


@pytest.mark.parametrize(
    "raw",
    [
        b"",  # connect + close (a health check)
        b"agi_network: yes\nagi_network_script: admit\n",  # closed before the empty line
        b"agi_network: yes\r\nagi_network_script: admit\r\n",  # CRLF, then closed
        b"\xff\xfe\x00garbage without a colon\n\n",
    ],
    ids=["connect-close", "no-empty-line", "crlf-then-close", "binary"],
)
def test_malformed_requests_are_logged_and_the_server_goes_on(scripts, raw, caplog):
    async def scenario(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        if raw.endswith(b"\n\n"):
            # A complete but useless environment: no script, so ERROR on the channel.
            line = await reader.readline()
            assert line.startswith(b"SET VARIABLE ASTERBILL_STATUS")
            writer.write(b"200 result=1\n")
            await writer.drain()
            await reader.readline()
            writer.write(b"200 result=1\n")
            await writer.drain()
        writer.close()
        await asyncio.sleep(0.05)
        await still_answers(port)

    with caplog.at_level(logging.INFO, "asterbill.agi"):
        run(scripts, scenario)
    assert "AGI" in caplog.text


def test_crlf_headers_and_latin1_bytes_are_understood(scripts):
    async def scenario(port):
        env = agi_client.environment(port, "admit", calleridname="Caf\xe9")
        raw = ("\r\n".join(env) + "\r\n\r\n").encode("latin-1")
        return await agi_client.call(port, "admit", raw_env=raw)

    assert run(scripts, scenario).variables["ASTERBILL_STATUS"] == "OK"


def test_a_silent_connection_times_out_without_holding_others(scripts, monkeypatch):
    from ami_listener.agi import protocol

    monkeypatch.setattr(protocol, "HEADER_TIMEOUT_S", 0.3)

    async def scenario(port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"agi_network: yes\n")
        await writer.drain()
        await still_answers(port)  # while the silent one waits
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then closed by the server
        writer.close()

    run(scripts, scenario)


def test_200_concurrent_sessions_are_all_answered(scripts):
    async def scenario(port):
        return await asyncio.gather(*(agi_client.call(port, "admit") for _ in range(200)))

    calls = run(scripts, scenario)
    assert [c.variables.get("ASTERBILL_STATUS") for c in calls] == ["OK"] * 200
    assert {c.variables["ASTERBILL_MAXSEC"] for c in calls} == {"1500"}


def test_the_agi_process_never_loads_the_sql_models():
    code = (
        "import sys, ops.cli_agi, ami_listener.agi.server\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'schema', 'workers', 'admin', 'flask')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_busy_port_is_waited_for_not_fatal(scripts, caplog):
    import socket

    from ami_listener.agi import server as agi_server

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    settings = dataclasses.replace(scripts.settings, agi_port=port)

    async def main():
        task = asyncio.create_task(
            agi_server.run_forever(scripts.admitter.engine, settings, retry_s=0.1)
        )
        await asyncio.sleep(0.3)
        holder.close()  # the port is free again: the server takes it
        for _ in range(50):
            await asyncio.sleep(0.1)
            try:
                call = await agi_client.call(port, "admit")
                break
            except ConnectionRefusedError:
                continue
        task.cancel()
        return call

    with caplog.at_level(logging.ERROR, "asterbill.agi"):
        call = asyncio.run(main())
    assert call.variables["ASTERBILL_STATUS"] == "OK"
    assert "FastAGI cannot listen" in caplog.text
