"""apply-fixes' ``[fixes]`` table, validated into a plain mapping (secrets are read only when used).

The keys of both targets are described in ``recon/fixes.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import ConfigError
from core.secrets import read_secret
from recon.net import is_loopback

ORDER_ROLES = ("order_no", "channel", "amount", "status", "paid_at")
REFUND_ROLES = ORDER_ROLES + ("refund_no",)
DB_KEYS = {"target", "dsn", "user", "password_env", "password_file", "orders_table", "refunds_table", "audit_table",
           "orders_columns", "refunds_columns", "lock_timeout_seconds", "statement_timeout_seconds",
           "create_audit_table"}
WEBHOOK_KEYS = {"target", "url", "token_env", "token_file", "ca_file", "timeout_seconds", "ledger_file"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def parse_fixes_config(raw: dict, conf_file=None) -> dict:
    """Validate the ``[fixes]`` table; returns a normalised copy. Secrets are read only when used."""
    path = str(conf_file) if conf_file else None
    raw = dict(raw or {})
    target = raw.get("target")
    if target not in ("database", "webhook"):
        raise ConfigError(f"fixes.target must be \"database\" or \"webhook\", got {target!r}", file=path,
                          hint="add a [fixes] table to the pipeline configuration (see recon/fixes.py)")
    for secret in ("password", "token"):
        if secret in raw:
            raise ConfigError(f"fixes.{secret} must not be written in the configuration; use {secret}_env = "
                              f"\"VAR\" or {secret}_file = \"/path/readable/only/by/the/job\"", file=path)
    allowed = DB_KEYS if target == "database" else WEBHOOK_KEYS
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in [fixes] (target {target}); "
                          f"allowed: {', '.join(sorted(allowed))}", file=path)
    base = Path(path).parent if path else Path.cwd()

    def need(key):
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"[fixes] target = \"{target}\" needs {key} = \"...\"", file=path)
        return value.strip()

    def seconds(key, default):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 3600:
            raise ConfigError(f"fixes.{key} must be an integer number of seconds (1-3600), got {value!r}", file=path)
        return value

    def local_path(key):
        return str((base / os.path.expanduser(need(key))).resolve())

    out: dict = {"target": target}
    if target == "database":
        dsn = need("dsn")
        if re.search(r"(?i)password\s*=", dsn) or re.match(r"^postgres(ql)?://[^/@]*:[^/@]*@", dsn):
            raise ConfigError("fixes.dsn must not carry a password; use password_env or password_file", file=path)
        out.update(dsn=dsn, user=need("user"))
        if ("password_env" in raw) == ("password_file" in raw):
            raise ConfigError("[fixes] needs exactly one of password_env or password_file", file=path)
        if "password_env" in raw:
            out["password_env"] = need("password_env")
        else:
            out["password_file"] = local_path("password_file")
        for key, default in (("orders_table", "orders"), ("refunds_table", "refunds"),
                             ("audit_table", "recon_applied_corrections")):
            value = raw.get(key, default)
            if not isinstance(value, str) or not all(_IDENT.match(p) for p in value.split(".")) \
                    or value.count(".") > 1:
                raise ConfigError(f"fixes.{key} must be a name or schema.name, got {value!r}", file=path)
            out[key] = value
        for key, roles in (("orders_columns", ORDER_ROLES), ("refunds_columns", REFUND_ROLES)):
            given = raw.get(key, {})
            if not isinstance(given, dict) or set(given) - set(roles):
                raise ConfigError(f"[fixes.{key}] maps roles {', '.join(roles)} to column names; got "
                                  f"{sorted(given) if isinstance(given, dict) else given!r}", file=path)
            columns = {r: given.get(r, r) for r in roles}
            bad = [c for c in columns.values() if not isinstance(c, str) or not _IDENT.match(c)]
            if bad:
                raise ConfigError(f"[fixes.{key}] has invalid column names {bad!r}", file=path)
            out[key] = columns
        out["lock_timeout_seconds"] = seconds("lock_timeout_seconds", 10)
        out["statement_timeout_seconds"] = seconds("statement_timeout_seconds", 60)
        create = raw.get("create_audit_table", True)
        if not isinstance(create, bool):
            raise ConfigError(f"fixes.create_audit_table must be true or false, got {create!r}", file=path)
        out["create_audit_table"] = create
    else:
        url = need("url")
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(f"fixes.url must be an https:// URL, got {url!r}", file=path)
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ConfigError("fixes.url must use https (plain http is allowed only to a loopback address)",
                              file=path)
        if parts.username or parts.password:
            raise ConfigError("fixes.url must not carry credentials; use token_env or token_file", file=path)
        out["url"] = url
        if "token_env" in raw and "token_file" in raw:
            raise ConfigError("[fixes] takes at most one of token_env or token_file", file=path)
        if "token_env" in raw:
            out["token_env"] = need("token_env")
        if "token_file" in raw:
            out["token_file"] = local_path("token_file")
        if "ca_file" in raw:
            out["ca_file"] = local_path("ca_file")
        out["timeout_seconds"] = seconds("timeout_seconds", 10)
        out["ledger_file"] = local_path("ledger_file")
    return out


def _secret(cfg: dict, key: str, *, required: bool) -> str | None:
    return read_secret(cfg, key, section="fixes", required=required)
