// Templates: the files under templates/ read into a catalog (each template's default variant and its
// locale variants, each with subject, html, optional text and sample data; the shared layout and
// partials), the variables a variant uses (from its parsed tokens, partials and layout included), and
// strict rendering: a variable the template uses but the data lacks is reported, never rendered as a
// blank. HTML is escaped in html only. Pure: the files come in as a map from path to text.
import Mustache from "mustache";
import { htmlToText } from "./html-to-text";

export interface TemplateVariant {
  /** The locale folder's name, as on disk; null for the template's own (default) files. */
  locale: string | null;
  subject: string;
  html: string;
  /** Absent: the text part is derived from the rendered HTML. */
  text?: string;
  sample: Record<string, unknown>;
}

export interface Template {
  name: string;
  /** By lower-cased locale; "" is the default. */
  variants: Map<string, TemplateVariant>;
}

export interface TemplateCatalog {
  templates: Map<string, Template>;
  layout: string;
  partials: Record<string, string>;
}

export interface RenderedTemplate {
  subject: string;
  html: string;
  text: string;
  /** The variant used: the locale asked for, a more general one, or null for the default. */
  locale: string | null;
}

export const TEMPLATE_NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/;
export const LOCALE = /^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3}$/;
const PART = /^([^/]+)\/(?:([^/]+)\/)?(subject|html|text)\.mustache$/;

/** Reads the catalog; a file that fits no rule, or a variant without subject or html, is an error. */
export function readCatalog(files: Record<string, string>, samples: Record<string, unknown>): TemplateCatalog {
  const templates = new Map<string, Template>();
  const partials: Record<string, string> = {};
  const parts = new Map<string, Partial<Record<"subject" | "html" | "text", string>> & { name: string; locale: string | null }>();
  for (const [path, text] of Object.entries(files)) {
    if (path === "layout.html.mustache") continue;
    const partial = /^partials\/([^/]+)\.mustache$/.exec(path);
    if (partial) {
      partials[partial[1]!] = text;
      continue;
    }
    const match = PART.exec(path);
    if (!match || !TEMPLATE_NAME.test(match[1]!) || (match[2] !== undefined && !LOCALE.test(match[2]))) {
      throw new Error(`templates/${path}: not a template file (templates/<name>/[<locale>/]subject|html|text.mustache, layout.html.mustache or partials/<name>.mustache)`);
    }
    const [, name, locale = null, part] = match as unknown as [string, string, string | null, "subject" | "html" | "text"];
    const key = `${name}/${locale ?? ""}`;
    const entry = parts.get(key) ?? { name, locale };
    entry[part] = text;
    parts.set(key, entry);
  }
  for (const { name, locale, subject, html, text } of parts.values()) {
    const folder = `templates/${name}${locale ? `/${locale}` : ""}`;
    if (subject === undefined || html === undefined) throw new Error(`${folder}: subject.mustache and html.mustache are both required`);
    const sample = (locale && samples[`${name}/${locale}/sample.json`]) || samples[`${name}/sample.json`] || {};
    const template = templates.get(name) ?? { name, variants: new Map() };
    template.variants.set((locale ?? "").toLowerCase(), { locale, subject, html, text, sample: sample as Record<string, unknown> });
    templates.set(name, template);
  }
  for (const template of templates.values()) {
    if (!template.variants.has("")) throw new Error(`templates/${template.name}: the default subject.mustache and html.mustache are required (locales fall back to them)`);
  }
  for (const [path, text] of Object.entries(files)) checkSource(path, text, partials);
  return { templates, layout: files["layout.html.mustache"] ?? "{{> content}}", partials };
}

/**
 * A template file that could render a broken mail, or fail whatever the data, is refused when the catalog
 * is read: a partial that does not exist (it would render as nothing), partials nested deeper than
 * MAX_PARTIAL_DEPTH or including themselves, and in HTML a value put in unescaped ({{{x}}} or {{& x}}),
 * which would let data write markup.
 */
function checkSource(path: string, text: string, partials: Record<string, string>): void {
  const html = path.endsWith("html.mustache");
  const layout = path === "layout.html.mustache";
  let content = false;
  const visit = (tokens: Token[], depth: number, inHtml: boolean) => {
    for (const [type, name, , , children] of tokens) {
      if (type === "&" && inHtml) throw new Error(`templates/${path}: {{{${name}}}} or {{& ${name}}} puts a value into HTML unescaped; use {{${name}}}`);
      if (type === ">" && name === "content") {
        if (!layout || depth > 0) throw new Error(`templates/${path}: {{> content}} (the template's html) belongs in layout.html.mustache only`);
        content = true;
      } else if (type === ">") {
        const partial = Object.hasOwn(partials, name) ? partials[name] : undefined; // not toString, constructor…
        if (partial === undefined) throw new Error(`templates/${path}: no partial named "${name}" (templates/partials/${name}.mustache)`);
        if (depth >= MAX_PARTIAL_DEPTH) throw new Error(`templates/${path}: partials nested more than ${MAX_PARTIAL_DEPTH} deep, or including themselves ("${name}")`);
        visit(parse(partial), depth + 1, inHtml || name.endsWith(".html"));
      }
      if (children) visit(children, depth, inHtml);
    }
  };
  // A template's html is itself one partial deep: the layout includes it as {{> content}}.
  visit(parse(text), PART.test(path) && html ? 1 : 0, html);
  if (layout && !content) throw new Error("templates/layout.html.mustache: {{> content}} marks where each template's html goes, and is missing");
}

/** The template's locale variants besides the default, as their folders are named. */
export function localesOf(template: Template): string[] {
  return [...template.variants.values()].flatMap((v) => (v.locale ? [v.locale] : [])).sort();
}

/** The variant for `locale`: exactly, then ever more general (zh-Hant-TW → zh-Hant → zh), then the default. */
export function chooseVariant(template: Template, locale?: string): TemplateVariant {
  const subtags = (locale ?? "").toLowerCase().split("-");
  for (let n = subtags.length; n > 0; n--) {
    const variant = template.variants.get(subtags.slice(0, n).join("-"));
    if (variant) return variant;
  }
  return template.variants.get("")!;
}

type Token = [type: string, value: string, start: number, end: number, children?: Token[]];

const parse = (source: string) => Mustache.parse(source) as unknown as Token[];

/** The (subject, html inside the layout, text) sources of a variant, with the partials they may use. */
function sources(catalog: TemplateCatalog, variant: TemplateVariant) {
  const partials: Record<string, string> = { ...catalog.partials, content: variant.html };
  return { subject: variant.subject, html: catalog.layout, text: variant.text, partials };
}

/**
 * The top-level names a variant needs from its data: exactly what rendering asks for (variableProblems), so
 * names used inside partials and inside sections count too. Found by filling in, round by round, each name
 * still reported missing, with its sample.json value (a name the sample lacks gets text): a section's items
 * then have the sample's shape, and the names the items carry are not taken for top-level ones. Sorted.
 */
export function templateVariables(catalog: TemplateCatalog, variant: TemplateVariant): string[] {
  const data: Record<string, unknown> = {};
  for (;;) {
    // "details[].label" and "user.name" belong to the top-level "details" and "user"; "." is the data itself.
    const missing = variableProblems(catalog, variant, data)
      .map(({ name }) => name.split(/[.[]/)[0]!)
      .filter((name) => name !== "" && !Object.hasOwn(data, name));
    if (missing.length === 0) return Object.keys(data).sort();
    for (const name of missing) data[name] = Object.hasOwn(variant.sample, name) ? variant.sample[name] : name;
  }
}

/** Partials may include partials; this deep, no further (a partial that includes itself would never end). */
const MAX_PARTIAL_DEPTH = 10;

const isObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === "object";

/**
 * Mustache's lookup, as mustache.js 4.2.0 does it (Context.lookup): the innermost context that has the
 * name, else undefined. A plain name counts only on an object, inherited members too (so "length" inside a
 * string's section comes from around it, and "constructor" inside an object's is Object's); a dotted name
 * is followed from any value, and its last part may be a primitive's own property ("name.length").
 */
function lookup(stack: unknown[], name: string): unknown {
  if (name === ".") return stack[stack.length - 1];
  const path = name.indexOf(".") > 0 ? name.split(".") : null;
  for (let i = stack.length - 1; i >= 0; i--) {
    let value = stack[i];
    if (!path) {
      if (isObject(value) && name in value) return value[name];
      continue;
    }
    let hit = false;
    for (let k = 0; value !== null && value !== undefined && k < path.length; k++) {
      const key = path[k]!;
      if (k === path.length - 1) hit = isObject(value) ? key in value : Object.prototype.hasOwnProperty.call(value, key);
      value = (value as Record<string, unknown>)[key];
    }
    if (hit) return value;
  }
  return undefined;
}

export interface VariableProblem {
  /** A path into the data: "user_name", "details[].label". */
  name: string;
  problem: "missing" | "not_text";
}

/**
 * What rendering would get wrong, by name: a variable that is absent or null, or an object or array where
 * text goes ("[object Object]"); a section name that is absent (false, null and [] are a section's way of
 * saying "none", and are fine).
 */
export function variableProblems(catalog: TemplateCatalog, variant: TemplateVariant, data: Record<string, unknown>): VariableProblem[] {
  const { subject, html, text, partials } = sources(catalog, variant);
  const problems = new Map<string, VariableProblem["problem"]>();
  const visit = (tokens: Token[], stack: unknown[], prefix: string, depth: number) => {
    for (const [type, name, , , children = []] of tokens) {
      if (type === "name" || type === "&") {
        const value = lookup(stack, name);
        // A function is never the data's (JSON has none): an inherited member such as toString.
        const path = name === "." ? prefix.replace(/\.$/, "") || "." : prefix + name;
        if (value == null || typeof value === "function") problems.set(path, "missing");
        else if (typeof value === "object") problems.set(path, "not_text");
      } else if (type === ">") {
        if (depth < MAX_PARTIAL_DEPTH && partials[name] !== undefined) visit(parse(partials[name]), stack, prefix, depth + 1);
      } else if (type === "#" || type === "^") {
        const value = lookup(stack, name);
        if (value === undefined || typeof value === "function") {
          problems.set(prefix + name, "missing");
        } else if (type === "^") {
          if (!value || (Array.isArray(value) && value.length === 0)) visit(children, stack, prefix, depth);
        } else if (Array.isArray(value)) {
          for (const item of value) visit(children, [...stack, item], `${prefix}${name}[].`, depth);
        } else if (value) {
          // An object's names are its own; inside a true or a number, names come from around it. Mustache
          // pushes an object, a string or a number, never true: inside a true, {{.}} is what is around it.
          visit(children, value === true ? stack : [...stack, value], typeof value === "object" ? `${prefix}${name}.` : prefix, depth);
        }
      }
    }
  };
  for (const source of [subject, html, text]) if (source !== undefined) visit(parse(source), [data], "", 0);
  return [...problems].map(([name, problem]) => ({ name, problem })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

const verbatim = { escape: (value: unknown) => String(value) };

export type RenderedPart = "subject" | "html" | "text";

/** A part's output passed its limit: rendering stopped there, before the rest was built. */
export class RenderTooLong extends Error {
  constructor(
    readonly part: RenderedPart,
    readonly limit: number,
  ) {
    super(`the rendered ${part} is longer than ${limit} characters`);
    this.name = "RenderTooLong";
  }
}

/** The render in progress with a limit, and what it has produced (rendering is synchronous: one at a time). */
let budget: { part: RenderedPart; limit: number; produced: number } | undefined;

/**
 * One Mustache writer for limited renders, kept so that it keeps its cache of parsed templates: every piece of
 * output (text, escaped and unescaped values) goes through its three value methods, so their lengths add up
 * to the output's, and it throws as soon as they pass the budget.
 */
const limitedWriter = (() => {
  const writer = new Mustache.Writer() as unknown as Record<string, (...args: unknown[]) => unknown> & { render: typeof Mustache.render };
  for (const method of ["rawValue", "escapedValue", "unescapedValue"]) {
    const original = writer[method]!;
    writer[method] = function (this: unknown, ...args: unknown[]) {
      const value = original.apply(this, args);
      if (budget && value != null && (budget.produced += String(value).length) > budget.limit) throw new RenderTooLong(budget.part, budget.limit);
      return value;
    };
  }
  return writer;
})();

/** Mustache.render that stops as soon as the output passes `limit`: 300,000 section items cost what their first few thousand cost. */
function renderWithin(part: RenderedPart, limit: number, template: string, data: unknown, partials: Record<string, string>, config?: typeof verbatim): string {
  if (limit === Infinity) return Mustache.render(template, data, partials, config);
  budget = { part, limit, produced: 0 };
  try {
    return limitedWriter.render(template, data, partials, config);
  } finally {
    budget = undefined;
  }
}

/**
 * Renders a variant whose data has no problems (see variableProblems). A line break after the subject
 * template is not part of it. With limits, a part that would pass its limit throws RenderTooLong.
 */
export function renderVariant(
  catalog: TemplateCatalog,
  variant: TemplateVariant,
  data: Record<string, unknown>,
  { maxHtmlChars = Infinity, maxTextChars = maxHtmlChars, maxSubjectChars = Infinity }: { maxHtmlChars?: number; maxTextChars?: number; maxSubjectChars?: number } = {},
): RenderedTemplate {
  const { subject, html, text, partials } = sources(catalog, variant);
  const renderedHtml = renderWithin("html", maxHtmlChars, html, data, partials);
  return {
    subject: renderWithin("subject", maxSubjectChars, subject.replace(/\r?\n$/, ""), data, partials, verbatim),
    html: renderedHtml,
    // Text is derived only from HTML within its limit, which the caller will take.
    text: text === undefined ? htmlToText(renderedHtml) : renderWithin("text", maxTextChars, text, data, partials, verbatim),
    locale: variant.locale,
  };
}
