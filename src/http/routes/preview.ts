// /preview (only with ENVIRONMENT=development, which npm start sets): every template rendered with its
// sample data, each locale side by side — subject, the HTML as a mail client shows it, the text part — so
// people can look at a template before it ships. A sample that lacks a variable shows what is missing.
import { Hono } from "hono";
import { getConfig } from "../../config";
import { chooseVariant, localesOf, renderVariant, variableProblems, type Template, type TemplateCatalog } from "../../core/templates";
import { templateCatalog } from "../../templates/catalog";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const PAGE_STYLE = `body{font:15px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;padding:24px;background:#fafafa;color:#18181b}
section{margin:0 0 32px}h2{font-size:16px;margin:0 0 8px}.cols{display:flex;gap:16px;flex-wrap:wrap}.cols>div{flex:1 1 420px;min-width:0}
iframe{width:100%;height:520px;border:1px solid #d4d4d8;background:#fff}pre{white-space:pre-wrap;background:#fff;border:1px solid #d4d4d8;padding:12px;margin:0;min-height:120px}
.subject{font-weight:600}.problem{color:#b91c1c}`;

const page = (title: string, body: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${PAGE_STYLE}</style></head><body>${body}</body></html>`;

function variantSection(catalog: TemplateCatalog, template: Template, locale: string | null): string {
  const variant = chooseVariant(template, locale ?? undefined);
  const heading = `<h2>${esc(locale ?? "default")}</h2>`;
  const problems = variableProblems(catalog, variant, variant.sample);
  if (problems.length > 0) {
    const list = problems.map((p) => `<li>${esc(p.name)}: ${p.problem === "missing" ? "missing" : "not text"}</li>`).join("");
    return `<section data-locale="${esc(locale ?? "default")}">${heading}<p class="problem">The sample data cannot render this template:</p><ul class="problem">${list}</ul></section>`;
  }
  const rendered = renderVariant(catalog, variant, variant.sample);
  return `<section data-locale="${esc(locale ?? "default")}">${heading}<p>Subject: <span class="subject">${esc(rendered.subject)}</span></p>
<div class="cols"><div><iframe title="HTML" sandbox srcdoc="${esc(rendered.html)}"></iframe></div><div><pre class="text">${esc(rendered.text)}</pre></div></div></section>`;
}

export const previewRoutes = new Hono<AppEnv>()
  .use(async (c, next) => {
    if (!getConfig(c.env).development) throw new ApiError("not_found", "no such route");
    await next();
  })
  .get("/", (c) => {
    const names = [...templateCatalog().templates.keys()].sort();
    return c.html(page("Templates", `<h1>Templates</h1><ul>${names.map((n) => `<li><a href="/preview/${esc(n)}">${esc(n)}</a></li>`).join("")}</ul>`));
  })
  .get("/:name", (c) => {
    const catalog = templateCatalog();
    const template = catalog.templates.get(c.req.param("name"));
    if (!template) throw new ApiError("not_found", "no such template");
    const locales = [null, ...localesOf(template)];
    const sections = locales.map((locale) => variantSection(catalog, template, locale)).join("");
    return c.html(page(`${template.name} — preview`, `<h1>${esc(template.name)}</h1><p>Rendered with each locale's sample.json.</p>${sections}`));
  });
