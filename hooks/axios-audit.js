// An audit webhook with axios, the npm module public Actions import most (a built-in
// here, on top of the sidecar's egress-checked fetch): every issued token is reported,
// and the audit id comes back as a claim. The audit service being down does not stop
// tokens; a 4xx from it (a client it does not know) does.
const axios = require('axios');

exports.onExecuteCredentialsExchange = async (event, api) => {
  const audit = axios.create({
    baseURL: event.secrets.AUDIT_URL,
    timeout: 1000,
    headers: { Authorization: 'Bearer ' + event.secrets.AUDIT_TOKEN },
  });
  try {
    const { data } = await audit.post('/events', {
      type: 'token_issued',
      client_id: event.client.client_id,
      audience: event.resource_server.identifier,
      scopes: event.transaction.requested_scopes,
    }, { params: { source: 'tokenhook' } });
    api.accessToken.setCustomClaim('https://example.com/audit_id', data.id);
  } catch (err) {
    if (err.response && err.response.status < 500) {
      return api.access.deny('invalid_request', 'audit refused: ' + (err.response.data.error || err.response.status));
    }
    console.warn('audit not recorded:', err.code || err.message);
  }
};
