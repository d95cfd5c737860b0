// The legacy Hook: the client's plan becomes a tier claim; the scopes stay as granted.
module.exports = function (client, scope, audience, context, cb) {
  const plan = (client.metadata && client.metadata.plan) || 'free';
  cb(null, {
    'https://example.com/tier': plan === 'enterprise' ? 'gold' : 'standard',
    scope: scope,
  });
};
