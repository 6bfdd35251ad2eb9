"""``livedata server``: run the hosted Live-Data API, migrate its database, rotate its keys, add an admin.

The server package (FastAPI, uvicorn, SQLAlchemy) is imported inside each
command, so ``livedata --help`` and every other command stay fast.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from livedata_cli.cli.common import JsonOpt, QuietOpt, setup

app = typer.Typer(
    help="Run the hosted Live-Data API (SQLite and a blob folder under LIVEDATA_HOME by default).",
)

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL: sqlite:///PATH (default under LIVEDATA_HOME) or postgresql://USER:PASS@HOST/DB."),
]
IpDaysOpt = Annotated[
    int | None,
    typer.Option("--ip-retention-days", help="Days IP addresses stay in audit records and sessions (default 30).", min=0),
]
KeysOpt = Annotated[
    str | None, typer.Option("--keys", help="Server key file (default LIVEDATA_HOME/server/keys.json).")
]


def _config(**kw: Any) -> Any:
    from livedata_cli.server.config import ServerConfig

    given = {k: v for k, v in kw.items() if v is not None}
    if "db_url" not in given and os.environ.get("LIVEDATA_SERVER_DB"):
        given["db_url"] = os.environ["LIVEDATA_SERVER_DB"]
    return ServerConfig(**given).resolved()


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on; 0 picks a free one.", min=0, max=65535)] = 8080,
    db: DbOpt = None,
    store: Annotated[str | None, typer.Option("--store", help="Blob store: a folder or s3://BUCKET/PREFIX (default: a folder under LIVEDATA_HOME).")] = None,
    keys: KeysOpt = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.", min=1, max=64)] = 1,
    certfile: Annotated[str | None, typer.Option("--certfile", help="TLS certificate (PEM); with --keyfile.")] = None,
    keyfile: Annotated[str | None, typer.Option("--keyfile", help="TLS private key (PEM); with --certfile.")] = None,
    redis: Annotated[str | None, typer.Option("--redis", help="redis://HOST URL: rate-limit counts shared by workers.")] = None,
    scan_command: Annotated[
        str | None,
        typer.Option("--scan-command", help="Scanner fed each upload on stdin (no shell); exit 0 clean, 1 infected."),
    ] = None,
    scan_timeout: Annotated[
        float | None,
        typer.Option("--scan-timeout", help="Seconds the scanner may stall or take for its verdict (default 60).", min=1),
    ] = None,
    public_url: Annotated[str | None, typer.Option("--public-url", help="The URL users reach the server at (in mails).")] = None,
    quota: Annotated[int | None, typer.Option("--quota", help="Storage quota of new accounts, in bytes (default 5 GiB).", min=0)] = None,
    smtp_host: Annotated[str | None, typer.Option("--smtp-host", help="SMTP server for password-reset and notification mail.")] = None,
    smtp_port: Annotated[int | None, typer.Option("--smtp-port", help="SMTP port (default 25).")] = None,
    smtp_from: Annotated[str | None, typer.Option("--smtp-from", help="Sender address of server mail.")] = None,
    smtp_starttls: Annotated[bool, typer.Option("--smtp-starttls", help="Use STARTTLS with the SMTP server.")] = False,
    smtp_user: Annotated[str | None, typer.Option("--smtp-user", help="SMTP login (password in LIVEDATA_SMTP_PASSWORD).")] = None,
    trust_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trust-proxy",
            metavar="ADDR/CIDR",
            help="Honour X-Forwarded-For/-Proto from these reverse proxies only (repeat, or separate with commas).",
        ),
    ] = None,
    mfa_policy: Annotated[
        str | None,
        typer.Option(
            "--mfa-policy",
            help="When MFA accounts give a code: 'untrusted' (default: not on trusted devices) or 'always'.",
        ),
    ] = None,
    device_trust_days: Annotated[
        int | None, typer.Option("--device-trust-days", help="How long 'account trust' lasts (default 30).", min=1)
    ] = None,
    ip_retention_days: IpDaysOpt = None,
    json_limit: Annotated[
        int | None,
        typer.Option(
            "--json-limit", help="Bytes a request body other than file content may have (default 65536).", min=1024
        ),
    ] = None,
    metrics_token: Annotated[
        str | None,
        typer.Option(
            "--metrics-token",
            envvar="LIVEDATA_METRICS_TOKEN",
            help="Serve /metrics to 'Authorization: Bearer TOKEN' only (better: LIVEDATA_METRICS_TOKEN); "
            "without it /metrics is not served.",
            show_envvar=False,
        ),
    ] = None,
    max_open_uploads: Annotated[
        int | None,
        typer.Option("--max-open-uploads", help="Unfinished resumable uploads an account may hold (default 20).", min=1),
    ] = None,
    upload_idle_timeout: Annotated[
        int | None,
        typer.Option(
            "--upload-idle-timeout", help="Seconds an untouched unfinished upload is kept (default 3600).", min=60
        ),
    ] = None,
    header_timeout: Annotated[
        float | None,
        typer.Option("--header-timeout", help="Seconds a client has to send a request's headers (default 10).", min=1),
    ] = None,
    body_timeout: Annotated[
        float | None,
        typer.Option(
            "--body-timeout", help="Seconds a request body may stall before the connection is closed (default 30).",
            min=1,
        ),
    ] = None,
    audit_batch_ms: Annotated[
        int | None,
        typer.Option(
            "--audit-batch-ms",
            help="Write the audit records of metadata reads in batches this often (default 0: each at once).",
            min=0,
        ),
    ] = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Start the server (FastAPI on uvicorn); one JSON log line per request on stderr.

    Example: livedata server --db postgresql://u:p@db/livedata --workers 4 --host 0.0.0.0
    """
    if ctx.invoked_subcommand is not None:
        return
    env = setup(json_, quiet)
    from livedata_cli import notices
    from livedata_cli.server.run import log_notice

    notices.notice = log_notice  # the server's stderr is its JSON log: every line one document
    if mfa_policy not in (None, "untrusted", "always"):
        from livedata_cli.errors import UsageError

        raise UsageError(f"--mfa-policy must be 'untrusted' or 'always', not {mfa_policy!r}")
    from livedata_cli.server.config import proxy_networks
    from livedata_cli.server.run import listening_line
    from livedata_cli.server.run import serve as run
    from livedata_cli.server.security import token_hash

    config = _config(
        host=host,
        port=port,
        db_url=db,
        store_url=store,
        keys_path=keys,
        workers=workers,
        certfile=certfile,
        keyfile=keyfile,
        redis_url=redis,
        scan_command=scan_command,
        scan_timeout=scan_timeout,
        public_url=public_url,
        quota_bytes=quota,
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        smtp_from=smtp_from,
        smtp_starttls=smtp_starttls or None,
        smtp_user=smtp_user,
        trust_proxy=proxy_networks(trust_proxy) if trust_proxy else None,
        metrics_token_hash=token_hash(metrics_token) if metrics_token else None,
        mfa_policy=mfa_policy,
        device_trust_days=device_trust_days,
        ip_retention_days=ip_retention_days,
        json_limit=json_limit,
        max_open_uploads=max_open_uploads,
        upload_idle_timeout=upload_idle_timeout,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        audit_batch_ms=audit_batch_ms,
    )
    del env
    run(config, listening_line)


@app.command()
def migrate(
    db: DbOpt = None, ip_retention_days: IpDaysOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False
) -> None:
    """Apply the database migrations not yet applied (safe to run again, and while servers run).

    Also erases IP addresses older than the retention (as every server start does).

    Example: livedata server migrate --db postgresql://u:p@db/livedata
    """
    env = setup(json_, quiet)
    from livedata_cli.server.operator import migrate as run

    applied = run(_config(db_url=db, ip_retention_days=ip_retention_days))
    if env.json:
        env.emit({"applied": applied})
    else:
        env.say(f"applied {', '.join(applied)}" if applied else "the database is up to date")


@app.command("rotate-key")
def rotate_key(db: DbOpt = None, keys: KeysOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """Add a new server key version, then re-wrap every blob's data key under it (blob data is not rewritten).

    Running servers use the new version for new uploads at once and still read
    blobs of older versions.
    Example: livedata server rotate-key
    """
    env = setup(json_, quiet)
    from livedata_cli.server.operator import rotate_key as run

    result = run(_config(db_url=db, keys_path=keys))
    if env.json:
        env.emit({"version": result.version, "rewrapped": result.rewrapped})
    else:
        env.say(f"key version {result.version} is current; {result.rewrapped} data keys re-wrapped")


@app.command("retire-key")
def retire_key(
    version: Annotated[int, typer.Argument(metavar="VERSION", help="The key version to remove from the key file.")],
    db: DbOpt = None,
    keys: KeysOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove an old server key version from the key file, once no blob's data key is wrapped under it.

    Refused (exit 7) while any blob still uses it: 'rotate-key' re-wraps them all under a new version first.
    The current version cannot be retired (exit 2).
    Example: livedata server retire-key 1
    """
    env = setup(json_, quiet)
    from livedata_cli.server.operator import retire_key as run

    left = run(_config(db_url=db, keys_path=keys), version)
    if env.json:
        env.emit({"retired": version, "versions": left})
    else:
        env.say(f"key version {version} retired; {left} version{'s' if left != 1 else ''} left")


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Argument(help="The administrator's email address.")],
    db: DbOpt = None,
    first_name: Annotated[str, typer.Option("--first-name", help="First name.")] = "",
    last_name: Annotated[str, typer.Option("--last-name", help="Last name.")] = "",
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Create an administrator account (or make an existing one admin).

    The password comes from LIVEDATA_ADMIN_PASSWORD, or is asked twice on a terminal.
    Example: LIVEDATA_ADMIN_PASSWORD=... livedata server create-admin ops@example.com
    """
    env = setup(json_, quiet)
    from livedata_cli.errors import UsageError
    from livedata_cli.server.operator import create_admin as run

    password = os.environ.get("LIVEDATA_ADMIN_PASSWORD")
    if password is None:
        if not env.can_prompt():
            raise UsageError("set LIVEDATA_ADMIN_PASSWORD or run on a terminal to be asked")
        password = env.prompt("Admin password: ")
        if password != env.prompt("Repeat the password: "):
            raise UsageError("the two passwords differ; nothing was created")
    uid = run(_config(db_url=db), email, password, first_name, last_name)
    if env.json:
        env.emit({"id": uid, "email": email.lower(), "is_admin": True})
    else:
        env.say(f"administrator {email.lower()} ready (id {uid})")


users_app = typer.Typer(
    help="Accounts on this server's database: list, disable, enable, reset-mfa (operators; like 'server migrate').",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")


def _printable(text: str) -> str:
    from livedata_cli.server.emails import printable

    return printable(text)


def _user_line(u: dict[str, Any]) -> str:
    from livedata_cli.cli.common import human_size
    from livedata_cli.server.emails import printable

    state = "disabled" if u["disabled"] else "active"
    return f"{printable(u['email']):<32} {u['role']:<5} {state:<8} {u['files']:>7} file(s) {human_size(int(u['used_bytes'])):>9}  {u['id']}"


@users_app.command("list")
def users_list(db: DbOpt = None, json_: JsonOpt = False, quiet: QuietOpt = False) -> None:
    """List every account: email, role, state, file count, storage used, id.

    Example: livedata server users list --db postgresql://u:p@db/livedata --json
    """
    env = setup(json_, quiet)
    from livedata_cli.server.operator import list_users

    found = list_users(_config(db_url=db))
    if env.json:
        env.emit(found)
        return
    for u in found:
        env.out(_user_line(u))
    env.say(f"{len(found)} account(s)")


def _set_disabled(email: str, db: str | None, disabled: bool, json_: bool, quiet: bool) -> None:
    env = setup(json_, quiet)
    from livedata_cli.server.operator import set_user_disabled

    u = set_user_disabled(_config(db_url=db), email, disabled)
    if env.json:
        env.emit(u)
    else:
        env.say(f"{_printable(str(u['email']))} is {'disabled: its sessions have ended' if disabled else 'enabled'}")


@users_app.command("disable")
def users_disable(
    email: Annotated[str, typer.Argument(help="The account's email.")],
    db: DbOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Disable an account: its sessions end at once and it cannot log in until enabled.

    Example: livedata server users disable ada@example.com
    """
    _set_disabled(email, db, True, json_, quiet)


@users_app.command("enable")
def users_enable(
    email: Annotated[str, typer.Argument(help="The account's email.")],
    db: DbOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Enable a disabled account again (it logs in anew).

    Example: livedata server users enable ada@example.com
    """
    _set_disabled(email, db, False, json_, quiet)


@users_app.command("reset-mfa")
def users_reset_mfa(
    email: Annotated[str, typer.Argument(help="The account's email.")],
    db: DbOpt = None,
    json_: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Turn an account's MFA off: its TOTP secret and recovery codes go, and every session ends.

    For an owner who lost the authenticator, or whose MFA someone else turned on.
    Example: livedata server users reset-mfa ada@example.com
    """
    env = setup(json_, quiet)
    from livedata_cli.server.operator import reset_mfa

    done = reset_mfa(_config(db_url=db), email)
    if env.json:
        env.emit(done)
    else:
        state = "MFA is off" if done["mfa_was_enabled"] else "MFA was not on"
        env.say(f"{_printable(str(done['email']))}: {state}; its sessions have ended")
