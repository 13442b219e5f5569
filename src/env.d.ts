// Secrets are not in wrangler.toml, so `wrangler types` cannot see them; declare them here, with the
// main module so that `exports.default` (ctx.exports, cloudflare:workers) is typed.
declare namespace Cloudflare {
  interface Env {
    /** Password for SMTP AUTH (`wrangler secret put SMTP_PASS`). */
    SMTP_PASS?: string;
    /** Comma-separated `name:sha256hex` entries (`wrangler secret put API_KEYS`). */
    API_KEYS?: string;
  }
  interface GlobalProps {
    mainModule: typeof import("./index");
  }
}

// Template files, bundled as strings by wrangler's Text rule (see scripts/build-templates.mjs).
declare module "*.mustache" {
  const text: string;
  export default text;
}
