"""API token records against a real metadata database: create, list, revoke, snapshot, bad input."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from mlprod.errors import AlreadyExistsError, InvalidInputError, NotFoundError
from mlprod.identity import current_user
from mlprod.meta.tables import api_tokens
from mlprod.serve.tokens import SCOPES, ApiToken, TokenStore, check_scopes, implied_scopes
from mlprod.workspace import Workspace

TOKEN_FORMAT = re.compile(r"mlp_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")


@pytest.fixture
def store(workspace: Workspace) -> TokenStore:
    return TokenStore(workspace)


def test_create_returns_the_record_and_a_plaintext_token_once(store: TokenStore) -> None:
    before = datetime.now(UTC)
    record, plaintext = store.create("ci-deploy", ["predict"])
    match = TOKEN_FORMAT.fullmatch(plaintext)
    assert match is not None, plaintext
    assert match.group(1) == record.id
    assert (record.name, record.scopes, record.who, record.revoked_at) == (
        "ci-deploy",
        ("predict",),
        current_user(),
        None,
    )
    assert before - timedelta(seconds=1) <= record.created_at <= datetime.now(UTC)
    assert store.list() == [record]


def test_two_tokens_differ_in_id_and_secret(store: TokenStore) -> None:
    a, token_a = store.create("a", ["predict"])
    b, token_b = store.create("b", ["predict"])
    assert a.id != b.id
    assert token_a.split("_", 2)[2] != token_b.split("_", 2)[2]


def test_only_the_hash_is_stored(workspace: Workspace, store: TokenStore) -> None:
    record, plaintext = store.create("dashboard", ["read"])
    with workspace.engine.connect() as conn:
        row = conn.execute(api_tokens.select().where(api_tokens.c.id == record.id)).one()._mapping
    assert row["token_sha256"] == hashlib.sha256(plaintext.encode()).hexdigest()
    secret = plaintext.split("_", 2)[2]
    assert not any(secret in str(value) for value in row.values())
    files = sorted(workspace.root.glob("meta.db*"))  # the database and its write-ahead log
    assert any(b"dashboard" in path.read_bytes() for path in files)  # the search looks where rows are
    for path in files:
        assert secret.encode() not in path.read_bytes(), path


def test_scopes_are_deduplicated_in_canonical_order(store: TokenStore) -> None:
    record, _ = store.create("ops", ["admin", "predict", "admin"])
    assert record.scopes == ("predict", "admin")
    assert store.get("ops").scopes == ("predict", "admin")


def test_admin_implies_read_and_predict_but_read_implies_nothing_else() -> None:
    assert implied_scopes(["admin"]) == SCOPES
    assert implied_scopes(["read"]) == ("read",)
    assert implied_scopes(["predict"]) == ("predict",)
    now = datetime.now(UTC)
    admin = ApiToken("0" * 12, "a", ("admin",), now, "me")
    reader = ApiToken("1" * 12, "r", ("read",), now, "me")
    predictor = ApiToken("2" * 12, "p", ("predict",), now, "me")
    assert all(admin.allows(s) for s in SCOPES)
    assert [reader.allows(s) for s in SCOPES] == [False, True, False]
    assert [predictor.allows(s) for s in SCOPES] == [True, False, False]


def test_list_includes_revoked_tokens_marked(store: TokenStore) -> None:
    kept, _ = store.create("kept", ["predict"])
    gone, _ = store.create("gone", ["read"])
    revoked = store.revoke("gone")
    assert revoked.revoked and revoked.revoked_at is not None
    assert {t.name: t.revoked for t in store.list()} == {"kept": False, "gone": True}
    assert [t.id for t in store.list()] == [kept.id, gone.id]


def test_revoke_by_id_and_twice_keeps_the_first_time(store: TokenStore) -> None:
    record, _ = store.create("twice", ["predict"])
    first = store.revoke(record.id)
    assert first.name == "twice" and first.revoked_at is not None
    again = store.revoke("twice")
    assert again.revoked_at == first.revoked_at


def test_snapshot_holds_active_tokens_with_their_hashes(store: TokenStore) -> None:
    active, token = store.create("active", ["predict", "read"])
    revoked, _ = store.create("revoked", ["admin"])
    store.revoke(revoked.id)
    assert store.snapshot() == {active.id: (hashlib.sha256(token.encode()).hexdigest(), active)}


@pytest.mark.parametrize(
    "name",
    ["", "-leading-dash", ".hidden", "has space", "slash/name", "x" * 101, "naïve", "abcdef012345"],
)
def test_bad_names_are_refused(store: TokenStore, name: str) -> None:
    with pytest.raises(InvalidInputError, match="API token name") as info:
        store.create(name, ["predict"])
    if name == "abcdef012345":
        assert "looks like a token id" in str(info.value)
    else:
        assert "letters, digits, '.', '_' or '-'" in str(info.value)
    assert store.list() == []


def test_longest_allowed_name(store: TokenStore) -> None:
    record, _ = store.create("n" * 100, ["predict"])
    assert record.name == "n" * 100


def test_unknown_scope_is_named_with_the_valid_ones(store: TokenStore) -> None:
    with pytest.raises(InvalidInputError) as info:
        store.create("x", ["predict", "write"])
    assert str(info.value) == "unknown API token scope 'write': valid scopes are 'predict', 'read', 'admin'"
    assert store.list() == []


def test_empty_scopes_are_refused(store: TokenStore) -> None:
    with pytest.raises(InvalidInputError, match="needs at least one scope: choose from 'predict', 'read'"):
        store.create("x", [])
    with pytest.raises(InvalidInputError, match="needs at least one scope"):
        check_scopes(iter(()))


def test_duplicate_names_are_refused_even_after_revocation(store: TokenStore) -> None:
    store.create("dup", ["predict"])
    with pytest.raises(AlreadyExistsError, match="'dup' is already taken by an active token"):
        store.create("dup", ["read"])
    store.revoke("dup")
    with pytest.raises(AlreadyExistsError, match="'dup' is already taken by a revoked token"):
        store.create("dup", ["read"])
    assert len(store.list()) == 1


def test_unknown_token_cannot_be_revoked_or_read(store: TokenStore) -> None:
    store.create("exists", ["predict"])
    with pytest.raises(NotFoundError, match=r"no API token named or with id 'nope'.*mlprod tokens list"):
        store.revoke("nope")
    with pytest.raises(NotFoundError, match="no API token named or with id '0123456789ab'"):
        store.get("0123456789ab")
    assert not any(t.revoked for t in store.list())


def test_records_read_back_from_the_database_equal_the_created_ones(
    workspace: Workspace, store: TokenStore
) -> None:
    record, _ = store.create("roundtrip", ["read", "admin"])
    assert TokenStore(workspace).get(record.id) == record
    with workspace.engine.connect() as conn:
        stored = conn.execute(sa.select(api_tokens.c.scopes)).scalar_one()
    assert stored == ["read", "admin"]
