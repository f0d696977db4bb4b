"""A third-party Python OAuth client fetching client-credentials tokens.

Used by crates/cli/tests/peers.rs: the client is pointed at the proxy's
token URL and nothing else about its usual use changes. Each call prints one
JSON line: {"ok": true, "access_token": ..., ...} for a token, or
{"ok": false, "error_class": ..., "error": ...} for the OAuth error the
library raises (a bad secret, say). Any other failure is not caught: the
traceback goes to stderr and the exit status is non-zero.

    peer.py --library authlib --auth basic --url URL --client-id ID \
        --secret SECRET [--scope SCOPE] [--calls N]
"""

import argparse
import asyncio
import json
import os
import sys

# oauthlib refuses plain HTTP unless told otherwise; the tests run on
# loopback without TLS.
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")

AUTH_METHODS = {"basic": "client_secret_basic", "post": "client_secret_post"}


def token_result(token):
    return {
        "ok": True,
        "access_token": token.get("access_token"),
        "token_type": token.get("token_type"),
        "expires_in": token.get("expires_in"),
    }


def error_result(error):
    cls = type(error)
    return {
        "ok": False,
        "error_class": f"{cls.__module__}.{cls.__qualname__}",
        "error": getattr(error, "error", None),
        "description": getattr(error, "description", None),
    }


def authlib_session(args):
    from authlib.integrations.requests_client import OAuth2Session, OAuthError

    session = OAuth2Session(
        args.client_id,
        args.secret,
        scope=args.scope,
        token_endpoint_auth_method=AUTH_METHODS[args.auth],
    )
    for _ in range(args.calls):
        try:
            yield token_result(
                session.fetch_token(args.url, grant_type="client_credentials")
            )
        except OAuthError as error:
            yield error_result(error)


def authlib_async(args):
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

    async def run():
        results = []
        async with AsyncOAuth2Client(
            args.client_id,
            args.secret,
            scope=args.scope,
            token_endpoint_auth_method=AUTH_METHODS[args.auth],
        ) as client:
            for _ in range(args.calls):
                try:
                    token = await client.fetch_token(
                        args.url, grant_type="client_credentials"
                    )
                    results.append(token_result(token))
                except OAuthError as error:
                    results.append(error_result(error))
        return results

    return asyncio.run(run())


def requests_oauthlib(args):
    from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error
    from requests.auth import HTTPBasicAuth
    from requests_oauthlib import OAuth2Session

    scope = args.scope.split() if args.scope else None
    # The scope goes on the client: fetch_token sends the client's scope,
    # not the session's.
    session = OAuth2Session(
        client=BackendApplicationClient(client_id=args.client_id, scope=scope)
    )
    for _ in range(args.calls):
        try:
            if args.auth == "basic":
                token = session.fetch_token(
                    token_url=args.url,
                    auth=HTTPBasicAuth(args.client_id, args.secret),
                )
            else:
                token = session.fetch_token(
                    token_url=args.url,
                    include_client_id=True,
                    client_id=args.client_id,
                    client_secret=args.secret,
                )
            yield token_result(token)
        except OAuth2Error as error:
            yield error_result(error)


LIBRARIES = {
    "authlib": authlib_session,
    "authlib-async": authlib_async,
    "requests-oauthlib": requests_oauthlib,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", choices=sorted(LIBRARIES), required=True)
    parser.add_argument("--auth", choices=sorted(AUTH_METHODS), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--scope")
    parser.add_argument("--calls", type=int, default=1)
    args = parser.parse_args()
    for result in LIBRARIES[args.library](args):
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
