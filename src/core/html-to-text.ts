// The plain-text part of a templated mail whose template has no text.mustache: the rendered HTML as
// readable text — paragraphs and line breaks kept, list items as "- …", links as "label (url)", tags
// dropped, entities decoded. Mail clients that show text only, and spam filters, want this part. Every
// step scans forward only, so no HTML (unclosed tags included) costs more than its length.

const NAMED: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: " " };

function decodeEntities(text: string): string {
  return text.replace(/&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|[a-z]{2,6});/gi, (entity, name: string) => {
    if (name[0] !== "#") return NAMED[name.toLowerCase()] ?? entity;
    const code = name[1] === "x" || name[1] === "X" ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
    return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : entity;
  });
}

/**
 * A tag starts with "<" and a letter, "/", "!" or "?" and ends at its ">"; any other "<" (as in "5 < 6"), or
 * one with another "<" before any ">", is text, and is kept.
 */
const stripTags = (html: string) => html.replace(/<[A-Za-z\/!?][^<>]*>/g, "");

/**
 * Rewrites each region that starts where `start` matches and ends where `end` next matches after it; a
 * region with no end runs to the end of the text. `replace` gets the opening match, what lies between, and
 * whether the region was closed.
 */
function rewriteRegions(
  html: string,
  start: RegExp,
  end: (opening: RegExpExecArray) => RegExp,
  replace: (opening: RegExpExecArray, inner: string, closed: boolean) => string,
): string {
  let out = "";
  let done = 0;
  start.lastIndex = 0;
  for (let opening = start.exec(html); opening; opening = start.exec(html)) {
    const closing = end(opening);
    closing.lastIndex = start.lastIndex;
    const found = closing.exec(html);
    out += html.slice(done, opening.index) + replace(opening, html.slice(start.lastIndex, found ? found.index : html.length), found !== null);
    done = found ? closing.lastIndex : html.length;
    if (!found) break;
    start.lastIndex = done;
  }
  return out + html.slice(done);
}

/** An attribute: its name, then its value in double, single or no quotes; each match moves on. */
const ATTRIBUTE = /([^\s"'<>\/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;

/** The value of a tag's href attribute (the first, as browsers take it), or undefined. */
function hrefOf(tag: string): string | undefined {
  for (const [, name, double, single, bare] of tag.slice(2).matchAll(ATTRIBUTE)) {
    if (name!.toLowerCase() === "href") return double ?? single ?? bare ?? "";
  }
  return undefined;
}

/** The closing tag of a region whose text is dropped, as a fresh (stateful, global) regex each time. */
function closingTag(name: string): RegExp {
  switch (name.toLowerCase()) {
    case "style":
      return /<\/style\s*>/gi;
    case "script":
      return /<\/script\s*>/gi;
    default:
      return /<\/title\s*>/gi;
  }
}

export function htmlToText(html: string): string {
  // Not <head>: its </head> may be left out, and what it holds besides these has no text.
  let text = rewriteRegions(html, /<(style|script|title)\b[^<>]*>/gi, (opening) => closingTag(opening[1]!), () => "");
  text = rewriteRegions(text.replace(/<!---?>/g, ""), /<!--/g, () => /-->/g, () => ""); // <!--> and <!---> are empty comments
  // An <a> without href (an anchor such as <a name="top">) is dropped alone: it does not take the next </a>.
  text = text.replace(/<a\b[^<>]*>/gi, (tag) => (hrefOf(tag) === undefined ? "" : tag));
  text = rewriteRegions(text, /<a\b[^<>]*>/gi, () => /<\/a\s*>/gi, (opening, inner, closed) => {
    // Still HTML: entities are decoded once, with the rest, at the end.
    const url = hrefOf(opening[0]);
    if (url === undefined || !closed) return inner;
    const label = stripTags(inner).replace(/\s+/g, " ").trim();
    return label && decodeEntities(label) !== decodeEntities(url) ? `${label} (${url})` : url;
  });
  text = text
    .replace(/<br\s*\/?>/gi, "\n")
    .replace(/<li\b[^<>]*>/gi, "\n- ")
    .replace(/<\/(p|div|h[1-6]|table|ul|ol|blockquote)\s*>/gi, "\n\n")
    .replace(/<\/tr\s*>/gi, "\n")
    .replace(/<\/t[dh]\s*>/gi, " "); // "Amount:" and "$5" in two cells are two words
  return decodeEntities(stripTags(text))
    .split("\n")
    .map((line) => line.replace(/[ \t\r\f\v\u00a0]+/g, " ").trim())
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}
