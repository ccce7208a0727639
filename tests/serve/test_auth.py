"""Token verification against a real workspace: headers, scopes, refresh, revocation, failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from mlprod.errors import ConfigError, DatabaseError, ForbiddenError, InvalidInputError, UnauthorizedError
from mlprod.serve.auth import TokenVerifier, auth_required, bearer_token, is_loopback
from mlprod.serve.tokens import SCOPES, TokenStore
from mlprod.workspace import Workspace

HOW = "send the header 'Authorization: Bearer <token>'"


@pytest.fixture
def store(workspace: Workspace) -> TokenStore:
    return TokenStore(workspace)


@pytest.fixture
def predict_token(store: TokenStore) -> str:
    return store.create("predictor", ["predict"])[1]


@pytest.fixture
def queries(workspace: Workspace) -> Iterator[list[str]]:
    """Every SQL statement the workspace's engine runs while the test does."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa.event.listen(workspace.engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(workspace.engine, "before_cursor_execute", record)


def test_a_valid_token_returns_its_record(store: TokenStore, predict_token: str) -> None:
    record = TokenVerifier(store).check(f"Bearer {predict_token}", "predict")
    assert (record.name, record.scopes) == ("predictor", ("predict",))


def test_scheme_is_case_insensitive_and_spaces_are_tolerated(store: TokenStore, predict_token: str) -> None:
    verifier = TokenVerifier(store)
    assert verifier.check(f"bearer {predict_token}", "predict").name == "predictor"
    assert verifier.check(f"  BEARER   {predict_token} ", "predict").name == "predictor"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "this server requires an API token"),
        ("", "this server requires an API token"),
        ("   ", "this server requires an API token"),
        ("Bearer", "not of the form 'Bearer <token>'"),
        ("Bearer ", "not of the form 'Bearer <token>'"),
        ("TOKEN", "not of the form 'Bearer <token>'"),
        ("Basic TOKEN", "not of the form 'Bearer <token>'"),
        ("Token TOKEN", "not of the form 'Bearer <token>'"),
        ("Bearer TOKEN extra", "not of the form 'Bearer <token>'"),
        ("Bearer TOKEN,Bearer TOKEN", "not of the form 'Bearer <token>'"),
        ("Bearer TOKEN,TOKEN", "not an mlprod API token"),
        ("Bearer not-a-token", "not an mlprod API token"),
        ("Bearer mlp_", "not an mlprod API token"),
        ("Bearer mlp_0123456789ab", "not an mlprod API token"),
        ("Bearer mlp_0123456789ab_", "not an mlprod API token"),
        ("Bearer mlp_0123456789AB_secret", "not an mlprod API token"),
        ("Bearer mlp_0123456789a_secret", "not an mlprod API token"),
        ("Bearer mlp_0123456789ab_sec=ret", "not an mlprod API token"),
        ("Bearer " + "x" * 600, "too long to hold an API token"),
        ("Bearer mlp_0123456789ab_secret", "unknown or revoked"),
    ],
)
def test_missing_or_malformed_headers_are_unauthorized_without_echo(
    store: TokenStore, predict_token: str, header: str | None, expected: str
) -> None:
    header = None if header is None else header.replace("TOKEN", predict_token)
    with pytest.raises(UnauthorizedError) as info:
        TokenVerifier(store).check(header, "predict")
    message = str(info.value)
    assert expected in message and HOW in message and "mlprod tokens create" in message
    sent = (header or "").split()
    assert not any(part in message for part in sent if part.lower() not in ("bearer", "mlp_"))


def test_right_id_with_wrong_secret_is_refused(store: TokenStore, predict_token: str) -> None:
    prefix, token_id, secret = predict_token.split("_", 2)
    wrong_secret = ("A" if secret[0] != "A" else "B") + secret[1:]
    verifier = TokenVerifier(store)
    for forged in (
        f"{prefix}_{token_id}_{wrong_secret}",
        f"{prefix}_{token_id}_{secret}x",
        predict_token[:-1],
    ):
        with pytest.raises(UnauthorizedError, match="unknown or revoked"):
            verifier.check(f"Bearer {forged}", "predict")
    assert verifier.check(f"Bearer {predict_token}", "predict").id == token_id


def test_a_real_secret_under_another_id_is_refused(store: TokenStore, predict_token: str) -> None:
    other, _ = store.create("other", ["predict"])
    _, _, secret = predict_token.split("_", 2)
    with pytest.raises(UnauthorizedError, match="unknown or revoked"):
        TokenVerifier(store).check(f"Bearer mlp_{other.id}_{secret}", "predict")


def test_missing_scope_is_forbidden_and_names_it(store: TokenStore, predict_token: str) -> None:
    with pytest.raises(ForbiddenError) as info:
        TokenVerifier(store).check(f"Bearer {predict_token}", "read")
    assert str(info.value) == (
        "API token 'predictor' lacks the scope 'read' (it has: predict); create a token with '--scope read'"
    )


@pytest.mark.parametrize(
    ("granted", "allowed"),
    [
        (["predict"], {"predict"}),
        (["read"], {"read"}),
        (["predict", "read"], {"predict", "read"}),
        (["admin"], {"predict", "read", "admin"}),
    ],
)
def test_scope_implication(store: TokenStore, granted: list[str], allowed: set[str]) -> None:
    _, token = store.create("t", granted)
    verifier = TokenVerifier(store)
    for scope in SCOPES:
        if scope in allowed:
            assert verifier.check(f"Bearer {token}", scope).name == "t"
        else:
            with pytest.raises(ForbiddenError, match=f"lacks the scope '{scope}'"):
                verifier.check(f"Bearer {token}", scope)


def test_an_unknown_scope_asked_by_the_server_is_a_bug(store: TokenStore, predict_token: str) -> None:
    with pytest.raises(ValueError, match="unknown scope 'write'") as info:
        TokenVerifier(store).check(f"Bearer {predict_token}", "write")
    assert not isinstance(info.value, InvalidInputError)  # not a client error: a 500, not a 422


def test_checks_do_not_query_the_database_between_refreshes(
    store: TokenStore, predict_token: str, queries: list[str]
) -> None:
    verifier = TokenVerifier(store, refresh_seconds=60)
    for _ in range(200):
        verifier.check(f"Bearer {predict_token}", "predict")
        with pytest.raises(UnauthorizedError):
            verifier.check("Bearer mlp_0123456789ab_unknown", "predict")
    assert [q for q in queries if "api_tokens" in q] == queries[-1:], queries  # one SELECT


def test_revoked_token_stops_working_within_refresh_seconds(store: TokenStore, predict_token: str) -> None:
    refresh = 0.3
    verifier = TokenVerifier(store, refresh_seconds=refresh)
    header = f"Bearer {predict_token}"
    before_load = time.monotonic()
    verifier.check(header, "predict")
    store.revoke("predictor")
    revoked_at = time.monotonic()
    verifier.check(header, "predict")  # still accepted from memory: the documented window
    while time.monotonic() < revoked_at + refresh + 1.0:  # generous slack for a loaded machine
        try:
            verifier.check(header, "predict")
        except UnauthorizedError:
            break
        time.sleep(0.01)
    refused_at = time.monotonic()
    with pytest.raises(UnauthorizedError, match="unknown or revoked"):
        verifier.check(header, "predict")
    assert refused_at - before_load >= refresh  # refused because of the refresh, not by a query per check
    assert refused_at - revoked_at < refresh + 1.0


def test_new_token_starts_working_after_refresh(store: TokenStore, predict_token: str) -> None:
    verifier = TokenVerifier(store, refresh_seconds=0.2)
    verifier.check(f"Bearer {predict_token}", "predict")
    _, fresh = store.create("fresh", ["predict"])
    with pytest.raises(UnauthorizedError):
        verifier.check(f"Bearer {fresh}", "predict")
    time.sleep(0.25)
    eventually(lambda: verifier.check(f"Bearer {fresh}", "predict"))  # reloaded in the background
    assert verifier.check(f"Bearer {fresh}", "predict").name == "fresh"


def test_refresh_now_and_zero_interval_take_effect_at_once(store: TokenStore, predict_token: str) -> None:
    cached = TokenVerifier(store, refresh_seconds=60)
    immediate = TokenVerifier(store, refresh_seconds=0)
    header = f"Bearer {predict_token}"
    cached.check(header, "predict")
    immediate.check(header, "predict")
    store.revoke("predictor")
    eventually(lambda: _refused(immediate, header))  # the next background reload sees it
    cached.check(header, "predict")
    cached.refresh()
    with pytest.raises(UnauthorizedError):
        cached.check(header, "predict")


def test_fails_closed_while_the_tokens_cannot_be_loaded(
    workspace: Workspace, store: TokenStore, predict_token: str
) -> None:
    verifier = TokenVerifier(store, refresh_seconds=0.1)
    header = f"Bearer {predict_token}"
    verifier.check(header, "predict")
    with workspace.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE api_tokens RENAME TO api_tokens_away"))
    time.sleep(0.15)

    def fails_closed() -> None:
        with pytest.raises(DatabaseError, match="could not read the API tokens: metadata database failed"):
            verifier.check(header, "predict")

    eventually(fails_closed)
    fails_closed()  # the failure is remembered, and raised afresh, until a reload succeeds
    with workspace.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE api_tokens_away RENAME TO api_tokens"))
    eventually(lambda: verifier.check(header, "predict"))
    assert verifier.check(header, "predict").name == "predictor"


def test_concurrent_checks_across_refreshes(store: TokenStore, predict_token: str) -> None:
    verifier = TokenVerifier(store, refresh_seconds=0.01)
    failures: list[BaseException] = []

    def hammer() -> None:
        try:
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                verifier.check(f"Bearer {predict_token}", "predict")
        except BaseException as exc:  # reported below, on the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_negative_refresh_is_refused(store: TokenStore) -> None:
    with pytest.raises(InvalidInputError, match="refresh_seconds must be 0 or more, got -1"):
        TokenVerifier(store, refresh_seconds=-1)


def test_bearer_token_returns_the_embedded_id() -> None:
    assert bearer_token("Bearer mlp_0123456789ab_s-e_c") == ("0123456789ab", "mlp_0123456789ab_s-e_c")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
        ("::ffff:10.0.0.1", False),
        ("example.org", False),
        ("localhost.example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("host", "configured", "required"),
    [
        ("127.0.0.1", "auto", False),
        ("localhost", "auto", False),
        ("0.0.0.0", "auto", True),
        ("10.0.0.5", "auto", True),
        ("127.0.0.1", "always", True),
        ("0.0.0.0", "never", False),
    ],
)
def test_auth_required(host: str, configured: str, required: bool) -> None:
    assert auth_required(host, configured) is required


@pytest.mark.parametrize("configured", ["", "Auto", "yes", "true"])
def test_auth_mode_must_be_known(configured: str) -> None:
    with pytest.raises(ConfigError) as info:
        auth_required("0.0.0.0", configured)
    assert str(info.value) == f"serve.auth is {configured!r}: expected one of 'auto', 'always', 'never'"


def eventually(check: Callable[[], object], timeout: float = 5.0) -> None:
    """Retry ``check`` until it passes: token reloads happen on a background thread."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except (AssertionError, UnauthorizedError, DatabaseError, pytest.fail.Exception):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _refused(verifier: TokenVerifier, header: str) -> None:
    with pytest.raises(UnauthorizedError):
        verifier.check(header, "predict")
