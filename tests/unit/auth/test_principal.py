"""Principals: the names the ledger records as actors, the roles, the model globs."""

from __future__ import annotations

import pytest

from mrm.core.auth.principal import (
    ANONYMOUS,
    ROLES,
    Method,
    Principal,
    Role,
    parse_roles,
    system,
    valid_name,
)


@pytest.mark.parametrize(
    "name",
    [
        "devin@example.com",
        "ci:acme/credit@refs/heads/main",
        "spiffe://mrm.test/ns/mrm/sa/proxy",
        "a",
        "A" * 200,
        "x+y=z~w-v_u.t",
    ],
)
def test_a_printable_name_without_spaces_is_valid(name: str) -> None:
    assert valid_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "-leading-dash", ".dot", "has space", "tab\there", "new\nline", "A" * 201, "é", "a;b"],
)
def test_a_name_that_would_read_ambiguously_in_a_log_is_invalid(name: str) -> None:
    assert not valid_name(name)


def test_parse_roles_accepts_every_role_name() -> None:
    assert parse_roles(ROLES, "here") == frozenset(Role)
    assert parse_roles(["auditor", "auditor"], "here") == {Role.AUDITOR}


def test_parse_roles_names_where_and_the_bad_role() -> None:
    with pytest.raises(ValueError, match=r"^roles\[2\]: 'root' is not a role \(want one of admin"):
        parse_roles(["admin", "root"], "roles[2]")


def test_parse_roles_refuses_no_roles() -> None:
    with pytest.raises(ValueError, match=r"^--role: at least one role is required"):
        parse_roles([], "--role")


def test_a_deployer_may_change_only_the_models_its_globs_cover() -> None:
    who = Principal("d", frozenset({Role.DEPLOYER}), Method.TOKEN, models=("credit-*", "fraud"))
    assert who.may_deploy("credit-risk")
    assert who.may_deploy("fraud")
    assert not who.may_deploy("fraud-v2")
    assert not who.may_deploy("Credit-risk")  # globs are case-sensitive


def test_an_admin_may_change_any_model_and_an_auditor_none() -> None:
    admin = Principal("a", frozenset({Role.ADMIN}), Method.TOKEN, models=("nothing",))
    auditor = Principal("b", frozenset({Role.AUDITOR}), Method.TOKEN)
    assert admin.may_deploy("credit-risk")
    assert not auditor.may_deploy("credit-risk")


def test_has_means_any_one_of_the_roles() -> None:
    who = Principal("p", frozenset({Role.PROXY}), Method.MTLS)
    assert who.has(Role.ADMIN, Role.PROXY)
    assert not who.has(Role.ADMIN, Role.AUDITOR)
    assert not who.has()


def test_describe_names_the_principal_the_method_and_the_sorted_roles() -> None:
    who = Principal("ops", frozenset({Role.DEPLOYER, Role.AUDITOR}), Method.OIDC)
    assert who.describe() == "ops (oidc; auditor, deployer)"
    assert Principal("x", frozenset(), Method.NONE).describe() == "x (none; no roles)"


def test_anonymous_holds_every_role_and_system_principals_are_admins() -> None:
    assert ANONYMOUS.roles == frozenset(Role)
    assert ANONYMOUS.method is Method.NONE
    me = system("bootstrap")
    assert (me.name, me.roles, me.method) == (
        "system:bootstrap",
        frozenset({Role.ADMIN}),
        Method.SYSTEM,
    )
    assert valid_name(me.name)
