// Block clients flagged in their metadata, and refuse scopes a client asked for that
// its plan does not include.
module.exports = function (client, scope, audience, context, cb) {
  var meta = client.metadata || {};
  if (meta.blocked === 'true') {
    return cb(new InvalidRequestError('client ' + client.id + ' is blocked'));
  }
  var requested = (context.body && context.body.scope) ? String(context.body.scope).split(' ') : [];
  if (meta.plan !== 'enterprise' && requested.indexOf('write:data') >= 0) {
    return cb(new InvalidScopeError('write:data needs the enterprise plan'));
  }
  cb(null, { scope: scope });
};
