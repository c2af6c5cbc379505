#!/usr/bin/env python3
"""Verify a restful-auth access token from the service's published keys alone.

    verify.py BASE_URL TOKEN [--audience restful-auth]

BASE_URL may also come from RESTFUL_AUTH_URL. Prints the claims and exits 0 when the token is
valid; prints why and exits 1 when it is refused (2 when the service cannot be reached).
"""

import argparse
import json
import os
import sys
import urllib.request

import jwt


def discover(base_url):
    url = base_url.rstrip("/") + "/.well-known/openid-configuration"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def verify(token, discovery, audience):
    # In a long-running service make the client once and keep it: it caches the key set and
    # fetches it again only for a kid it does not know, so a rotated-in key needs no restart.
    signing_key = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        signing_key.key,
        # The key's own algorithm, from the key set: never one the token's header chooses.
        # (The discovery document names only the algorithm signing now, so during a change of
        # algorithm it would refuse tokens of the previous keys that are still valid.)
        algorithms=[signing_key.algorithm_name],
        audience=audience,
        issuer=discovery["issuer"],
        options={"require": ["exp", "iat", "iss", "aud"]},
    )


def main():
    parser = argparse.ArgumentParser(description="Verify a restful-auth access token.")
    parser.add_argument("base_url", nargs="?", default=os.environ.get("RESTFUL_AUTH_URL"))
    parser.add_argument("token")
    parser.add_argument("--audience", default="restful-auth")
    args = parser.parse_args()
    if not args.base_url:
        parser.error("give BASE_URL or set RESTFUL_AUTH_URL")

    try:
        claims = verify(args.token, discover(args.base_url), args.audience)
    except (OSError, ValueError, KeyError, jwt.PyJWKClientConnectionError) as error:
        # The service could not be asked, or answered nonsense: that says nothing about the token.
        print(f"ERROR: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    except jwt.PyJWTError as error:
        print(f"REFUSED: {type(error).__name__}: {error}")
        return 1
    print(f"VALID: user_id={claims.get('user_id')} sid={claims.get('sid')} exp={claims['exp']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
