// Sign what the token is for with a hook secret (`tokenhook hooks secrets set
// hmac-signature SIGNING_KEY`, base64), so a service holding the same key can check the
// claim offline: HMAC-SHA256 over "client_id|audience", base64url. Uses Node's
// `crypto` and `Buffer`, which hooks get as in Node (README, "Built-ins").
const crypto = require('crypto');

exports.onExecuteCredentialsExchange = async (event, api) => {
  const key = event.secrets.SIGNING_KEY;
  if (!key) {
    return api.access.deny('server_error', 'SIGNING_KEY secret is not configured');
  }
  const signed = Buffer.from(`${event.client.client_id}|${event.resource_server.identifier}`);
  const sig = crypto
    .createHmac('sha256', Buffer.from(key, 'base64'))
    .update(signed)
    .digest('base64url');
  api.accessToken.setCustomClaim('https://example.com/sig', sig);
  api.accessToken.setCustomClaim('https://example.com/signed', signed.toString('base64url'));
};
