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

/** A piece of a header value and the separator that goes before it ("" for the first). */
type Token = [separator: string, text: string];

/** Joins tokens, folding ("\r\n ") before a token that would pass 78 characters on its line. */
function fold(tokens: Token[], firstLineUsed: number): string {
  let out = "";
  let lineLength = firstLineUsed;
  tokens.forEach(([separator, text], index) => {
    const sep = index === 0 ? "" : separator;
    if (index > 0 && lineLength + sep.length + text.length > MAX_LINE) {
      out += `${sep.trimEnd()}\r\n ${text}`;
      lineLength = 1 + text.length;
    } else {
      out += sep + text;
      lineLength += sep.length + text.length;
    }
  });
  return out;
}

const spaced = (texts: string[]): Token[] => texts.map((text) => [" ", text]);

/**
 * Printable ASCII folded losslessly (RFC 5322 §2.2.3): a fold goes before a word, keeping every space of
 * the run in front of it, so unfolding (removing the CRLFs) restores the value, and no line is only
 * whitespace. Leading and trailing spaces stay on their lines.
 */
function foldAscii(value: string, firstLineUsed: number): string {
  // One pass over runs of spaces and the words after them (a regex here backtracked on long space runs).
  let out = "";
  let lineLength = firstLineUsed;
  for (let i = 0; i < value.length; ) {
    let wordStart = i;
    while (wordStart < value.length && value[wordStart] === " ") wordStart++;
    let wordEnd = wordStart;
    while (wordEnd < value.length && value[wordEnd] !== " ") wordEnd++;
    const piece = value.slice(i, wordEnd); // the spaces, then the word (none: the trailing spaces)
    const fold = i > 0 && wordEnd > wordStart && lineLength + piece.length > MAX_LINE;
    out += fold ? `\r\n${piece}` : piece;
    lineLength = fold ? piece.length : lineLength + piece.length;
    i = wordEnd;
  }
  return out;
}

/**
 * An unstructured header value (Subject): as is when short printable ASCII, folded at spaces when longer,
 * else (non-ASCII, or a run of 77 characters that no fold could shorten) encoded-words.
 */
export function encodeUnstructured(name: string, value: string): string {
  const used = name.length + 2;
  if (PRINTABLE_ASCII.test(value) && used + value.length <= MAX_LINE) return value;
  if (PRINTABLE_ASCII.test(value) && !/[^ ]{77,}| {77,}/.test(value)) return foldAscii(value, used);
  return fold(spaced(encodeWords(value)), used);
}

/**
 * A header the client set (List-Unsubscribe, References, X-*): receivers parse these, so printable ASCII is
 * kept verbatim, folded only at spaces; a word longer than a line stays whole on a line of its own (the
 * schema caps values at 900 characters, so no line passes RFC 5322's 998). Only non-ASCII is encoded.
 */
export function encodeClientHeader(name: string, value: string): string {
  if (!PRINTABLE_ASCII.test(value)) return encodeUnstructured(name, value);
  return name.length + 2 + value.length <= MAX_LINE ? value : foldAscii(value, name.length + 2);
}

/** A display name as phrase tokens: as is, quoted and escaped, or as encoded-words that may fold apart. */
function displayNameTokens(name: string): string[] {
  if (PLAIN_PHRASE.test(name)) return [name];
  if (PRINTABLE_ASCII.test(name)) return [`"${name.replace(/["\\]/g, "\\$&")}"`];
  return encodeWords(name);
}

/** An address-list header value (From, To, Cc), folded between addresses and between encoded-words. */
export function encodeAddressList(name: string, mailboxes: Mailbox[]): string {
  const tokens = mailboxes.flatMap((m, i): Token[] => {
    const parts = m.name ? [...displayNameTokens(m.name), `<${m.address}>`] : [m.address];
    return parts.map((text, j): Token => [j === 0 && i > 0 ? ", " : " ", text]);
  });
  return fold(tokens, name.length + 2);
}
