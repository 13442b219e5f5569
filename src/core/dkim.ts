// DKIM signatures (RFC 6376) on Mailroom's own messages, with WebCrypto only: relaxed/relaxed
// canonicalization, rsa-sha256 (RFC 8301) or ed25519-sha256 (RFC 8463) as the key says. The signature is
// made on the message before it is dot-stuffed, so it is the same whichever transport carries the mail,
// and prepended as the first header field.
import type { DkimAlgorithm } from "./dkim-key";

export interface DkimSigner {
  /** d=: the signing domain, whose DNS publishes the public key. */
  domain: string;
  /** s=: the selector, `<selector>._domainkey.<domain>`. */
  selector: string;
  algorithm: DkimAlgorithm;
  key: CryptoKey;
}

/**
 * The header fields signed (h=), besides the client's own X-* fields: each is listed once more than it
 * occurs (oversigned, §8.15; an absent one once), so a field of these added on the way — a second From or
 * Subject, a Reply-To or List-Unsubscribe that was not there — breaks the signature.
 */
const SIGNED_FIELDS = [
  "from",
  "to",
  "cc",
  "reply-to",
  "subject",
  "date",
  "message-id",
  "mime-version",
  "content-type",
  "list-unsubscribe",
  "list-unsubscribe-post",
  "in-reply-to",
  "references",
];

const encoder = new TextEncoder();

interface HeaderField {
  /** Lower case. */
  name: string;
  /** The whole field as it stands, folding included, without its final CRLF. */
  raw: string;
}

/** The message's header fields, in order (continuation lines joined to their field). */
function headerFields(header: string): HeaderField[] {
  const fields: HeaderField[] = [];
  for (const line of header.split("\r\n")) {
    if ((line.startsWith(" ") || line.startsWith("\t")) && fields.length > 0) fields.at(-1)!.raw += `\r\n${line}`;
    else if (line.indexOf(":") > 0) fields.push({ name: stripWsp(line.slice(0, line.indexOf(":"))).toLowerCase(), raw: line });
    else throw new Error("a header line is neither a field nor a continuation of one");
  }
  return fields;
}

const isWsp = (char: string | undefined) => char === " " || char === "\t";

/** Without WSP at either end (§2.8: space and tab only, not everything String#trim takes for white space). */
function stripWsp(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isWsp(text[start])) start++;
  while (end > start && isWsp(text[end - 1])) end--;
  return text.slice(start, end);
}

/** §3.4.2: the "relaxed" header canonicalization, without the final CRLF. */
export function relaxedHeader(raw: string): string {
  const colon = raw.indexOf(":");
  const name = stripWsp(raw.slice(0, colon)).toLowerCase();
  const value = stripWsp(raw.slice(colon + 1).replace(/\r\n/g, "").replace(/[ \t]+/g, " "));
  return `${name}:${value}`;
}

/** §3.4.4: the "relaxed" body canonicalization. */
export function relaxedBody(body: string): string {
  const lines = body.split("\r\n").map((line) => line.replace(/[ \t]+/g, " ").replace(/ $/, ""));
  while (lines.length > 0 && lines.at(-1) === "") lines.pop();
  return lines.length === 0 ? "" : `${lines.join("\r\n")}\r\n`;
}

function base64(bytes: ArrayBuffer | Uint8Array): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let binary = "";
  for (let i = 0; i < view.length; i += 0x8000) binary += String.fromCharCode(...view.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** Folds a base64 value into lines of FWS-separated pieces (§3.5 lets b= and bh= carry FWS anywhere). */
function foldBase64(value: string): string {
  return value.match(/.{1,72}/g)!.join("\r\n ");
}

/**
 * The h= list: each of SIGNED_FIELDS once more than it occurs (§5.4.2 takes instances bottom up, so the
 * extra one stands for any instance added later), and the X-* fields as often as they occur.
 */
function signedNames(fields: HeaderField[]): string[] {
  const names: string[] = [];
  for (const name of SIGNED_FIELDS) {
    const count = fields.filter((f) => f.name === name).length;
    for (let i = 0; i <= count; i++) names.push(name);
  }
  const own = [...new Set(fields.filter((f) => f.name.startsWith("x-")).map((f) => f.name))];
  for (const name of own) for (const _ of fields.filter((f) => f.name === name)) names.push(name);
  return names;
}

/**
 * §5.4.2: for each name in h=, the last not yet used instance of it, bottom up; a name listed more often
 * than it occurs contributes nothing (the oversigned From).
 */
function selectedFields(fields: HeaderField[], names: string[]): HeaderField[] {
  const used = new Set<HeaderField>();
  const selected: HeaderField[] = [];
  for (const name of names) {
    const field = [...fields].reverse().find((f) => f.name === name && !used.has(f));
    if (!field) continue;
    used.add(field);
    selected.push(field);
  }
  return selected;
}

/** Tag list lines of at most about 76 characters, folded between tags and between h= names. */
function foldTags(tags: string[]): string {
  const lines: string[] = [];
  let line = "DKIM-Signature:";
  for (const tag of tags) {
    const pieces = tag.startsWith("h=") ? tag.split(/(?<=:)/) : [tag];
    for (const [i, piece] of pieces.entries()) {
      const separator = i === 0 ? " " : "";
      if (line.length + separator.length + piece.length > 76 && line.trim() !== "DKIM-Signature:") {
        lines.push(line);
        line = " ";
      }
      line += (line === " " ? "" : separator) + piece;
    }
  }
  lines.push(line);
  return lines.join("\r\n");
}

/**
 * The message with a DKIM-Signature field prepended. `message` is the RFC 5322 message as it goes out
 * (CRLF line ends, not dot-stuffed); `now` is the signature's t=.
 */
export async function signMessage(message: string, signer: DkimSigner, now: Date = new Date()): Promise<string> {
  const split = message.indexOf("\r\n\r\n");
  if (split < 0) throw new Error("the message has no empty line between its header and body");
  // A bare CR or LF would be read differently by each verifier (and by each MTA on the way).
  if (/\r(?!\n)|(?<!\r)\n/.test(message)) throw new Error("the message has a CR or LF that is not part of a CRLF");
  const fields = headerFields(message.slice(0, split));
  if (!fields.some((f) => f.name === "from")) throw new Error("the message has no From field (RFC 6376 §5.4 requires signing it)");
  const body = message.slice(split + 4);
  const bodyHash = base64(await crypto.subtle.digest("SHA-256", encoder.encode(relaxedBody(body))));
  const names = signedNames(fields);
  const tags = [
    "v=1;",
    `a=${signer.algorithm};`,
    "c=relaxed/relaxed;",
    `d=${signer.domain};`,
    `s=${signer.selector};`,
    `t=${Math.floor(now.getTime() / 1000)};`,
    `h=${names.join(":")};`,
    `bh=${bodyHash};`,
    "b=",
  ];
  const unsigned = foldTags(tags);
  const signedData = [...selectedFields(fields, names).map((f) => `${relaxedHeader(f.raw)}\r\n`), relaxedHeader(unsigned)].join("");
  const signature = await sign(signer, encoder.encode(signedData));
  return `${unsigned}\r\n ${foldBase64(base64(signature))}\r\n${message}`;
}

/** rsa-sha256: RSASSA-PKCS1-v1_5 over the data; ed25519-sha256: PureEdDSA over its SHA-256 hash (RFC 8463 §3). */
async function sign({ algorithm, key }: DkimSigner, data: Uint8Array): Promise<ArrayBuffer> {
  if (algorithm === "rsa-sha256") return crypto.subtle.sign("RSASSA-PKCS1-v1_5", key, data);
  return crypto.subtle.sign("Ed25519", key, await crypto.subtle.digest("SHA-256", data));
}
