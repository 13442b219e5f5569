// `npm run dkim -- [rsa|ed25519] [selector] [domain]`: a new DKIM key pair. Prints the private key for the
// DKIM_PRIVATE_KEY secret (PKCS#8, as one line of base64; it is stored nowhere else) and the DNS TXT
// record that publishes the public key (RFC 6376 §3.6.1; Ed25519's p= is the raw key, RFC 8463 §4.2).
import { generateKeyPairSync } from "node:crypto";

const LABELS = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

const [algorithm = "rsa", selector = "mailroom", domain = process.env.DKIM_DOMAIN || "example.com"] = process.argv.slice(2);
if (algorithm !== "rsa" && algorithm !== "ed25519") {
  console.error(`the key type must be rsa or ed25519; got ${JSON.stringify(algorithm)}`);
  process.exit(2);
}
for (const [what, value] of [["selector", selector], ["domain", domain]]) {
  if (!LABELS.test(value)) {
    console.error(`the ${what} must be DNS labels separated by dots; got ${JSON.stringify(value)}`);
    process.exit(2);
  }
}
const { privateKey, publicKey } = algorithm === "rsa" ? generateKeyPairSync("rsa", { modulusLength: 2048 }) : generateKeyPairSync("ed25519");
const secret = privateKey.export({ type: "pkcs8", format: "der" }).toString("base64");
const spki = publicKey.export({ type: "spki", format: "der" });
// An Ed25519 SPKI is a fixed 12-byte prefix and the 32-byte key.
const p = (algorithm === "rsa" ? spki : spki.subarray(spki.length - 32)).toString("base64");
const record = `v=DKIM1; k=${algorithm}; p=${p}`;
// A TXT string holds 255 characters at most: a 2048-bit key's record is split into several (joined on lookup).
const strings = record.match(/.{1,255}/g).map((s) => `"${s}"`).join(" ");

console.log(`DKIM_PRIVATE_KEY (npx wrangler secret put DKIM_PRIVATE_KEY, then paste this line; it is not stored anywhere):\n  ${secret}\n`);
console.log(`Settings (wrangler.toml [vars]):\n  DKIM_DOMAIN = "${domain}"\n  DKIM_SELECTOR = "${selector}"\n`);
console.log(`DNS record to publish (TXT):\n  ${selector}._domainkey.${domain}. TXT ${strings}`);
