"""The simulator's replay rules (docs/pbx-sim.md): it starts at the first login of any client,
and `--speed` scales the pace and the Timestamp headers alike."""

from __future__ import annotations

import asyncio

from ami_listener import frames
from ops import pbx_sim
from tests.ami_captures import capture_files

CAPTURE_18 = next(p for p in capture_files() if p.name.startswith("18-"))


async def login(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()  # the greeting
    writer.write(frames.build([("Action", "Login"), ("Username", "u"), ("Secret", "s")]))
    await writer.drain()
    return reader, writer


async def events_of(reader: asyncio.StreamReader, until: str) -> list[tuple[float, dict]]:
    """(receive time, headers) of each event up to the one named `until`."""
    out = []
    while True:
        raw = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
        headers = frames.parse(raw)
        if "Event" in headers and headers["Event"] != "FullyBooted":
            out.append((asyncio.get_running_loop().time(), headers))
            if headers["Event"] == until:
                return out


def test_the_replay_waits_for_the_first_login_and_speed_scales_pace_and_timestamps():
    recorded = [frames.parse(raw) for _, raw in pbx_sim.capture_events(CAPTURE_18)]
    answer = next(
        e for e in recorded if e["Event"] == "DialEnd" and "@callshop-" in e.get("Channel", "")
    )
    booth = answer["Channel"]  # the booth channel (README of the captures)
    hangup = next(e for e in recorded if e["Event"] == "Hangup" and e.get("Channel") == booth)
    talk = float(hangup["Timestamp"]) - float(answer["Timestamp"])  # 5.509 s

    async def scenario():
        server = pbx_sim.AmiServer("u", "s")
        port = await server.start("127.0.0.1", 0)
        replay = asyncio.create_task(pbx_sim.replay(server, CAPTURE_18, speed=4))
        await asyncio.sleep(0.5)  # nobody logged in: nothing is played
        reader, writer = await login(port)
        got = await events_of(reader, "Hangup")
        while got[-1][1].get("Channel") != booth:
            got += await events_of(reader, "Hangup")
        await replay
        writer.close()
        await server.close()
        return got

    got = asyncio.run(scenario())

    assert got[0][1]["Event"] == recorded[0]["Event"]  # from the first event, none lost
    assert got[0][1]["Uniqueid"] == recorded[0]["Uniqueid"]
    [dial_end] = [(t, e) for t, e in got if e["Event"] == "DialEnd" and e.get("Channel") == booth]
    [end] = [(t, e) for t, e in got if e["Event"] == "Hangup" and e.get("Channel") == booth]
    stamped = float(end[1]["Timestamp"]) - float(dial_end[1]["Timestamp"])
    assert abs(stamped - talk / 4) < 0.001  # the Timestamps follow the speed exactly
    assert abs((end[0] - dial_end[0]) - talk / 4) < 0.5  # and so does the pace, roughly
