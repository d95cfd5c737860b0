// The example from Auth0's "Customize Tokens Using Hooks with Client Credentials Flow":
// add a namespaced claim and one extra scope to every client_credentials token.
module.exports = function (client, scope, audience, context, cb) {
  var access_token = {};
  access_token['https://foo.com/claim'] = 'bar';
  access_token.scope = scope;
  access_token.scope.push('extra');
  cb(null, access_token);
};
