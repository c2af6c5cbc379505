"""Register, log in, read the profile, refresh and log out through a client generated from the
service's OpenAPI document (openapi-python-client), checking each answer against
docs/CONTRACT.md: its status, its type as the document describes it, and its fields.

    python smoke.py http://127.0.0.1:8000

The package `restful_auth_client` must be importable (check.sh generates it). The base URL the
client is given comes from the document's `servers`, resolved against the URL the document was
read from, as a client that knows only the document's address would do. The generated client
sends its bodies as forms: the document offers JSON and forms alike, and the generator's code
picks the last it lists. Exits 1 if anything is not as the contract says.
"""

import sys
import uuid
from http import HTTPStatus
from urllib.parse import urljoin

import httpx
from restful_auth_client import AuthenticatedClient, Client, errors
from restful_auth_client.api.accounts import register
from restful_auth_client.api.profile import show_profile
from restful_auth_client.api.sessions import login, logout, refresh
from restful_auth_client.models import (
    Credentials,
    Detail,
    NewAccount,
    Profile,
    RefreshTokenBody,
    Registered,
    Success,
    Tokens,
)

results = []


def check(what, condition, got):
    """Records one expectation of the contract; `got` is shown when it does not hold."""
    results.append(bool(condition))
    print(("ok   " if condition else "FAIL ") + what + ("" if condition else f": got {got!r}"))
    return condition


def tokens_as_contracted(what, answer, lifetime):
    """A login's or a refresh's 200: Bearer tokens, the access token a JWT (three parts)."""
    tokens = answer.parsed
    return check(
        f"{what}: 200 with a Bearer access token (a JWT) for {lifetime} s and a UUID refresh token",
        answer.status_code == HTTPStatus.OK
        and isinstance(tokens, Tokens)
        and tokens.token_type == "Bearer"
        and tokens.expires_in == lifetime
        and len(tokens.access_token.split(".")) == 3
        and isinstance(tokens.refresh_token, uuid.UUID),
        (answer.status_code, answer.content),
    )


def main(service_url):
    document = httpx.get(urljoin(service_url, "/api/schema/")).json()
    base_url = urljoin(service_url + "/api/schema/", document["servers"][0]["url"]).rstrip("/")
    check("the document names the service's public URL", base_url == service_url, base_url)
    # An answer the document does not describe raises instead of passing unnoticed.
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)

    email = f"client-{uuid.uuid4().hex[:8]}@example.org"
    password = "correct horse battery staple"

    answer = register.sync_detailed(
        client=anonymous, body=NewAccount(email=email, password=password)
    )
    registered = answer.parsed
    if not check(
        "register: 201 with the new account's id and email",
        answer.status_code == HTTPStatus.CREATED
        and isinstance(registered, Registered)
        and registered.id > 0
        and registered.email == email,
        (answer.status_code, answer.content),
    ):
        return

    answer = login.sync_detailed(
        client=anonymous, body=Credentials(email=email, password="wrong " + password)
    )
    check(
        "login with a wrong password: 401 with the contract's detail",
        answer.status_code == HTTPStatus.UNAUTHORIZED
        and isinstance(answer.parsed, Detail)
        and answer.parsed.detail == "No active account found with the given credentials",
        (answer.status_code, answer.content),
    )

    answer = login.sync_detailed(client=anonymous, body=Credentials(email=email, password=password))
    if not tokens_as_contracted("login", answer, lifetime=30):
        return
    first = answer.parsed

    bearer = AuthenticatedClient(
        base_url=base_url, token=first.access_token, raise_on_unexpected_status=True
    )
    answer = show_profile.sync_detailed(client=bearer)
    profile = answer.parsed
    check(
        "me: 200 with the account's id, email, and its email as username",
        answer.status_code == HTTPStatus.OK
        and isinstance(profile, Profile)
        and (profile.id, profile.email, profile.username) == (registered.id, email, email),
        (answer.status_code, answer.content),
    )

    answer = refresh.sync_detailed(
        client=anonymous, body=RefreshTokenBody(refresh_token=first.refresh_token)
    )
    if not tokens_as_contracted("refresh", answer, lifetime=30):
        return
    second = answer.parsed
    check(
        "refresh: a new refresh token, not the one presented",
        second.refresh_token != first.refresh_token,
        second.refresh_token,
    )

    answer = logout.sync_detailed(
        client=anonymous, body=RefreshTokenBody(refresh_token=second.refresh_token)
    )
    check(
        'logout: 200 {"success": "User logged out."}',
        answer.status_code == HTTPStatus.OK
        and isinstance(answer.parsed, Success)
        and answer.parsed.success == "User logged out.",
        (answer.status_code, answer.content),
    )

    # The control for logout: its session is over, so its refresh token no longer refreshes.
    answer = refresh.sync_detailed(
        client=anonymous, body=RefreshTokenBody(refresh_token=second.refresh_token)
    )
    check(
        "refresh after logout: 401, the session has ended",
        answer.status_code == HTTPStatus.UNAUTHORIZED and isinstance(answer.parsed, Detail),
        (answer.status_code, answer.content),
    )


if __name__ == "__main__":
    try:
        main(sys.argv[1].rstrip("/"))
    # An undocumented status, a body the client cannot read, a service that does not answer.
    except (errors.UnexpectedStatus, httpx.HTTPError, KeyError, TypeError, ValueError) as error:
        check("every answer is one the document describes", False, error)
    failed = results.count(False)
    print(f"python-client: {len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed or not results else 0)
