// Use a hook secret (`tokenhook hooks secrets set secrets API_KEY`) without ever putting
// it in the token: the claim says which key generation signed off on the client.
module.exports = function (client, scope, audience, context, cb) {
  var key = context.webtask.secrets.API_KEY;
  if (!key) {
    return cb(new ServerError('API_KEY secret is not configured'));
  }
  console.log('checked client', client.id, 'with key generation', key.slice(0, 3));
  cb(null, { scope: scope, 'https://example.com/key_generation': key.slice(0, 3) });
};
