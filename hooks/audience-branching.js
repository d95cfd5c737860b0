// Different APIs get different treatment: the billing API receives only read scopes
// and a billing account claim; the admin API is closed to machine clients.
module.exports = function (client, scope, audience, context, cb) {
  scope = scope || [];
  if (audience === 'https://admin.example.com') {
    return cb(new InvalidRequestError('machine clients may not call the admin API'));
  }
  if (audience === 'https://billing.example.com') {
    return cb(null, {
      scope: scope.filter(function (s) { return s.indexOf('read:') === 0; }),
      'https://example.com/billing_account': (client.metadata && client.metadata.billing_account) || 'none'
    });
  }
  cb(null, { scope: scope });
};
