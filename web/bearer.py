"""The bearer token: read from a file only its owner can read, compared in constant time, generated at install.

Under systemd the unit hands the token over with `LoadCredential=` (systemd reads /etc/polymm/web.token as root
and gives the service a private copy in $CREDENTIALS_DIRECTORY), so the file itself stays root:root 0600.
"""
from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from polymm import env

MIN_LENGTH = 32  # characters; `generate` makes 43 (32 random bytes, URL-safe base64)
CREDENTIAL_NAME = "token"  # LoadCredential=token:/etc/polymm/web.token


class TokenError(Exception):
    """The token file cannot be used, in words (the service prints it as one line and exits 2)."""


def default_path() -> Path | None:
    """$CREDENTIALS_DIRECTORY/token when systemd passed it, else None (the operator names a file)."""
    directory = env.get(env.CREDENTIALS_DIRECTORY)
    if directory and (Path(directory) / CREDENTIAL_NAME).exists():
        return Path(directory) / CREDENTIAL_NAME
    return None


def load(path: str | os.PathLike) -> str:
    """The token in `path`. Refused (TokenError) when the file is missing, readable by its group or others, or
    holds something too short or not printable to be a token."""
    path = Path(path)
    try:
        info = os.stat(path)
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise TokenError(f"no token file at {path}: create one with `polymm-web --generate-token {path}` "
                         "(deploy/install.sh does this)") from None
    except PermissionError:
        raise TokenError(f"cannot read the token file {path}: permission denied") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"cannot read the token file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(f"the token file {path} is mode {stat.S_IMODE(info.st_mode):04o}: anyone who can read it can "
                         f"stop the trader; chmod 0600 {path}")
    token = text.strip()
    if len(token) < MIN_LENGTH or not token.isprintable() or any(c.isspace() for c in token):
        raise TokenError(f"the token in {path} is not a token (at least {MIN_LENGTH} printable characters, no "
                         f"spaces): generate one with `polymm-web --generate-token {path} --force`")
    return token


def generate(path: str | os.PathLike, *, force: bool = False) -> str:
    """Write a new random token to `path`, mode 0600 from the first byte (never readable by others, not even
    for an instant). Refuses to replace an existing file unless `force`."""
    path = Path(path)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(token + "\n")
            out.flush()
            os.fsync(out.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file exists: never overwrite an operator's token by accident
            os.unlink(tmp)
    except FileExistsError:
        os.unlink(tmp)
        raise TokenError(f"{path} exists: keep it, or replace it with --force (every page and script using the "
                         "old token then needs the new one)") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return token


def matches(header: str | None, token: str) -> bool:
    """True when an Authorization header carries `token` as a bearer token. Constant time in the token's content
    (hmac.compare_digest), so response times do not reveal how much of a guess was right."""
    if not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("ascii"))
