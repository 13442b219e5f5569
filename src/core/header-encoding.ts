// RFC 5322 / RFC 2047 header values that cannot break a message: non-ASCII goes into encoded-words,
// long values are folded, and quoted display names are escaped. Callers validate that values hold no
// line breaks; this module never emits a bare CR or LF of its own except as folding ("\r\n ").
import type { Mailbox } from "./address";

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
/** RFC 5322 "atext" plus space: a display name made of these needs no quoting. */
const PLAIN_PHRASE = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*$/;
const MAX_LINE = 78;
/** UTF-8 bytes per encoded-word: 39 bytes → 52 base64 chars, so "Subject: =?UTF-8?B?…?=" fits in 78. */
const WORD_BYTES = 39;
const encoder = new TextEncoder();

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** Splits text into RFC 2047 B-encoded words without cutting a character in half. */
export function encodeWords(text: string): string[] {
  const words: string[] = [];
  let current: number[] = [];
  for (const char of text) {
    const bytes = encoder.encode(char);
    if (current.length + bytes.length > WORD_BYTES) {
      words.push(`=?UTF-8?B?${base64(Uint8Array.from(current))}?=`);
      current = [];
    }
    current.push(...bytes);
  }
  if (current.length) words.push(`=?UTF-8?B?${base64(Uint8Array.from(current))}?=`);
  return words;
}

/** Joins tokens with spaces, folding ("\r\n ") before a token that would pass 78 characters. */
function fold(tokens: string[], firstLineUsed: number, separator = " "): string {
  let out = "";
  let lineLength = firstLineUsed;
  tokens.forEach((token, index) => {
    const sep = index === 0 ? "" : separator;
    if (index > 0 && lineLength + sep.length + token.length > MAX_LINE) {
      out += `${sep.trimEnd()}\r\n ${token}`;
      lineLength = 1 + token.length;
    } else {
      out += sep + token;
      lineLength += sep.length + token.length;
    }
  });
  return out;
}

/** An unstructured header value (Subject): plain when it is short printable ASCII, else encoded-words. */
export function encodeUnstructured(name: string, value: string): string {
  const used = name.length + 2;
  if (PRINTABLE_ASCII.test(value) && used + value.length <= MAX_LINE) return value;
  if (PRINTABLE_ASCII.test(value) && !/\S{77,}/.test(value)) return fold(value.split(" "), used);
  return fold(encodeWords(value), used);
}

function encodeDisplayName(name: string): string {
  if (PLAIN_PHRASE.test(name)) return name;
  if (PRINTABLE_ASCII.test(name)) return `"${name.replace(/["\\]/g, "\\$&")}"`;
  return encodeWords(name).join(" ");
}

/** An address-list header value (From, To, Cc), folded between addresses. */
export function encodeAddressList(name: string, mailboxes: Mailbox[]): string {
  const tokens = mailboxes.map((m) => (m.name ? `${encodeDisplayName(m.name)} <${m.address}>` : m.address));
  return fold(tokens, name.length + 2, ", ");
}
