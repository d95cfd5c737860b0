// A real OAuth client library, openid-client, used as most applications use it: it
// discovers the issuer's metadata, asks the discovered token endpoint for a
// client_credentials token, and verifies the token against the discovered jwks_uri
// (jose). Run by tests/pipeline.rs against the sidecar; prints one JSON line.
//
//   node discovering-client.mjs ISSUER_URL CLIENT_ID CLIENT_SECRET
import { Issuer } from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [, , issuerUrl, clientId, clientSecret] = process.argv;
const issuer = await Issuer.discover(issuerUrl);
const client = new issuer.Client({
  client_id: clientId,
  client_secret: clientSecret,
  token_endpoint_auth_method: 'client_secret_basic',
});
const tokens = await client.grant({ grant_type: 'client_credentials' });
const jwks = createRemoteJWKSet(new URL(issuer.metadata.jwks_uri));
const { payload } = await jwtVerify(tokens.access_token, jwks, {
  issuer: issuer.metadata.issuer,
});
console.log(JSON.stringify({
  token_endpoint: issuer.metadata.token_endpoint,
  jwks_uri: issuer.metadata.jwks_uri,
  scope: tokens.scope,
  payload,
}));
