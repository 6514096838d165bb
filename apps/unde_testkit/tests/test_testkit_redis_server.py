"""redis_server with an ACL file: the server loads its users from it, the URL authenticates as the
named user, and a file the server refuses (or a call without the user) is an error naming why."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import redis

from unde_testkit.testing import redis_server


def _acl(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "users.acl"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_acl_file_users_and_the_default_user_off(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"app-password-123").hexdigest()
    acl = _acl(
        tmp_path,
        "user default off resetpass -@all",
        f"user app on #{digest} resetkeys ~app:* -@all +ping +get +set -select +select|3",
    )
    with redis_server(tmp_path / "r", acl_file=acl, user="app", password="app-password-123") as url:
        assert url.startswith("redis://app:app-password-123@127.0.0.1:") and url.endswith("/0")
        client = redis.Redis.from_url(url.removesuffix("/0") + "/3")
        client.set("app:k", "v")
        assert client.get("app:k") == b"v"
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.get("other:k")
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis.from_url("redis://" + url.split("@", 1)[1]).ping()  # no user


def test_acl_file_needs_a_user(tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="user and password"),
        redis_server(tmp_path / "r", acl_file=_acl(tmp_path, "user default on nopass +@all ~*")),
    ):
        pass


def test_refused_acl_file_names_the_error(tmp_path: Path) -> None:
    acl = _acl(tmp_path, "# comments are not allowed in an ACL file")
    with (
        pytest.raises(RuntimeError, match="should start with user keyword"),
        redis_server(tmp_path / "r", acl_file=acl, user="x", password="y"),
    ):
        pass
