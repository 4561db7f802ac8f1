"""JWTs: the key kept in the data directory, expiry, tampering, kinds, the verification cache."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path

import jwt
import pytest
import trio

from vareon_runtime.auth import Principal, Role, Tokens, load_signing_key
from vareon_runtime.auth.tokens import TokenKind
from vareon_runtime.config import Config, load_config
from vareon_runtime.errors import AuthenticationError, ConfigError

SECRET = "k" * 40


def config_in(tmp_path: Path, **env: str) -> Config:
    return load_config(None, environ={"VAREON_RUNTIME_DATA_DIR": str(tmp_path / "data"), **env})


def tokens(key: bytes = SECRET.encode(), **kwargs: int) -> Tokens:
    return Tokens(key, access_ttl=kwargs.pop("access_ttl", 900), refresh_ttl=3600, **kwargs)


def test_key_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    first = load_signing_key(config)
    path = tmp_path / "data" / "secrets" / "jwt.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(first) == 64  # secrets.token_hex(32)
    assert load_signing_key(config) == first
    # A token signed before a restart is still good after it.
    token = tokens(first).issue_access("u1", "alice", Role.VIEWER)
    assert tokens(load_signing_key(config)).verify_access(token).username == "alice"


def test_configured_secret_wins_and_no_file_is_written(tmp_path: Path) -> None:
    config = config_in(tmp_path, VAREON_AUTH_JWT_SECRET=SECRET)
    assert load_signing_key(config) == SECRET.encode()
    assert not (tmp_path / "data" / "secrets").exists()


def test_a_too_short_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secrets" / "jwt.key"
    path.parent.mkdir(parents=True)
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=r"jwt.key: the JWT key must be at least 32 characters, not 5; delete the file"):
        load_signing_key(config_in(tmp_path))


def test_a_key_file_readable_by_others_is_made_private(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    key = load_signing_key(config)
    path = tmp_path / "data" / "secrets" / "jwt.key"
    path.chmod(0o644)
    assert load_signing_key(config) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_access_token_claims() -> None:
    issuer = tokens()
    token = issuer.issue_access("u1", "alice", Role.OPERATOR)
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert claims["sub"] == "u1"
    assert claims["name"] == "alice"
    assert claims["role"] == "operator"
    assert claims["type"] == "access"
    assert claims["exp"] - claims["iat"] == 900
    assert len(claims["jti"]) == 32
    assert issuer.verify_access(token) == Principal(user_id="u1", username="alice", role=Role.OPERATOR)


def test_refresh_token_lives_longer_and_keeps_its_family() -> None:
    issuer = tokens()
    first = issuer.issue_refresh("u1")
    second = issuer.issue_refresh("u1", family=first.family)
    claims = issuer.decode(second.token, "refresh")
    assert claims["type"] == "refresh"
    assert claims["fam"] == first.family
    assert claims["jti"] == second.jti != first.jti
    assert claims["exp"] - claims["iat"] == 3600
    assert second.expires_at.timestamp() == claims["exp"]


def test_expired_access_token_is_refused() -> None:
    issuer = tokens(access_ttl=1)
    token = issuer.issue_access("u1", "alice", Role.ADMIN, now=time.time() - 10)
    with pytest.raises(AuthenticationError, match=r"^token expired$") as info:
        issuer.verify_access(token)
    assert info.value.status == 401


async def test_a_cached_token_still_expires() -> None:
    issuer = tokens(access_ttl=1)
    token = issuer.issue_access("u1", "alice", Role.ADMIN)
    assert issuer.verify_access(token).username == "alice"  # now cached
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    with trio.fail_after(5):
        await trio.sleep(max(0.0, exp - time.time()) + 0.05)
    with pytest.raises(AuthenticationError, match=r"^token expired$"):
        issuer.verify_access(token)


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_tampered_token_is_refused() -> None:
    issuer = tokens()
    header, payload, signature = _segments(issuer.issue_access("u1", "vera", Role.VIEWER))
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    with pytest.raises(AuthenticationError, match=r"^invalid token$"):
        issuer.verify_access(forged)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        jwt.encode({"sub": "u1", "name": "a", "role": "admin", "type": "access", "iat": 0, "exp": 2**40, "jti": "x"}, "o" * 40, algorithm="HS256"),
        jwt.encode({"sub": "u1", "name": "a", "role": "admin", "type": "access", "iat": 0, "exp": 2**40, "jti": "x"}, None, algorithm="none"),
        jwt.encode({"sub": "u1", "name": "a", "role": "admin", "type": "access", "iat": 0, "jti": "x"}, SECRET, algorithm="HS256"),
    ],
    ids=["empty", "garbage", "other-key", "alg-none", "no-exp"],
)
def test_invalid_tokens_are_refused(token: str) -> None:
    with pytest.raises(AuthenticationError, match=r"^invalid token$"):
        tokens().verify_access(token)


@pytest.mark.parametrize("kind", ["access", "refresh", "verify"])
@pytest.mark.parametrize(
    "token",
    ["\ud800", "\u00e9.\u00e9.\u00e9", "eyJ0eXAiOiJKV1QifQ.e30.\udfff", "\x00", "\ufeffabc.def.ghi"],
    ids=["lone-surrogate", "non-ascii-segments", "surrogate-signature", "nul", "bom"],
)
def test_non_ascii_tokens_are_invalid_not_a_crash(token: str, kind: TokenKind) -> None:
    issuer = tokens()
    with pytest.raises(AuthenticationError, match=r"^invalid token$"):
        issuer.decode(token, kind)
    # A real token with one non-ASCII character added is no token either.
    good = issuer.issue_access("u1", "vera", Role.VIEWER)
    for bad in (good + "\u00e9", good[:-1] + "\ud800"):
        with pytest.raises(AuthenticationError, match=r"^invalid token$"):
            issuer.verify_access(bad)


def test_a_token_of_another_kind_is_refused() -> None:
    issuer = tokens()
    refresh = issuer.issue_refresh("u1").token
    with pytest.raises(AuthenticationError, match="invalid token: it is of type 'refresh', expected 'access'"):
        issuer.verify_access(refresh)
    access = issuer.issue_access("u1", "alice", Role.ADMIN)
    with pytest.raises(AuthenticationError, match="invalid token: it is of type 'access', expected 'refresh'"):
        issuer.decode(access, "refresh")


def test_the_cache_is_bounded() -> None:
    issuer = tokens(cache_size=8)
    issued = [issuer.issue_access(f"u{n}", f"user{n}", Role.VIEWER) for n in range(20)]
    for token in issued:
        issuer.verify_access(token)
    assert len(issuer._cache) == 8
    # Evicted tokens are verified again, not refused.
    assert issuer.verify_access(issued[0]).user_id == "u0"


def test_repr_shows_no_key() -> None:
    assert SECRET not in repr(tokens())
