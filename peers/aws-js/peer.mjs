// The AWS SDK for JavaScript v3 through tokencache, pointed at the proxy by
// AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER alone (the test sets it). Run
// by crates/cli/tests/cognito_sdks.rs against the mock IdP; prints one JSON
// line of facts, and exits 1 with the reason on the first surprise.
//
//   node peers/aws-js/peer.mjs USER PASSWORD CLIENT_ID CLIENT_SECRET
import { createHmac } from "node:crypto";
import {
  CognitoIdentityProviderClient,
  InitiateAuthCommand,
  NotAuthorizedException,
} from "@aws-sdk/client-cognito-identity-provider";

const [user, password, clientId, clientSecret] = process.argv.slice(2);
const secretHash = (name) =>
  createHmac("sha256", clientSecret).update(name + clientId).digest("base64");

// No endpoint here: the SDK reads it from the environment.
const client = new CognitoIdentityProviderClient({
  region: "eu-west-1",
  credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
  maxAttempts: 1,
});

const signIn = (pass) =>
  client.send(
    new InitiateAuthCommand({
      ClientId: clientId,
      AuthFlow: "USER_PASSWORD_AUTH",
      AuthParameters: { USERNAME: user, PASSWORD: pass, SECRET_HASH: secretHash(user) },
    }),
  );

function check(condition, message) {
  if (!condition) {
    console.error(`aws-js peer: ${message}`);
    process.exit(1);
  }
}

const first = await signIn(password);
await new Promise((resolve) => setTimeout(resolve, 1200));
const second = await signIn(password);
const token = first.AuthenticationResult.AccessToken;
check(second.AuthenticationResult.AccessToken === token, "the second sign-in did not come from the cache");
check(
  second.AuthenticationResult.ExpiresIn < first.AuthenticationResult.ExpiresIn,
  "the cached answer's ExpiresIn is not the remaining lifetime",
);
let wrong = null;
try {
  await signIn(password + "-wrong");
} catch (error) {
  wrong = error;
}
check(wrong instanceof NotAuthorizedException, `expected NotAuthorizedException, got ${wrong}`);
console.log(JSON.stringify({ cached: true, wrong_password: wrong.name, expires_in: second.AuthenticationResult.ExpiresIn }));
