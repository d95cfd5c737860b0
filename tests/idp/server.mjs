#!/usr/bin/env node
// Local OAuth 2.0 identity provider for tokenhook integration tests.
//
// Usage: node tests/idp/server.mjs [--port N] [--no-stdin-watch]
//   --port 0 (the default) picks an ephemeral port.
//
// Contract with the test harness:
//   * binds 127.0.0.1 only;
//   * once listening, prints exactly one line to stdout: "LISTENING <port>\n"
//     (nothing else is ever written to stdout; diagnostics go to stderr);
//   * issuer is http://127.0.0.1:<port>;
//   * exits on SIGTERM/SIGINT, and when its stdin reaches EOF/closes (so it never
//     outlives the process that spawned it; spawn it with a piped stdin and keep
//     the write end open). --no-stdin-watch disables the stdin check for manual runs.

import { createHash, generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import process from 'node:process';

import Provider, { errors } from 'oidc-provider';
// The stock client_credentials grant handler; wrapped below to default the scope.
import {
  handler as clientCredentialsHandler,
  parameters as clientCredentialsParameters,
} from 'oidc-provider/lib/actions/grants/client_credentials.js';

const API_AUDIENCE = 'https://api.example.com';
const API_SCOPE = 'read:data write:data';

function parseArgs(argv) {
  const opts = { port: 0, watchStdin: true };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--port') {
      opts.port = argv[i + 1];
      i += 1;
    } else if (arg.startsWith('--port=')) {
      opts.port = arg.slice('--port='.length);
    } else if (arg === '--no-stdin-watch') {
      opts.watchStdin = false;
    } else {
      throw new Error(`unknown argument: ${arg}`);
    }
  }
  const port = Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`invalid --port: ${opts.port}`);
  }
  opts.port = port;
  return opts;
}

// RS256 signing key generated at start-up, exported as a private JWK with a
// RFC 7638 thumbprint as kid.
function generateSigningJwk() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const thumbprint = createHash('sha256')
    .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
    .digest('base64url');
  return { ...jwk, kid: thumbprint, alg: 'RS256', use: 'sig' };
}

function providerConfiguration() {
  return {
    clients: [
      {
        client_id: 'svc-basic',
        client_secret: 'svc-basic-secret-123',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'read:data write:data',
      },
      {
        client_id: 'svc-post',
        client_secret: 'svc-post-secret-456',
        token_endpoint_auth_method: 'client_secret_post',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'read:data',
      },
      // The third client of the Auth0 export fixture (tests/import.rs), which its
      // Actions deny.
      {
        client_id: 'svc-legacy',
        client_secret: 'svc-legacy-secret-789',
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: 'read:data',
      },
    ],
    // API scopes are declared as provider scopes so that the client `scope`
    // metadata is accepted and a client asking for a scope outside its own
    // `scope` gets invalid_scope.
    scopes: ['openid', 'offline_access', 'read:data', 'write:data'],
    jwks: { keys: [generateSigningJwk()] },
    routes: {
      jwks: '/.well-known/jwks.json',
      token: '/oauth/token',
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => API_AUDIENCE,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resourceIndicator) => {
          if (resourceIndicator === API_AUDIENCE) {
            return {
              scope: API_SCOPE,
              audience: API_AUDIENCE,
              accessTokenFormat: 'jwt',
              accessTokenTTL: 3600,
              jwt: { sign: { alg: 'RS256' } },
            };
          }
          throw new errors.InvalidTarget();
        },
      },
    },
    // Same as the defaults (resource server accessTokenTTL wins), but explicit:
    // the default functions print a NOTICE on every call.
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL || 3600,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL || 3600,
    },
    cookies: { keys: ['tokenhook-test-idp-cookie-key'] },
  };
}

function installClientCredentialsDefaultScope(provider) {
  // Auth0-like behaviour: a client_credentials request without `scope` gets all
  // of the client's allowed scopes (then intersected with the resource server's
  // scopes by the stock handler).
  provider.registerGrantType(
    'client_credentials',
    async function clientCredentialsWithDefaultScope(ctx, next) {
      if (!ctx.oidc.params.scope && ctx.oidc.client.scope) {
        ctx.oidc.params.scope = ctx.oidc.client.scope;
      }
      return clientCredentialsHandler(ctx, next);
    },
    clientCredentialsParameters, // already includes 'resource'
    ['resource'],
  );
}

function main() {
  // stdout carries only the LISTENING line: send any library console output
  // (oidc-provider prints NOTICEs with console.info) to stderr instead.
  for (const name of ['log', 'info', 'debug']) {
    // eslint-disable-next-line no-console
    console[name] = (...args) => console.error(...args);
  }

  const opts = parseArgs(process.argv.slice(2));

  let callback = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = createServer((req, res) => callback(req, res));

  const shutdown = (code) => {
    server.close();
    server.closeAllConnections?.();
    process.exit(code);
  };
  process.on('SIGTERM', () => shutdown(0));
  process.on('SIGINT', () => shutdown(0));
  if (opts.watchStdin) {
    process.stdin.on('end', () => shutdown(0));
    process.stdin.on('close', () => shutdown(0));
    process.stdin.on('error', () => shutdown(0));
    process.stdin.resume(); // drain anything written to us
  }

  server.on('error', (err) => {
    process.stderr.write(`idp: server error: ${err.stack || err}\n`);
    process.exit(1);
  });

  server.listen(opts.port, '127.0.0.1', () => {
    const { port } = server.address();
    const provider = new Provider(`http://127.0.0.1:${port}`, providerConfiguration());
    installClientCredentialsDefaultScope(provider);
    provider.on('server_error', (_ctx, err) => {
      process.stderr.write(`idp: server_error: ${err.stack || err}\n`);
    });
    callback = provider.callback();
    process.stdout.write(`LISTENING ${port}\n`);
  });
}

try {
  main();
} catch (err) {
  process.stderr.write(`idp: ${err.stack || err}\n`);
  process.exit(2);
}
