// DKIM_PRIVATE_KEY as operators carry it — PEM with real newlines or "\n" escapes (env files, CI secrets),
// or the one-line base64 of its DER — read into the PKCS#8 bytes WebCrypto imports, and checked at start
// (RSA of at least 2048 bits, RFC 8301; or Ed25519, RFC 8463), so a bad key fails like any bad setting
// instead of at the first mail. Errors describe the key, never quote it.

export type DkimAlgorithm = "rsa-sha256" | "ed25519-sha256";

export interface DkimKey {
  algorithm: DkimAlgorithm;
  /** The PKCS#8 PrivateKeyInfo, DER. */
  pkcs8: Uint8Array;
}

/** RFC 8301 §3.2: signers MUST use RSA keys of at least 1024 bits and SHOULD use 2048; Mailroom requires 2048. */
export const MIN_RSA_BITS = 2048;
/** RFC 8301 §3.2: verifiers must handle keys up to 4096 bits, not beyond (and a larger one hardly fits a TXT record). */
export const MAX_RSA_BITS = 4096;

const RSA_ENCRYPTION = "2a864886f70d010101"; // 1.2.840.113549.1.1.1
const ED25519 = "2b6570"; // 1.3.101.112

interface Der {
  tag: number;
  /** The content octets. */
  value: Uint8Array;
  /** Where the element after this one starts. */
  end: number;
}

/** One DER element at `at` (definite lengths only, as DER requires). */
function readDer(bytes: Uint8Array, at: number): Der {
  const tag = bytes[at];
  let length = bytes[at + 1];
  if (tag === undefined || length === undefined) throw new Error("it ends in the middle of a DER element");
  let start = at + 2;
  if (length & 0x80) {
    const octets = length & 0x7f;
    if (octets === 0 || octets > 4) throw new Error("it has a DER length Mailroom cannot read");
    length = 0;
    for (let i = 0; i < octets; i++) length = length * 256 + (bytes[start + i] ?? Number.NaN);
    start += octets;
  }
  if (!Number.isFinite(length) || start + length > bytes.length) throw new Error("it ends in the middle of a DER element");
  return { tag, value: bytes.subarray(start, start + length), end: start + length };
}

function expectTag(element: Der, tag: number, what: string): Der {
  if (element.tag !== tag) throw new Error(`it is not a PKCS#8 private key (${what} is missing)`);
  return element;
}

const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

const PEM_BEGIN = "-----BEGIN PRIVATE KEY-----";
const PEM_END = "-----END PRIVATE KEY-----";

/** The DER bytes the setting carries: inside a PEM "PRIVATE KEY" block, or the whole value as base64. */
function derOf(setting: string): Uint8Array {
  const text = setting.trim().replace(/\\r/g, "").replace(/\\n/g, "\n");
  const label = /-----BEGIN ([A-Z0-9 ]+)-----/.exec(text)?.[1];
  if (label === "RSA PRIVATE KEY") throw new Error("it is a PKCS#1 RSA key; convert it with: openssl pkcs8 -topk8 -nocrypt -in key.pem");
  if (label === "ENCRYPTED PRIVATE KEY") throw new Error("it is encrypted; Mailroom needs the key without a passphrase (the secret store protects it)");
  if (label !== undefined && label !== "PRIVATE KEY") throw new Error(`it is a PEM "${label}", not a "PRIVATE KEY" (PKCS#8)`);
  let body = text;
  if (label) {
    const begin = text.indexOf(PEM_BEGIN) + PEM_BEGIN.length;
    const end = text.indexOf(PEM_END, begin);
    if (end < 0) throw new Error("its PEM block has no END PRIVATE KEY line");
    body = text.slice(begin, end);
  }
  body = body.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body) || body.length % 4 !== 0) throw new Error("it is neither PEM nor base64");
  return Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
}

/** The bit length of a DER INTEGER's (positive) value. */
function bitLength(integer: Uint8Array): number {
  let i = 0;
  while (i < integer.length - 1 && integer[i] === 0) i++;
  return (integer.length - i - 1) * 8 + (32 - Math.clz32(integer[i]!));
}

/** Reads and checks DKIM_PRIVATE_KEY; throws an Error whose message says what is wrong with it. */
export function parseDkimKey(setting: string): DkimKey {
  const der = derOf(setting);
  const info = expectTag(readDer(der, 0), 0x30, "the outer SEQUENCE");
  if (info.end !== der.length) throw new Error("it has bytes after the key");
  const version = expectTag(readDer(info.value, 0), 0x02, "the version");
  const algorithmId = expectTag(readDer(info.value, version.end), 0x30, "the algorithm");
  const oid = hex(expectTag(readDer(algorithmId.value, 0), 0x06, "the algorithm's OID").value);
  const privateKey = expectTag(readDer(info.value, algorithmId.end), 0x04, "the key's OCTET STRING");
  const pkcs8 = der.slice();
  if (oid === ED25519) return { algorithm: "ed25519-sha256", pkcs8 };
  if (oid !== RSA_ENCRYPTION) throw new Error("it is neither an RSA nor an Ed25519 key");
  // RSAPrivateKey (RFC 8017 A.1.2): SEQUENCE { version, modulus, … }
  const rsa = expectTag(readDer(privateKey.value, 0), 0x30, "the RSA key's SEQUENCE");
  const rsaVersion = expectTag(readDer(rsa.value, 0), 0x02, "the RSA key's version");
  const modulus = expectTag(readDer(rsa.value, rsaVersion.end), 0x02, "the RSA modulus");
  const bits = bitLength(modulus.value);
  if (bits < MIN_RSA_BITS) throw new Error(`its RSA modulus is ${bits} bits; Mailroom requires at least ${MIN_RSA_BITS} (npm run dkim makes one)`);
  if (bits > MAX_RSA_BITS) throw new Error(`its RSA modulus is ${bits} bits; verifiers need not handle more than ${MAX_RSA_BITS} (RFC 8301), so Mailroom refuses it (npm run dkim makes one of 2048)`);
  return { algorithm: "rsa-sha256", pkcs8 };
}

/** The key for crypto.subtle.sign; rejects a key whose bytes WebCrypto refuses. */
export function importDkimKey({ algorithm, pkcs8 }: DkimKey): Promise<CryptoKey> {
  const params = algorithm === "rsa-sha256" ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } : { name: "Ed25519" };
  return crypto.subtle.importKey("pkcs8", pkcs8, params, false, ["sign"]);
}
