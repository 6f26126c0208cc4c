"""Warnings about an AMI user that lacks what billing needs (read classes call, cdr, system;
timestampevents = yes; cdr_manager): from the real captures' events, from GetConfig and
ListCommands replies, at the listener's login and in `asterbill check`."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess

import pytest

from ami_listener.ami_health import (
    EventWatcher,
    cdr_manager_warnings,
    command_warnings,
    manager_conf_warnings,
    parse_config,
)
from ami_listener.billing import Biller
from ami_listener.service import Listener
from ops import pbx_sim
from tests import test_ami_connection
from tests.ami_captures import CAPTURES, capture_files, events
from tests.test_ami_connection import until
from tests.test_cli import ASTERBILL, free_port, run
from tests.test_listener import settings_for

rig = test_ami_connection.rig  # the fixture: numbers 00 at 1.00 a second, booths 8001, 8002


def watch(path, keep=lambda e: True) -> tuple[EventWatcher, list[str]]:
    watcher, said = EventWatcher(), []
    for _, event in events(path):
        if keep(event):
            said += watcher.observe(event)
    return watcher, said


@pytest.mark.parametrize("path", capture_files(), ids=[p.name for p in capture_files()])
def test_the_captures_show_whether_timestampevents_is_on(path):
    _, said = watch(path)
    if path.name.startswith("12-"):  # a refused login: no event at all
        assert said == []
        return
    timestamped = path.name[:2] in {"18", "19", "20", "23", "24", "25", "26", "27"}
    assert any("timestampevents = yes" in w for w in said) == (not timestamped)
    assert not [w for w in said if "read class" in w]  # every user there reads call and cdr


def test_the_limited_user_of_capture_27_has_what_billing_needs_and_no_more():
    watcher, said = watch(CAPTURES / "27-limited-ami-user.jsonl")
    assert watcher.seen == {"call", "cdr"} and said == []  # no dialplan, no security events


def test_a_user_without_read_class_cdr_or_call_is_noticed_from_the_events():
    """Capture 07 (ten calls) without its Cdr events, as a user lacking `cdr` receives it;
    then only its Cdr events, as a user lacking `call` would."""
    path = CAPTURES / "19-ts-ten-concurrent.jsonl"
    _, no_cdr = watch(path, keep=lambda e: e.get("Event") != "Cdr")
    assert [w for w in no_cdr if "read class cdr" in w]
    _, only_cdr = watch(path, keep=lambda e: e.get("Event") == "Cdr")
    assert only_cdr == ["Cdr events arrive but no call events: the AMI user lacks read class call"]


def getconfig(categories: dict[str, list[str]]) -> dict[str, str]:
    """A GetConfig reply as Asterisk 20 writes it."""
    reply = {"Response": "Success"}
    for n, (name, lines) in enumerate(categories.items()):
        reply[f"Category-{n:06d}"] = name
        reply.update({f"Line-{n:06d}-{i:06d}": line for i, line in enumerate(lines)})
    return reply


def test_manager_conf_as_getconfig_shows_it():
    good = getconfig(
        {
            "general": ["enabled=yes", "port=5038", "timestampevents = yes"],
            "callonly": ["secret=x", "read=call,cdr,system", "write=call,system"],
        }
    )
    assert parse_config(good)["callonly"]["read"] == "call,cdr,system"
    assert manager_conf_warnings(parse_config(good), "callonly") == []
    assert manager_conf_warnings(parse_config(good), "billing") == [
        "manager.conf has no [billing] section (a user from elsewhere?)"
    ]
    everything = getconfig({"general": ["timestampevents=yes"], "u": ["read=all", "write=all"]})
    assert manager_conf_warnings(parse_config(everything), "u") == []
    bad = getconfig({"general": ["enabled=yes"], "u": ["read=call,dialplan", "write=originate"]})
    said = manager_conf_warnings(parse_config(bad), "u")
    assert "timestampevents = yes" in said[0]
    assert "lacks the read class(es) cdr, system" in said[1]
    assert [w.split(" (")[0] for w in said[2:]] == [
        "AMI user 'u' may not send Hangup",
        "AMI user 'u' may not send CoreShowChannels",
        "AMI user 'u' may not send Getvar",
    ]
    assert cdr_manager_warnings(parse_config(getconfig({"general": ["enabled = yes"]}))) == []
    assert cdr_manager_warnings(parse_config(getconfig({"general": ["enabled=no"]})))


def test_listcommands_shows_which_actions_the_user_may_send():
    reply = {"Response": "Success", "Hangup": "Hangup channel. (Priv: system,call,all)"}
    said = command_warnings(reply, "u", callbacks=True)
    assert [w.split(":")[0] for w in said] == [
        "AMI user 'u' may not send CoreShowChannels",
        "AMI user 'u' may not send Getvar",
        "AMI user 'u' may not send Originate",
    ]


def test_the_listener_warns_at_login_about_a_user_that_lacks_classes(rig, key_prefix):
    """Asterisk with timestampevents = no, a user reading call,system only: the login check
    (GetConfig) and the events themselves both say so; billing goes on."""

    async def scenario():
        server = pbx_sim.AmiServer("billing", "s3cret", timestamps=False)
        server.read, server.write = "call,system", "call,system"
        settings = settings_for(await server.start("127.0.0.1", 0), key_prefix)
        listener = Listener(settings, Biller(rig.engine, rig.book, settings))
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.logged_in.wait(), 10)
            plan = pbx_sim.CallPlan("8001", "00493012345678", ring=0.2, talk=0.5)
            await pbx_sim.run_generator(server, [plan], cps=0)
            await until(lambda: rig.engine.client.hlen(rig.engine.keys.ended(1)))  # billed
            return listener
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            listener.close()
            await server.close()

    listener = asyncio.run(scenario())

    said = listener.ami_warnings
    assert any("no `timestampevents = yes`" in w for w in said)  # GetConfig manager.conf
    assert any("AMI events carry no Timestamp" in w for w in said)  # the call's events
    assert any("lacks the read class(es) cdr" in w for w in said)
    assert not any("may not send" in w for w in said)


@pytest.fixture
def simulator():
    """`asterbill pbx-sim` in its own process: a stand-in for the PBX `check` logs in to."""
    port = free_port()
    process = subprocess.Popen(
        [
            *(ASTERBILL, "pbx-sim", "--port", str(port), "--user", "billing"),
            *("--secret", "s3cret", "--calls", "3", "--cps", "2", "--talk", "0.3:0.5"),
            *("--forever", "--down-for", "1"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "AMI on" in process.stderr.readline()
        yield port, process
    finally:
        process.terminate()
        process.wait(10)


def test_check_logs_in_to_the_pbx_when_ami_host_is_set(tmp_path, simulator):
    simulator, _ = simulator
    env = {
        "ASTERBILL_DATA_DIR": str(tmp_path),
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "AMI_HOST": "127.0.0.1",
        "AMI_PORT": str(simulator),
        "AMI_USER": "billing",
        "AMI_SECRET": "s3cret",
    }
    assert run("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    result = run("check", "--watch", "1", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"ami ok: billing@127.0.0.1:{simulator}" in result.stdout
    assert "ami warning" not in result.stdout  # the simulator gives billing all it needs

    refused = run("check", env={**env, "AMI_SECRET": "wrong"}, cwd=tmp_path)
    assert refused.returncode == 3
    assert "refused the login" in refused.stderr and "Traceback" not in refused.stderr
    down = run("check", env={**env, "AMI_PORT": str(free_port())}, cwd=tmp_path)
    assert down.returncode == 3 and "could not be reached" in down.stderr


def test_the_simulator_process_kills_restarts_and_drops_clients_on_signals(simulator):
    """SIGUSR2 drops the oldest client; SIGUSR1 kills the simulator (nothing listens) and
    starts it again after --down-for; the clients log in again."""
    import signal

    port, process = simulator

    async def login():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(b"Action: Login\r\nUsername: billing\r\nSecret: s3cret\r\n\r\n")
        assert b"Authentication accepted" in await reader.readuntil(b"\r\n\r\n")
        return reader, writer

    async def dropped(reader) -> bool:
        async with asyncio.timeout(5):
            while await reader.read(4096):
                pass  # events of the generated calls, then EOF
        return True

    async def scenario():
        reader, writer = await login()
        process.send_signal(signal.SIGUSR2)
        assert await dropped(reader)
        writer.close()
        reader, writer = await login()
        process.send_signal(signal.SIGUSR1)
        assert await dropped(reader)
        writer.close()
        await until(lambda: _refused(port), timeout=2)  # down: nothing listens
        await until(lambda: not _refused(port), timeout=5)  # back after --down-for
        _, writer = await login()
        writer.close()

    asyncio.run(scenario())


def _refused(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0
