// First bound Action: reads the Hook's claim from event.accessToken.customClaims, adds
// the client's region, keeps standard-tier clients away from write scopes and takes
// every scope from a suspended client.
exports.onExecuteCredentialsExchange = async (event, api) => {
  const tier = event.accessToken.customClaims['https://example.com/tier'];
  api.accessToken.setCustomClaim('https://example.com/region', event.client.metadata.region || 'unknown');
  if (tier !== 'gold') {
    api.transaction.removeTargetScope('write:data');
  }
  if (event.client.metadata.suspended === 'true') {
    api.transaction.clearTargetScopes();
  }
};
