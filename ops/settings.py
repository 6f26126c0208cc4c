"""Settings: the only reader of the environment (and of a `.env` file, which honcho loads too).

Every option has a default that works on a laptop with no servers configured: an embedded
SQLite database and an embedded Redis under the data directory. `load_settings()` parses and
validates everything at once and raises SettingsError naming the variable and the accepted values.
The table in README.md ("Configuration") lists the same options; `asterbill settings` prints the
values in force.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from dotenv import dotenv_values

from ops.errors import SettingsError

PAYER_FIELDS = ("callerid", "peer", "accountcode")
UNKNOWN_PAYER_POLICIES = ("record", "hangup")
NO_RATE_POLICIES = ("hangup-prepaid", "hangup", "free")
CALLBACK_LEG_POLICIES = ("a", "b", "both")
UNANSWERED_POLICIES = ("record", "drop")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Redis (the credit store) unreachable: what happens to calls (ami_listener/policy.py).
CREDIT_FAILURE_POLICIES = ("terminate", "retry_and_terminate", "continue")
INBOUND_POLICIES = ("off", "bill")


@dataclass(frozen=True)
class Settings:
    """Every setting of asterbill, parsed. Build it with `load_settings()`."""

    database_url: str
    database_embedded: bool
    redis_url: str
    redis_embedded: bool
    embedded_redis_port: int
    data_dir: Path
    ami_host: str
    ami_embedded: bool
    ami_port: int
    ami_user: str
    ami_secret: str
    ami_timeout_ms: int  # the longest wait for Asterisk's answer to one AMI action
    sim_port: int  # where the PBX simulator listens (never 5038: a real Asterisk's AMI)
    payer_field: str
    strip_prefixes: tuple[str, ...]
    unknown_payer: str
    no_rate: str
    guard_ms: int
    callback_legs: str
    callback_channel: str
    callback_context: str
    short_call_seconds: int
    asterisk_cdr_url: str  # Asterisk's CDR database, read by `asterbill cdr-sync`
    unanswered: str
    cdr_wait_ms: int  # how long a hung-up call waits for Asterisk's Cdr (its own billsec)
    currency: str
    display_decimals: int
    pin_digits: int
    import_max_bytes: int
    import_max_rows: int
    key_prefix: str
    web_host: str
    web_port: int
    secret_key: str
    log_level: str
    credit_failure: str = "terminate"
    secure_cookies: bool = False  # session cookies only over HTTPS (set it behind TLS)
    trusted_proxies: int = 0  # reverse proxies whose X-Forwarded-* headers are believed
    timezone: str = "UTC"  # the IANA zone reports and the CDR list show days and hours in
    # The FastAGI server (`asterbill agi`, ami_listener/agi/) and its card IVR's PIN bounds.
    agi_host: str = "127.0.0.1"
    agi_port: int = 4573
    pin_max_failures: int = 5
    pin_lock_minutes: int = 60
    # Incoming calls to a booth or extension (the called party pays): `off` or `bill`, and
    # the reserved prefix of the inbound rate rows (ami_listener/billing.py, README).
    inbound: str = "off"
    inbound_prefix: str = "0000"
    web_threads: int = 64  # waitress threads: each open booth page's stream holds one

    def describe(self) -> dict[str, str]:
        """The settings as text, with secrets masked (for `asterbill settings` and logs)."""
        masked = {"ami_secret", "secret_key"}
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in masked:
                value = "(set)" if value else "(empty)"
            elif f.name in ("database_url", "asterisk_cdr_url"):
                value = _mask_url_password(value)
            elif isinstance(value, tuple):
                value = ",".join(value)
            out[f.name] = str(value)
        return out


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | os.PathLike | None = ".env"
) -> Settings:
    """Read the settings from `environ` (default: the process environment) over `env_file`."""
    values: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return _parse(values)


def _parse(env: Mapping[str, str]) -> Settings:
    def get(name: str, default: str) -> str:
        value = env.get(name)
        return default if value is None or value.strip() == "" else value.strip()

    data_dir = Path(get("ASTERBILL_DATA_DIR", "var")).resolve()
    embedded_port = _int(env, "ASTERBILL_EMBEDDED_REDIS_PORT", 6390, 1, 65535)
    database_url = get("DATABASE_URL", "")
    redis_url = get("REDIS_URL", "")
    sim_port = _int(env, "ASTERBILL_SIM_PORT", 5039, 1, 65535)

    return Settings(
        database_url=database_url or f"sqlite:///{data_dir / 'asterbill.sqlite3'}",
        database_embedded=not database_url,
        redis_url=redis_url or f"redis://127.0.0.1:{embedded_port}/0",
        redis_embedded=not redis_url,
        embedded_redis_port=embedded_port,
        data_dir=data_dir,
        ami_host=get("AMI_HOST", "127.0.0.1"),
        ami_embedded=not get("AMI_HOST", ""),
        # No AMI_HOST: the listener talks to the simulator, on its own port by default.
        ami_port=_int(env, "AMI_PORT", 5038 if get("AMI_HOST", "") else sim_port, 1, 65535),
        ami_user=get("AMI_USER", "asterbill"),
        ami_secret=env.get("AMI_SECRET", ""),
        ami_timeout_ms=_int(env, "ASTERBILL_AMI_TIMEOUT_MS", 5000, 100, 120_000),
        sim_port=sim_port,
        payer_field=_choice(env, "ASTERBILL_PAYER_FIELD", "callerid", PAYER_FIELDS),
        strip_prefixes=_digit_list(env, "ASTERBILL_STRIP_PREFIXES"),
        unknown_payer=_choice(env, "ASTERBILL_UNKNOWN_PAYER", "record", UNKNOWN_PAYER_POLICIES),
        no_rate=_choice(env, "ASTERBILL_NO_RATE", "hangup-prepaid", NO_RATE_POLICIES),
        guard_ms=_int(env, "ASTERBILL_GUARD_MS", 500, 1, 10_000),  # 0 would hang up too late
        callback_legs=_choice(env, "ASTERBILL_CALLBACK_LEGS", "a", CALLBACK_LEG_POLICIES),
        callback_channel=_callback_channel(
            get("ASTERBILL_CALLBACK_CHANNEL", "Local/{number}@callback-out")
        ),
        callback_context=get("ASTERBILL_CALLBACK_CONTEXT", "callback"),
        short_call_seconds=_int(env, "ASTERBILL_SHORT_CALL_SECONDS", 0, 0, 3600),
        asterisk_cdr_url=get("ASTERBILL_ASTERISK_CDR_URL", ""),
        unanswered=_choice(env, "ASTERBILL_UNANSWERED", "record", UNANSWERED_POLICIES),
        cdr_wait_ms=_int(env, "ASTERBILL_CDR_WAIT_MS", 1000, 0, 10_000),
        currency=_currency(env),
        display_decimals=_int(env, "ASTERBILL_DISPLAY_DECIMALS", 2, 0, 6),
        pin_digits=_int(env, "ASTERBILL_PIN_DIGITS", 12, 10, 20),
        import_max_bytes=_int(
            env, "ASTERBILL_IMPORT_MAX_BYTES", 20 * 1024 * 1024, 1024, 1024 * 1024 * 1024
        ),
        import_max_rows=_int(env, "ASTERBILL_IMPORT_MAX_ROWS", 1_000_000, 10, 100_000_000),
        key_prefix=_key_prefix(env),
        web_host=get("ASTERBILL_WEB_HOST", "127.0.0.1"),
        web_port=_int(env, "ASTERBILL_WEB_PORT", 8080, 1, 65535),
        web_threads=_int(env, "ASTERBILL_WEB_THREADS", 64, 4, 1000),
        secret_key=env.get("ASTERBILL_SECRET_KEY", ""),
        log_level=_choice(env, "ASTERBILL_LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
        credit_failure=_choice(
            env, "ASTERBILL_CREDIT_FAILURE", "terminate", CREDIT_FAILURE_POLICIES
        ),
        secure_cookies=_flag(env, "ASTERBILL_SECURE_COOKIES"),
        trusted_proxies=_int(env, "ASTERBILL_TRUSTED_PROXIES", 0, 0, 10),
        timezone=_timezone(env),
        agi_host=get("ASTERBILL_AGI_HOST", "127.0.0.1"),
        agi_port=_int(env, "ASTERBILL_AGI_PORT", 4573, 1, 65535),
        pin_max_failures=_int(env, "ASTERBILL_PIN_MAX_FAILURES", 5, 1, 100),
        pin_lock_minutes=_int(env, "ASTERBILL_PIN_LOCK_MINUTES", 60, 1, 100_000),
        inbound=_choice(env, "ASTERBILL_INBOUND", "off", INBOUND_POLICIES),
        inbound_prefix=_inbound_prefix(env),
    )


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name}={raw!r} is not one of: 1, 0, true, false, yes, no, on, off")


def _inbound_prefix(env: Mapping[str, str]) -> str:
    raw = env.get("ASTERBILL_INBOUND_PREFIX", "").strip() or "0000"
    if not raw.isdigit() or len(raw) > 10:
        raise SettingsError(
            f"ASTERBILL_INBOUND_PREFIX={raw!r} must be 1 to 10 digits no dialled number starts "
            "with (default 0000)"
        )
    return raw


def _callback_channel(template: str) -> str:
    if template.count("{number}") != 1 or "/" not in template:
        raise SettingsError(
            f"ASTERBILL_CALLBACK_CHANNEL={template!r} must be a channel with one {{number}}, "
            "e.g. Local/{number}@callback-out"
        )
    return template


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number ({low}..{high})") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is out of range ({low}..{high})")
    return value


def _choice(
    env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...], upper: bool = False
) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = raw.upper() if upper else raw.lower()
    if value not in allowed:
        raise SettingsError(f"{name}={raw!r} is not one of: {', '.join(allowed)}")
    return value


def _digit_list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "").strip()
    items = tuple(p.strip() for p in raw.split(",") if p.strip())
    bad = [p for p in items if not p.isdigit()]
    if bad:
        raise SettingsError(f"{name}: {', '.join(bad)} are not digits (example: 00,011)")
    # Longest first, so "011" is stripped before "01" would be.
    return tuple(sorted(set(items), key=len, reverse=True))


def _currency(env: Mapping[str, str]) -> str:
    raw = env.get("ASTERBILL_CURRENCY", "").strip() or "USD"
    if not (raw.isalpha() and len(raw) == 3):
        raise SettingsError(f"ASTERBILL_CURRENCY={raw!r} is not a 3-letter ISO 4217 code (USD)")
    return raw.upper()


def _key_prefix(env: Mapping[str, str]) -> str:
    raw = env.get("ASTERBILL_KEY_PREFIX", "").strip() or "ab"
    if not all(c.isalnum() or c in "_-:" for c in raw) or "{" in raw:
        raise SettingsError(
            f"ASTERBILL_KEY_PREFIX={raw!r} may hold only letters, digits, '_', '-' and ':'"
        )
    return raw


def _mask_url_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, at, host = rest.rpartition("@")
    user, colon, _ = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}{at}{host}"


def _timezone(env: Mapping[str, str]) -> str:
    """ASTERBILL_TIMEZONE: an IANA zone name (Europe/Berlin), default UTC."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = env.get("ASTERBILL_TIMEZONE", "").strip() or "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"ASTERBILL_TIMEZONE={name!r} is not a known time zone (e.g. Europe/Berlin)"
        ) from None
    return name
