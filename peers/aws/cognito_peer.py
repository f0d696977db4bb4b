"""Cognito's native API through tokencache, with the real AWS SDK for
Python (boto3) and the AWS CLI pointed at the proxy and nothing else
changed. Run by crates/cli/tests/cognito_sdks.rs; prints one JSON line of
facts the test checks, and fails (exit 1, the reason on stderr) on the
first surprise.

  cognito_peer.py moto  --moto URL --proxy URL --aws PATH
      moto's cognito-idp (a third-party implementation that mints a new
      jti on every sign-in, so equal tokens prove the cache answered)
  cognito_peer.py mock  --proxy URL
      the mock IdP: GetClientToken, and the AWS error shapes raised as the
      right boto3 exception classes
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore import UNSIGNED
from botocore.config import Config

REGION = "eu-west-1"
# No retries in the SDK: what the proxy answers is what the test sees.
NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=64)


def client(url, config=NO_RETRIES):
    return boto3.client(
        "cognito-idp",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


def secret_hash(secret, username, client_id):
    digest = hmac.new(secret.encode(), (username + client_id).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def check(condition, message):
    if not condition:
        print(f"cognito_peer: {message}", file=sys.stderr)
        sys.exit(1)


def raises(call, exception_class):
    """The error of `call`, which must raise `exception_class`."""
    try:
        call()
    except exception_class as error:
        return error.response["Error"]
    check(False, f"expected {exception_class.__name__}")


def cache_status(answer):
    return answer["ResponseMetadata"]["HTTPHeaders"].get("cache-status", "")


def moto(args):
    admin = client(args.moto)
    pool = admin.create_user_pool(PoolName="tokencache")["UserPool"]["Id"]
    app = admin.create_user_pool_client(
        UserPoolId=pool,
        ClientName="service",
        GenerateSecret=True,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]
    client_id, secret = app["ClientId"], app["ClientSecret"]
    for user in ("svc", "svc-cold"):
        admin.admin_create_user(UserPoolId=pool, Username=user, TemporaryPassword="Temp-pass-1!", MessageAction="SUPPRESS")
        admin.admin_set_user_password(UserPoolId=pool, Username=user, Password="Right-pass-1!", Permanent=True)
    admin.admin_create_user(UserPoolId=pool, Username="newbie", TemporaryPassword="Temp-pass-1!", MessageAction="SUPPRESS")

    proxy = client(args.proxy)

    def sign_in(user, password="Right-pass-1!"):
        return proxy.initiate_auth(
            ClientId=client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": user, "PASSWORD": password, "SECRET_HASH": secret_hash(secret, user, client_id)},
        )

    first = sign_in("svc")
    time.sleep(1.2)
    second = sign_in("svc")
    token = first["AuthenticationResult"]["AccessToken"]
    check(second["AuthenticationResult"]["AccessToken"] == token, "the second sign-in did not come from the cache")
    check(
        second["AuthenticationResult"]["ExpiresIn"] < first["AuthenticationResult"]["ExpiresIn"],
        "the cached answer's ExpiresIn is not the remaining lifetime",
    )
    check(cache_status(second).startswith("tokencache; hit"), cache_status(second))

    wrong = raises(lambda: sign_in("svc", "Wrong-pass-1!"), proxy.exceptions.NotAuthorizedException)
    check(sign_in("svc")["AuthenticationResult"]["AccessToken"] == token, "the right password no longer works")

    refresh_token = first["AuthenticationResult"]["RefreshToken"]

    def refresh():
        return proxy.initiate_auth(
            ClientId=client_id,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": refresh_token, "SECRET_HASH": secret_hash(secret, "svc", client_id)},
        )

    refreshed = [refresh()["AuthenticationResult"]["AccessToken"] for _ in range(2)]
    check(refreshed[0] == refreshed[1], "the second refresh did not come from the cache")
    check(refreshed[0] != token, "a refresh answered with the sign-in's token")

    challenges = [sign_in("newbie", "Temp-pass-1!") for _ in range(2)]
    for challenge in challenges:
        check(challenge.get("ChallengeName") == "NEW_PASSWORD_REQUIRED", f"no challenge: {challenge}")
        check("AuthenticationResult" not in challenge, "a challenge with tokens")
    check(challenges[0]["Session"] != challenges[1]["Session"], "a challenge came from the cache")

    # Signed with SigV4 (the admin API): refused, never forwarded.
    admin_error = raises(
        lambda: proxy.admin_initiate_auth(
            UserPoolId=pool,
            ClientId=client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": "svc", "PASSWORD": "Right-pass-1!", "SECRET_HASH": secret_hash(secret, "svc", client_id)},
        ),
        proxy.exceptions.InvalidParameterException,
    )
    check("Admin*" in admin_error["Message"], admin_error["Message"])

    # The AWS CLI, pointed at the proxy by the one variable.
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=args.proxy,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_MAX_ATTEMPTS="1",
    )

    def cli(user, password):
        parameters = f"USERNAME={user},PASSWORD={password},SECRET_HASH={secret_hash(secret, user, client_id)}"
        return subprocess.run(
            [args.aws, "cognito-idp", "initiate-auth", "--client-id", client_id, "--auth-flow", "USER_PASSWORD_AUTH",
             "--auth-parameters", parameters, "--output", "json"],
            env=env, capture_output=True, text=True, timeout=60,
        )

    cli_tokens = []
    for _ in range(2):
        run = cli("svc", "Right-pass-1!")
        check(run.returncode == 0, f"aws cli failed: {run.stderr}")
        cli_tokens.append(json.loads(run.stdout)["AuthenticationResult"]["AccessToken"])
    # The CLI's request is the SDK's, canonically: the same key, the same token.
    check(cli_tokens == [token, token], "the AWS CLI did not get the cached token")
    refused = cli("svc", "Wrong-pass-1!")
    check(refused.returncode != 0 and "NotAuthorizedException" in refused.stderr, f"aws cli: {refused.stderr}")

    # 200 concurrent sign-ins of a cold user: one upstream sign-in, so one token.
    with ThreadPoolExecutor(max_workers=50) as pool_of_threads:
        answers = list(pool_of_threads.map(lambda _: sign_in("svc-cold"), range(200)))
    cold_tokens = {answer["AuthenticationResult"]["AccessToken"] for answer in answers}
    check(len(cold_tokens) == 1, f"{len(cold_tokens)} different tokens for one cold user")

    print(json.dumps({
        "wrong_password": wrong["Code"],
        "admin": admin_error["Code"],
        "cli_cached": True,
        "concurrent_tokens": len(cold_tokens),
    }))


# The mock IdP's clients for this peer (Cognito wants secrets of 24
# characters or more): crates/cli/tests/cognito_sdks.rs registers them.
MOCK_SECRET = "Svc+secret+0123456789abcdef"
MOCK_OTHER_SECRET = "Other+secret+0123456789abcdef"


def mock(args):
    # botocore's model signs GetClientToken with SigV4, which a proxy cannot
    # forward (the signature covers the host); the operation authenticates
    # with ClientId and Secret, so the app sends it unsigned.
    proxy = client(args.proxy, NO_RETRIES.merge(Config(signature_version=UNSIGNED)))
    signed = raises(lambda: client(args.proxy).get_client_token(
        ClientId="svc-client", Secret=MOCK_SECRET, Scopes=["api/read"]),
        proxy.exceptions.InvalidParameterException)
    check("unsigned" in signed["Message"], signed["Message"])

    def client_token(scopes, client_id="svc-client", secret=MOCK_SECRET):
        return proxy.get_client_token(ClientId=client_id, Secret=secret, Scopes=scopes)

    both = client_token(["api/read", "api/write"])
    reordered = client_token(["api/write", "api/read"])
    read = client_token(["api/read"])
    token = both["ClientAuthenticationResult"]["AccessToken"]
    check(reordered["ClientAuthenticationResult"]["AccessToken"] == token, "scope order changed the key")
    check(read["ClientAuthenticationResult"]["AccessToken"] != token, "another scope set shared a token")
    check(cache_status(reordered).startswith("tokencache; hit"), cache_status(reordered))

    wrong = raises(lambda: client_token(["api/read"], secret="Wrong+secret+0123456789abcdef"),
                   proxy.exceptions.NotAuthorizedException)
    # The test has the mock IdP throttle everything from here on.
    print(json.dumps({"ready_for_throttle": True}), flush=True)
    sys.stdin.readline()
    throttled = raises(lambda: client_token(["api/read"], client_id="other-client", secret=MOCK_OTHER_SECRET),
                       proxy.exceptions.TooManyRequestsException)
    print(json.dumps({"wrong_secret": wrong["Code"], "throttled": throttled["Code"]}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["moto", "mock"])
    parser.add_argument("--moto")
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--aws")
    args = parser.parse_args()
    moto(args) if args.mode == "moto" else mock(args)


if __name__ == "__main__":
    main()
