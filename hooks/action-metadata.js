// A heavier, realistic Action: ten claims from client metadata and the request, one
// scope dropped for untrusted networks, and a per-client cache of a derived value.
exports.onExecuteCredentialsExchange = async (event, api) => {
  const ns = 'https://example.com/';
  const m = event.client.metadata || {};
  api.accessToken
    .setCustomClaim(ns + 'client_name', event.client.name)
    .accessToken.setCustomClaim(ns + 'tenant', event.tenant.id)
    .accessToken.setCustomClaim(ns + 'region', m.region || 'unknown')
    .accessToken.setCustomClaim(ns + 'plan', m.plan || 'free')
    .accessToken.setCustomClaim(ns + 'team', m.team || 'none')
    .accessToken.setCustomClaim(ns + 'api', event.resource_server.identifier)
    .accessToken.setCustomClaim(ns + 'scopes_requested', event.transaction.requested_scopes.length)
    .accessToken.setCustomClaim(ns + 'ip', event.request.ip || null)
    .accessToken.setCustomClaim(ns + 'issued_by', 'tokenhook');
  let tier = api.cache.get('tier:' + event.client.client_id);
  if (!tier) {
    const value = (m.plan === 'enterprise' ? 'gold' : 'standard');
    api.cache.set('tier:' + event.client.client_id, value, { ttl: 60000 });
    tier = { value };
  }
  api.accessToken.setCustomClaim(ns + 'tier', tier.value);
  if (event.request.ip && !event.request.ip.startsWith('10.')) {
    api.transaction.removeTargetScope('write:data');
  }
};
