"""Clients for S3 and KMS (botocore, boto3's core), and what their errors mean to livedata.

botocore is imported only inside these functions: it costs about 150 ms, which
``livedata --help`` and commands on a folder vault must not pay.

Endpoints: ``AWS_ENDPOINT_URL`` (and boto3's per-service variables such as
``AWS_ENDPOINT_URL_S3``) win when set; otherwise the endpoint remembered in
the home's vault settings at ``init``; otherwise AWS itself.  The region comes
from the usual AWS sources, else the one remembered at ``init``, else
``us-east-1`` (S3-compatible servers mostly ignore it).
"""

from __future__ import annotations

import os
from typing import Any

from livedata_cli import settings
from livedata_cli.errors import (
    AuthError,
    IntegrityError,
    LivedataError,
    NotFound,
    StoreUnreachable,
)

# Bounded waits, so an endpoint that is down is an exit 6 within seconds:
# three attempts of at most CONNECT_TIMEOUT each, with standard back-off.
CONNECT_TIMEOUT = 4
READ_TIMEOUT = 60
MAX_ATTEMPTS = 3

_SERVICE_ENDPOINT_VARS = {
    "s3": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "kms": ("AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL"),
}

_AUTH_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "AllAccessDisabled",
    "AccountProblem",
    "DisabledException",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncorrectKeyException",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "InvalidToken",
    "KMS.DisabledException",
    "KMS.KMSInvalidStateException",
    "KMS.AccessDeniedException",
    "KMSInvalidStateException",
    "KeyUnavailableException",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "403",
}
_UNREACHABLE_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "KMSInternalException",
    "DependencyTimeoutException",
}


_session: Any = None


def env_endpoint(service: str) -> str | None:
    """The endpoint the environment sets for a service, if any."""
    for var in _SERVICE_ENDPOINT_VARS.get(service, ("AWS_ENDPOINT_URL",)):
        if os.environ.get(var):
            return os.environ[var]
    return None


def remembered() -> settings.VaultSettings | None:
    """This home's vault settings, when there are any (endpoint and region)."""
    try:
        return settings.VaultSettings.load() if settings.VaultSettings.exists() else None
    except LivedataError:
        return None


def client(service: str, *, pool: int = 10) -> Any:
    """A client with livedata's timeouts, retries and checksum settings.

    Made by botocore (boto3's core: the same clients, credentials chain,
    profiles and endpoint variables) without importing boto3 itself, whose
    resource layer and transfer manager livedata does not use and whose import
    a command on S3 would pay every time."""
    import botocore.session
    from botocore.config import Config

    saved = remembered()
    endpoint = None if env_endpoint(service) else (saved.endpoint_url if saved else None)
    global _session
    if _session is None:
        _session = botocore.session.get_session()  # one per process: S3 and KMS share its loaders
    session = _session
    region = session.get_config_variable("region") or (saved.region if saved else None) or "us-east-1"
    from livedata_cli import netwait

    stall = netwait.stall_timeout()
    retries: dict[str, Any] = {"mode": os.environ.get("AWS_RETRY_MODE") or "standard"}
    attempts = int(os.environ.get("AWS_MAX_ATTEMPTS") or netwait.attempts_within_budget(stall, MAX_ATTEMPTS))
    if not os.environ.get("AWS_MAX_ATTEMPTS"):
        retries["max_attempts"] = attempts
    custom = endpoint is not None or env_endpoint(service) is not None
    cfg = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # S3-compatible servers (MinIO, Ceph, moto) want path-style addressing.
        s3={"addressing_style": "path" if custom else "auto"},
        retries=retries,  # type: ignore[arg-type]
        connect_timeout=min(CONNECT_TIMEOUT, stall),
        read_timeout=stall,  # first byte and every later read: a moving transfer is never cut
        max_pool_connections=pool,
    )
    try:
        made = session.create_client(service, endpoint_url=endpoint, region_name=region, config=cfg)
    except ValueError as e:  # a malformed endpoint URL
        from livedata_cli.errors import UsageError

        raise UsageError(f"invalid {service} endpoint: {e}") from None
    made.meta.events.register(f"needs-retry.{service}", _retry_notice(service, attempts))
    return made


def _retry_notice(service: str, attempts: int) -> Any:
    """A botocore hook announcing each retry of a silent or failing call."""

    def hook(attempts_done: int = 0, caught_exception: Any = None, response: Any = None, **_: Any) -> None:
        if attempts_done >= attempts:
            return
        failed = caught_exception is not None
        if not failed and response is not None:
            status = int(response[1].get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            failed = status in (500, 502, 503, 504)  # what botocore retries; 501 is final
        if failed:
            from livedata_cli import netwait

            netwait.announce(f"{service} endpoint", attempts_done + 1, attempts, None)

    def adapter(**kw: Any) -> None:
        hook(attempts_done=int(kw.get("attempts") or 0), caught_exception=kw.get("caught_exception"),
             response=kw.get("response"))

    return adapter


def error_code(e: BaseException) -> str:
    """The service's error code of a botocore ClientError ("" for anything else)."""
    response = getattr(e, "response", None)
    if not isinstance(response, dict):
        return ""
    code = str(response.get("Error", {}).get("Code", ""))
    return code


def translate(e: BaseException, what: str, *, bucket: str | None = None) -> LivedataError:
    """Turn a boto3/botocore exception into the livedata error with the right exit code.

    ``what`` names the thing being done or the object concerned, for the message.
    """
    from botocore import exceptions as bx

    if isinstance(e, LivedataError):
        return e
    if isinstance(e, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AuthError(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
            "or run where an instance role is available"
        )
    if isinstance(
        e,
        bx.EndpointConnectionError
        | bx.ConnectTimeoutError
        | bx.ReadTimeoutError
        | bx.ConnectionClosedError
        | bx.ProxyConnectionError
        | bx.SSLError
        | bx.HTTPClientError,
    ):
        return StoreUnreachable(f"{what}: cannot reach the endpoint after retries ({e})")
    if isinstance(e, bx.ClientError):
        code = error_code(e)
        message = str(e.response.get("Error", {}).get("Message", "") or code)
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code == "NoSuchBucket":
            return NotFound(f"the bucket {bucket or e.response.get('Error', {}).get('BucketName', '')} does not exist")
        if code in ("NoSuchKey", "404", "NotFound", "NoSuchUpload"):
            return NotFound(f"{what}: not found")
        if code == "NotFoundException":
            return NotFound(f"{what}: {message}")
        if code in _AUTH_CODES or status == 403:
            return AuthError(f"{what}: access denied ({code}: {message})")
        if code == "InvalidCiphertextException":
            return IntegrityError(f"{what}: KMS refused the ciphertext: altered, or bound to another vault")
        if code in _UNREACHABLE_CODES or status >= 500:
            return StoreUnreachable(f"{what}: the service keeps failing after retries ({code})")
        return LivedataError(f"{what}: {code}: {message}")
    return LivedataError(f"{what}: {e}")
