// A real OAuth 2.0 server, upstream of the proxy in crates/cli/tests/peers.rs:
// oidc-provider (a certified OpenID provider) with two client-credentials
// clients and JWT access tokens, on 127.0.0.1 only.
//
//   node server.js [--port PORT] [--ttl SECONDS]
//
// PORT defaults to 0 (any free port); the access-token lifetime (`--ttl`, or
// ACCESS_TOKEN_TTL) to 3600 s. Once listening it prints one JSON line on
// stdout: {"message":"oidc-provider serving","issuer":...,"token_url":...}.
//
// Clients (grant `client_credentials`, scopes `api:read api:write`):
//   peer-basic / peer-basic-secret   client_secret_basic
//   peer-post  / peer-post-secret    client_secret_post
// Every token is for the resource `urn:tokencache:peer-api` (the default
// resource when a request names none) and is a signed JWT with `exp`.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const RESOURCE = 'urn:tokencache:peer-api';
const SCOPES = 'api:read api:write';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    ttl: { type: 'string', default: process.env.ACCESS_TOKEN_TTL ?? '3600' },
  },
});
const ttl = Number(values.ttl);
if (!Number.isInteger(ttl) || ttl <= 0) {
  console.error(`--ttl must be a positive whole number of seconds, not ${values.ttl}`);
  process.exit(64);
}

// A fresh signing key per run: nothing to keep, and no development-key warning.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'peer-1', alg: 'RS256', use: 'sig' };

const client = (id, method) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  token_endpoint_auth_method: method,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: SCOPES,
});

function configuration() {
  return {
    clients: [client('peer-basic', 'client_secret_basic'), client('peer-post', 'client_secret_post')],
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: SCOPES.split(' '),
    routes: { token: '/oauth2/token' },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? RESOURCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource) => {
          if (resource !== RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: SCOPES,
            audience: RESOURCE,
            accessTokenTTL: ttl,
            accessTokenFormat: 'jwt',
          };
        },
      },
    },
  };
}

const server = createServer();
server.listen(Number(values.port), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration());
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  server.on('request', provider.callback());
  console.log(JSON.stringify({
    message: 'oidc-provider serving',
    issuer,
    token_url: `${issuer}/oauth2/token`,
    access_token_ttl: ttl,
  }));
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
