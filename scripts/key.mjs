// `npm run key [name] [domains]`: a new random API key, and the API_KEYS entry that lets it in (its
// SHA-256; only the digest is configured, so the key itself is shown once, here, and stored nowhere).
// `domains` (e.g. example.com|example.org) limits the key to sending from those domains.
import { createHash, randomBytes } from "node:crypto";

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const DOMAIN = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

const [name = "app", domains] = process.argv.slice(2);
if (!NAME.test(name)) {
  console.error(`the name must be 1–64 letters, digits, ".", "_" or "-"; got ${JSON.stringify(name)}`);
  process.exit(2);
}
const senderDomains = domains?.split("|").map((d) => d.trim().toLowerCase());
if (senderDomains && !senderDomains.every((d) => DOMAIN.test(d))) {
  console.error(`the sender domains must be domain names separated by | (IDNs as punycode); got ${JSON.stringify(domains)}`);
  process.exit(2);
}
const key = `mr_${randomBytes(32).toString("base64url")}`;
const entry = `${name}:${createHash("sha256").update(key).digest("hex")}${senderDomains ? `:${senderDomains.join("|")}` : ""}`;
console.log(`API key (give it to the client; it is not stored anywhere):\n  ${key}\n`);
console.log(`API_KEYS entry (add it, comma-separated, to the API_KEYS secret):\n  ${entry}`);
