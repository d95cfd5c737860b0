// The seed hook as an Action. Actions cannot add scopes the client was not granted
// (the target scopes are intersected with the grant), so only the claim carries over.
exports.onExecuteCredentialsExchange = async (event, api) => {
  api.accessToken.setCustomClaim('https://foo.com/claim', 'bar');
};
