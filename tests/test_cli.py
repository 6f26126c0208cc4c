"""The `asterbill` command as an operator runs it: real processes, real servers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.security import check_password_hash

from schema import Account
from schema.db import make_engine, session_factory

ASTERBILL = str(Path(sys.executable).with_name("asterbill"))


def run(*args, env=None, stdin=None, cwd=None):
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ASTERBILL_", "DATABASE_URL", "REDIS_URL", "AMI_"))
    }
    full_env.update(env or {})
    return subprocess.run(
        [ASTERBILL, *args],
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_help_lists_every_command():
    result = run("--help")
    assert result.returncode == 0
    for command in ("check", "create-admin", "db", "run", "settings", "web"):
        assert command in result.stdout


def test_db_upgrade_then_create_admin_stores_a_hashed_password(fresh_mysql_url, tmp_path):
    env = {"DATABASE_URL": fresh_mysql_url}
    assert run("db", "upgrade", env=env, cwd=tmp_path).returncode == 0

    result = run(
        "create-admin",
        "root-admin",
        "--password-stdin",
        env=env,
        stdin="correct horse battery\n",
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stderr
    with session_factory(make_engine(fresh_mysql_url))() as session:
        account = session.scalars(select(Account)).one()
    assert (account.username, account.role) == ("root-admin", "admin")
    assert "correct horse" not in account.password_hash
    assert check_password_hash(account.password_hash, "correct horse battery")


def test_create_admin_refuses_a_short_password_and_writes_nothing(fresh_mysql_url, tmp_path):
    env = {"DATABASE_URL": fresh_mysql_url}
    run("db", "upgrade", env=env, cwd=tmp_path)
    result = run("create-admin", "a", "--password-stdin", env=env, stdin="short\n", cwd=tmp_path)
    assert result.returncode == 2
    assert "at least 10 characters" in result.stderr
    with session_factory(make_engine(fresh_mysql_url))() as session:
        assert session.scalars(select(Account)).all() == []


@pytest.mark.parametrize(
    ("env", "expected", "code"),
    [
        ({"DATABASE_URL": "mysql+mysqldb://root@127.0.0.1:1/x"}, "could not be used", 3),
        ({"DATABASE_URL": "mysql+mysqldb://nobody:wrong@127.0.0.1:3306/x"}, "refused the login", 3),
        (
            {"DATABASE_URL": "mysql+mysqldb://root@127.0.0.1:3306/no_such_db_ab"},
            "does not exist",
            3,
        ),
        ({"DATABASE_URL": "not a url"}, "is not a database URL", 2),
        ({"ASTERBILL_PAYER_FIELD": "phone"}, "ASTERBILL_PAYER_FIELD", 2),
    ],
)
def test_expected_failures_print_one_line_and_no_traceback(env, expected, code, tmp_path):
    result = run("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == code
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_says_which_server_is_down(tmp_path):
    env = {"ASTERBILL_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0"}
    run("db", "upgrade", env=env, cwd=tmp_path)
    result = run("check", env=env, cwd=tmp_path)
    assert result.returncode == 3
    assert "Redis at 127.0.0.1:1/0 could not be reached" in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_starts_the_embedded_system_and_it_answers_healthy(tmp_path):
    """What `make run` does on a fresh machine: no servers configured at all."""
    web_port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ASTERBILL_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        ASTERBILL_DATA_DIR=str(tmp_path),
        ASTERBILL_WEB_PORT=str(web_port),
        ASTERBILL_EMBEDDED_REDIS_PORT=str(free_port()),
    )
    proc = subprocess.Popen(
        [ASTERBILL, "run"],
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        body = wait_healthy(f"http://127.0.0.1:{web_port}/healthz", deadline=60)
        # the demo: simulated calls billed by the listener, settled by the worker
        cdrs = wait_for_cdrs(tmp_path / "asterbill.sqlite3", deadline=60)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert '"database":"ok"' in body and '"redis":"ok"' in body, out
    assert cdrs > 0, out
    assert "ended: billsec" in out and "CDRs written" in out
    assert (tmp_path / "asterbill.sqlite3").is_file()
    assert (tmp_path / "redis" / "appendonlydir").is_dir()
    assert "redis stopped" in out and "web stopped" in out


def wait_for_cdrs(path, deadline: float) -> int:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(path)) as db:
            count = db.execute(
                "SELECT count(*) FROM cdrs WHERE disposition = 'ANSWERED'"
            ).fetchone()[0]
            if count:
                return count
        time.sleep(1)
    return 0


def wait_healthy(url: str, deadline: float) -> str:
    end = time.monotonic() + deadline
    last = ""
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                return response.read().decode()
        except (urllib.error.URLError, ConnectionError) as exc:
            last = str(exc)
            time.sleep(0.3)
    return f"never answered healthy: {last}"


def test_a_replay_speed_of_zero_is_refused_before_anything_listens(tmp_path):
    capture = Path(__file__).parent / "data" / "ami-captures" / "01-answered-callee-hangup.jsonl"
    result = run("pbx-sim", "--replay", str(capture), "--speed", "0", "--port", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "Invalid value for '--speed'" in result.stderr and "Traceback" not in result.stderr
