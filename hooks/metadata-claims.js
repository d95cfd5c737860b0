// Copy selected application metadata into namespaced claims, so APIs can route or
// authorize by region and plan without a lookup.
module.exports = function (client, scope, audience, context, cb) {
  var ns = 'https://example.com/';
  var out = { scope: scope };
  var meta = client.metadata || {};
  ['region', 'plan', 'team'].forEach(function (k) {
    if (meta[k]) out[ns + k] = meta[k];
  });
  out[ns + 'client_name'] = client.name;
  if (client.tenant) out[ns + 'tenant'] = client.tenant;
  cb(null, out);
};
