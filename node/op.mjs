// A real OpenID Provider on 127.0.0.1 for the tests and the demo of galaxy-cloud-storage.
//
// It is panva/oidc-provider (a certified OpenID Connect implementation) with one client, Galaxy,
// and its development login form: any login name is accepted (the password is ignored) and
// becomes the subject (`sub`), with the email `<login>@example.org` (or the login itself when it
// is an email). Galaxy logs users in with it through its generic `oidc` backend, exactly as it
// would with Keycloak or Okta: authorization code flow, then refresh tokens.
//
// Everything (grants, sessions, the signing key) lives in memory: a restart forgets every login.
//
// Usage: node op.mjs [--port N] [--issuer URL] [--client-id ID] [--client-secret S]
//                    [--redirect-uri URI ...] [--token-ttl S] [--refresh-ttl S] [--rotate 0|1]
// Each option may come from the environment instead (the option wins):
//   --port           OP_PORT            port on 127.0.0.1 (default 9400)
//   --issuer         OP_ISSUER          issuer URL (default http://127.0.0.1:<port>)
//   --client-id      OP_CLIENT_ID       Galaxy's client id (default galaxy)
//   --client-secret  OP_CLIENT_SECRET   Galaxy's client secret (default galaxy-secret)
//   --redirect-uri   OP_REDIRECT_URIS   Galaxy's callback, <galaxy>/authnz/oidc/callback; repeat the
//                                      option, or separate with spaces in the variable
//   --token-ttl      OP_TOKEN_TTL       lifetime (s) of ID and access tokens (default 3600)
//   --refresh-ttl    OP_REFRESH_TTL     lifetime (s) of refresh tokens and grants (default 86400)
//   --rotate         OP_ROTATE          1: a refresh consumes the refresh token and answers with a
//                                      new one (reusing a consumed one revokes the grant, as real
//                                      providers do); 0 (default): refresh tokens stay valid
//   --resource-server OP_RESOURCE_SERVER  ID:SECRET of a resource server (a service that receives
//                                      Galaxy's access tokens, as Keystone does through
//                                      mod_auth_openidc), which may introspect them (RFC 7662,
//                                      POST /token/introspection); none by default
//
// It prints "OP READY <issuer>" once it listens, and one line per token grant and error.
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';
import { exportJWK, generateKeyPair } from 'jose';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    issuer: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    'token-ttl': { type: 'string' },
    'refresh-ttl': { type: 'string' },
    rotate: { type: 'string' },
    'resource-server': { type: 'string' },
  },
});
const env = process.env;

function seconds(name, value) {
  const number = Number(value);
  if (!Number.isInteger(number) || number <= 0) {
    console.error(`${name} must be a positive whole number of seconds, not ${JSON.stringify(value)}`);
    process.exit(2);
  }
  return number;
}

const port = seconds('port', args.port ?? env.OP_PORT ?? '9400');
const issuer = args.issuer ?? env.OP_ISSUER ?? `http://127.0.0.1:${port}`;
const clientId = args['client-id'] ?? env.OP_CLIENT_ID ?? 'galaxy';
const clientSecret = args['client-secret'] ?? env.OP_CLIENT_SECRET ?? 'galaxy-secret';
const redirectUris = args['redirect-uri']
  ?? (env.OP_REDIRECT_URIS ?? 'http://127.0.0.1:8080/authnz/oidc/callback').split(/\s+/).filter(Boolean);
const tokenTtl = seconds('token-ttl', args['token-ttl'] ?? env.OP_TOKEN_TTL ?? '3600');
const refreshTtl = seconds('refresh-ttl', args['refresh-ttl'] ?? env.OP_REFRESH_TTL ?? '86400');
const rotate = (args.rotate ?? env.OP_ROTATE ?? '0') === '1';
const resourceServer = args['resource-server'] ?? env.OP_RESOURCE_SERVER;
const [resourceServerId, resourceServerSecret] = resourceServer ? resourceServer.split(/:(.*)/s) : [];
if (resourceServer && !resourceServerSecret) {
  console.error('--resource-server must be ID:SECRET');
  process.exit(2);
}

// The claims of a login name: Galaxy makes its user from email and preferred_username.
function claimsFor(sub) {
  const email = sub.includes('@') ? sub : `${sub}@example.org`;
  const name = email.split('@')[0];
  return { sub, email, email_verified: true, preferred_username: name, name };
}

const configuration = {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    // social-core sends the secret with HTTP Basic for the code exchange and in the POST body for a
    // refresh; the provider accepts both methods for this client.
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  async findAccount(ctx, sub) {
    return { accountId: sub, async claims() { return claimsFor(sub); } };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  // Put the requested scopes' claims into the ID token too, as Keycloak does.
  conformIdTokenClaims: false,
  // Always give Galaxy a refresh token (without this, only with offline_access and prompt=consent).
  async issueRefreshToken(ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  rotateRefreshToken: rotate,
  // Galaxy's generic backend uses PKCE only where the admin turns it on.
  pkce: { required: () => false },
  ttl: {
    AccessToken: tokenTtl,
    IdToken: tokenTtl,
    RefreshToken: refreshTtl,
    Grant: refreshTtl,
    Session: refreshTtl,
    AuthorizationCode: 600,
    Interaction: 3600,
  },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: true }, // the login and consent forms
    rpInitiatedLogout: { enabled: true },
    revocation: { enabled: true }, // POST /token/revocation: how a test ends a grant
    // POST /token/introspection, for the resource server only (it has no grant of its own).
    introspection: {
      enabled: Boolean(resourceServer),
      allowedPolicy: async (ctx, client) => client.clientId === resourceServerId,
    },
  },
};
if (resourceServer) {
  configuration.clients.push({
    client_id: resourceServerId,
    client_secret: resourceServerSecret,
    redirect_uris: [],
    grant_types: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
  });
}

// A fresh RS256 signing key on every start; the kid lets verifiers (STS, social-core) pick it.
const { privateKey } = await generateKeyPair('RS256', { modulusLength: 2048, extractable: true });
configuration.jwks = {
  keys: [{ ...(await exportJWK(privateKey)), kid: `op-${Date.now()}`, alg: 'RS256', use: 'sig' }],
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('grant.success', (ctx) => console.log('grant.success', ctx.oidc.params.grant_type));
provider.on('grant.error', (ctx, err) => console.log('grant.error', err.message, err.error_description ?? ''));
provider.on('grant.revoked', (ctx, grantId) => console.log('grant.revoked', grantId));

const server = provider.listen(port, '127.0.0.1', () => console.log(`OP READY ${issuer}`));
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  });
}
