// Email addresses as clients write them ("a@b.example" or "Name <a@b.example>"), checked strictly
// enough that no address can carry a line break into a header or an SMTP command.

export interface Mailbox {
  /** Display name, unquoted; undefined when none was given. */
  name?: string;
  /** addr-spec with the domain lower-cased and IDNs in punycode. */
  address: string;
}

export type ParseResult = { ok: true; mailbox: Mailbox } | { ok: false; error: string };

/** Dot-separated runs of RFC 5322 atext. */
const LOCAL_PART = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/;
const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
// C0 controls, DEL and the Unicode line/paragraph separators: never allowed in names.
const CONTROL = /[\u0000-\u001f\u007f\u2028\u2029]/;
const MAX_NAME_LENGTH = 200;
/**
 * Longer is refused before any parsing: room for a display name of 200 characters written with an escape
 * before each (about 400), its quotes and brackets, the longest address and some spaces around them.
 */
export const MAX_MAILBOX_LENGTH = 1024;

function toAsciiDomain(domain: string): string | undefined {
  // Only letters, digits, "-" and "." belong in a domain. Refuse the rest before the URL parser sees
  // it: it would silently drop tabs and line breaks, or cut the domain at "/", "?" or "#".
  if (/[\s\u0000-\u002c\u002f\u003a-\u0040\u005b-\u0060\u007b-\u007f]/.test(domain)) return undefined;
  if (/^[\x21-\x7e]+$/.test(domain)) return domain.toLowerCase();
  try {
    return new URL(`http://${domain}`).hostname; // IDN → punycode, as the URL standard does it
  } catch {
    return undefined;
  }
}

export function parseAddrSpec(input: string): ParseResult {
  const at = input.lastIndexOf("@");
  if (at < 1 || at === input.length - 1) return { ok: false, error: "must look like name@domain.example" };
  const local = input.slice(0, at);
  const domain = toAsciiDomain(input.slice(at + 1));
  if (local.length > 64 || !LOCAL_PART.test(local)) return { ok: false, error: "has an invalid local part (before the @)" };
  if (!domain) return { ok: false, error: "has an invalid domain" };
  const labels = domain.split(".");
  if (labels.length < 2 || !labels.every((label) => DNS_LABEL.test(label)) || /^[0-9]+$/.test(labels.at(-1)!)) {
    return { ok: false, error: "has an invalid domain" };
  }
  const address = `${local}@${domain}`;
  if (address.length > 254) return { ok: false, error: "is longer than 254 characters" };
  return { ok: true, mailbox: { address } };
}

/** Parses `a@b.example`, `Name <a@b.example>` or `"Name" <a@b.example>`. */
export function parseMailbox(input: string): ParseResult {
  if (input.length > MAX_MAILBOX_LENGTH) return { ok: false, error: `is longer than ${MAX_MAILBOX_LENGTH} characters` };
  const trimmed = input.trim();
  // "name <addr>": the address is between the last "<" and the final ">", with no ">" inside it.
  const open = trimmed.endsWith(">") ? trimmed.lastIndexOf("<") : -1;
  const inner = open < 0 ? "" : trimmed.slice(open + 1, -1);
  if (open < 0 || inner.includes(">")) return parseAddrSpec(trimmed);
  let name = trimmed.slice(0, open).trim();
  if (name.length >= 2 && name.startsWith('"') && name.endsWith('"')) name = name.slice(1, -1).replace(/\\(.)/g, "$1");
  if (CONTROL.test(name)) return { ok: false, error: "has a control character or line break in its display name" };
  if (name.length > MAX_NAME_LENGTH) return { ok: false, error: `has a display name longer than ${MAX_NAME_LENGTH} characters` };
  const spec = parseAddrSpec(inner.trim());
  if (!spec.ok) return spec;
  return { ok: true, mailbox: name ? { name, address: spec.mailbox.address } : spec.mailbox };
}

/** `Name <a@b.example>` or `a@b.example`: the canonical form stored and shown back to clients. */
export function formatMailbox({ name, address }: Mailbox): string {
  return name ? `${name} <${address}>` : address;
}
