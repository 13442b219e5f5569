// Secrets are not in wrangler.toml, so `wrangler types` cannot see them; declare them here, on both the
// global Env and Cloudflare.Env (what `env` from cloudflare:workers is), which the generated file keeps apart.
interface MailroomSecrets {
  /** Password for SMTP AUTH (`wrangler secret put SMTP_PASS`). */
  SMTP_PASS?: string;
  /** Comma-separated `name:sha256hex` entries (`wrangler secret put API_KEYS`). */
  API_KEYS?: string;
  /** Authenticates the return paths under BOUNCE_ADDRESS, at least 32 characters (`wrangler secret put BOUNCE_SECRET`). */
  BOUNCE_SECRET?: string;
  /** The DKIM private key (PKCS#8 PEM or its base64 DER) for DKIM_DOMAIN (`npm run dkim`, `wrangler secret put DKIM_PRIVATE_KEY`). */
  DKIM_PRIVATE_KEY?: string;
}
interface Env extends MailroomSecrets {}
declare namespace Cloudflare {
  interface Env extends MailroomSecrets {}
}
