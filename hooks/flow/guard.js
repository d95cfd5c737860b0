// Second bound Action: sees what the Hook and the first Action did. It refuses a token
// left without scopes, overrides the tier for the EU region (a later claim of the same
// name wins) and records the scopes the token will carry.
exports.onExecuteCredentialsExchange = async (event, api) => {
  const target = event.transaction.target_scopes;
  if (target.length === 0) {
    api.access.deny('invalid_scope', 'no scopes left for this client');
    return;
  }
  if (event.accessToken.customClaims['https://example.com/region'] === 'eu') {
    api.accessToken.setCustomClaim('https://example.com/tier', event.accessToken.customClaims['https://example.com/tier'] + '-eu');
  }
  api.accessToken.setCustomClaim('https://example.com/scopes', target.join(' '));
};
