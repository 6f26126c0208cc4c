from pathlib import Path

import pytest

from ops.errors import SettingsError
from ops.settings import load_settings


def settings(**env):
    return load_settings(environ=env, env_file=None)


def test_defaults_need_no_servers_configured(tmp_path):
    s = settings(ASTERBILL_DATA_DIR=str(tmp_path))
    assert s.database_url == f"sqlite:///{tmp_path / 'asterbill.sqlite3'}"
    assert s.database_embedded and s.redis_embedded
    assert s.redis_url == "redis://127.0.0.1:6390/0"
    assert (s.payer_field, s.unknown_payer, s.no_rate) == ("callerid", "record", "hangup-prepaid")
    assert (s.guard_ms, s.callback_legs, s.short_call_seconds) == (500, "a", 0)
    assert (s.currency, s.display_decimals, s.strip_prefixes) == ("USD", 2, ())
    # no AMI_HOST: the listener talks to the simulator, on its own port (not Asterisk's 5038)
    assert (s.ami_host, s.ami_port, s.sim_port) == ("127.0.0.1", 5039, 5039)
    assert settings(AMI_HOST="pbx.lan").ami_port == 5038
    assert settings(ASTERBILL_SIM_PORT="6038").ami_port == 6038
    assert settings(AMI_PORT="15038").ami_port == 15038
    assert s.ami_timeout_ms == 5000


def test_configured_servers_are_used_as_given():
    s = settings(DATABASE_URL="mysql+mysqldb://u:p@db/x", REDIS_URL="redis://r:6379/1")
    assert s.database_url == "mysql+mysqldb://u:p@db/x" and not s.database_embedded
    assert s.redis_url == "redis://r:6379/1" and not s.redis_embedded


def test_strip_prefixes_are_checked_and_longest_first():
    assert settings(ASTERBILL_STRIP_PREFIXES="00, 011,0").strip_prefixes == ("011", "00", "0")
    with pytest.raises(SettingsError, match="ASTERBILL_STRIP_PREFIXES: \\+1"):
        settings(ASTERBILL_STRIP_PREFIXES="00,+1")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ASTERBILL_PAYER_FIELD", "phone", "not one of: callerid, peer, accountcode"),
        ("ASTERBILL_UNKNOWN_PAYER", "drop", "not one of: record, hangup"),
        ("ASTERBILL_NO_RATE", "maybe", "not one of: hangup-prepaid, hangup, free"),
        ("ASTERBILL_CALLBACK_LEGS", "c", "not one of: a, b, both"),
        ("ASTERBILL_GUARD_MS", "fast", "not a whole number"),
        ("ASTERBILL_GUARD_MS", "-1", "out of range"),
        ("ASTERBILL_GUARD_MS", "0", "out of range"),
        ("AMI_PORT", "70000", "out of range"),
        ("ASTERBILL_DISPLAY_DECIMALS", "7", "out of range"),
        ("ASTERBILL_CURRENCY", "dollars", "not a 3-letter ISO 4217 code"),
        ("ASTERBILL_KEY_PREFIX", "a{b}", "may hold only letters"),
        ("ASTERBILL_LOG_LEVEL", "loud", "not one of"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_is_accepted(name, value, message):
    with pytest.raises(SettingsError) as err:
        settings(**{name: value})
    assert name in str(err.value) and message in str(err.value)


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text("ASTERBILL_PAYER_FIELD=peer\nASTERBILL_GUARD_MS=250\n")
    s = load_settings(environ={"ASTERBILL_GUARD_MS": "750"}, env_file=env_file)
    assert (s.payer_field, s.guard_ms) == ("peer", 750)


def test_describe_masks_secrets():
    s = settings(
        DATABASE_URL="mysql+mysqldb://bill:hunter2@db/x",
        AMI_SECRET="s3cret",
        ASTERBILL_SECRET_KEY="k",
    )
    text = repr(s.describe())
    assert "hunter2" not in text and "s3cret" not in text
    assert s.describe()["database_url"] == "mysql+mysqldb://bill:***@db/x"


def test_the_credit_failure_policy_defaults_to_terminate_and_is_checked():
    assert settings().credit_failure == "terminate"
    assert settings(ASTERBILL_CREDIT_FAILURE="Continue").credit_failure == "continue"
    with pytest.raises(SettingsError, match="not one of: terminate, retry_and_terminate"):
        settings(ASTERBILL_CREDIT_FAILURE="ignore")
