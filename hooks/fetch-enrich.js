// Claims fetched from an internal service, as many Auth0 tenants do: a signed GET to
// the enricher (its base URL and HMAC key are this hook's secrets), whose JSON answer
// becomes claims. The sidecar performs the request, and only to origins this hook's
// `[hook.fetch-enrich.fetch] allow` list names (README, "Egress").
//
// The signature: HMAC-SHA256 over "METHOD\nPATH\nTIMESTAMP" with ENRICHER_KEY, hex, in
// `X-Signature`, the timestamp (ms) in `X-Timestamp`.
const crypto = require('crypto');

exports.onExecuteCredentialsExchange = async (event, api) => {
  const base = event.secrets.ENRICHER_URL;
  const key = event.secrets.ENRICHER_KEY;
  if (!base || !key) {
    return api.access.deny('server_error', 'ENRICHER_URL and ENRICHER_KEY secrets are required');
  }
  const path = '/clients/' + encodeURIComponent(event.client.client_id);
  const ts = String(Date.now());
  const sig = crypto.createHmac('sha256', key).update(`GET\n${path}\n${ts}`).digest('hex');
  let res;
  try {
    res = await fetch(base + path, {
      headers: { 'X-Timestamp': ts, 'X-Signature': sig, Accept: 'application/json' },
      signal: AbortSignal.timeout(1500),
    });
  } catch (e) {
    console.error('enricher unreachable:', e.message);
    return api.access.deny('server_error', 'client data service unavailable');
  }
  if (res.status === 404) {
    return api.access.deny('invalid_request', 'unknown client');
  }
  if (!res.ok) {
    return api.access.deny('server_error', 'client data service answered ' + res.status);
  }
  const info = await res.json();
  api.accessToken.setCustomClaim('https://example.com/org', info.org);
  api.accessToken.setCustomClaim('https://example.com/roles', info.roles || []);
};
