import { describe, expect, it } from "vitest";
import { htmlToText } from "../../src/core/html-to-text";
import { renderTemplateRequest } from "../../src/core/template-request";
import { chooseVariant, readCatalog, renderVariant, templateVariables, variableProblems, type TemplateCatalog } from "../../src/core/templates";
import { sampleFiles, templateFiles } from "../../src/templates/files.generated";

const shipped = readCatalog(templateFiles, sampleFiles);

function catalogOf(files: Record<string, string>, samples: Record<string, unknown> = {}): TemplateCatalog {
  return readCatalog(files, samples);
}

const render = (catalog: TemplateCatalog, id: string, variables: Record<string, unknown>, locale?: string) => renderTemplateRequest(catalog, { id, variables, locale }, "template");

describe("the shipped templates", () => {
  it("are welcome (English and Chinese), password-reset and alert", () => {
    expect([...shipped.templates.keys()].sort()).toEqual(["alert", "password-reset", "welcome"]);
    expect([...shipped.templates.get("welcome")!.variants.keys()].sort()).toEqual(["", "zh"]);
  });

  const variants = [...shipped.templates.values()].flatMap((t) => [...t.variants.values()].map((v) => [`${t.name}${v.locale ? `/${v.locale}` : ""}`, t.name, v] as const));
  it.each(variants)("%s renders with its sample data: every variable given, every sample value in the mail", (_label, name, variant) => {
    expect(Object.keys(variant.sample).length).toBeGreaterThan(0);
    expect(variableProblems(shipped, variant, variant.sample)).toEqual([]);
    const result = render(shipped, name, variant.sample, variant.locale ?? undefined);
    expect(result.ok).toBe(true);
    const rendered = result.ok ? result.value : undefined!;
    expect(rendered.locale).toBe(variant.locale);
    expect(rendered.subject).not.toMatch(/[\r\n]|^\s|\s$/);
    expect(rendered.html).toMatch(/^<!doctype html>/);
    expect(rendered.html).not.toContain("{{");
    for (const value of Object.values(variant.sample).filter((v) => typeof v === "string")) {
      expect(rendered.text).toContain(value);
    }
  });

  it("welcome in Chinese is the new-user notification (新用户注册通知)", () => {
    const zh = shipped.templates.get("welcome")!.variants.get("zh")!;
    const result = render(shipped, "welcome", zh.sample, "zh-CN");
    expect(result.ok && result.value.subject).toBe("新用户注册通知：欢迎加入Acme，张伟！");
  });

  it("password-reset has no text.mustache: its text is the HTML as readable text, the button as label (url)", () => {
    const variant = shipped.templates.get("password-reset")!.variants.get("")!;
    expect(variant.text).toBeUndefined();
    const result = render(shipped, "password-reset", variant.sample);
    expect(result.ok && result.value.text).toBe(
      [
        "Reset your password",
        "",
        "Hi Ada, someone asked to reset the password of your Acme account.",
        "",
        "Choose a new password (https://acme.example/reset?token=3f9c2a)",
        "",
        "The link works for 30 minutes. If you did not ask for it, ignore this mail: your password stays as it is.",
        "",
        "— Acme",
      ].join("\n"),
    );
  });

  it("lists the variables a template uses outside sections, partials and layout included", () => {
    const welcome = shipped.templates.get("welcome")!;
    expect(templateVariables(shipped, welcome.variants.get("")!)).toEqual(["button_url", "email", "product_name", "user_name"]);
    expect(templateVariables(shipped, shipped.templates.get("alert")!.variants.get("")!)).toEqual([
      "button_label",
      "button_url",
      "details",
      "service",
      "severity",
      "started_at",
      "summary",
    ]);
  });
});

describe("strict rendering", () => {
  it("lists every missing variable at once, by path, those in sections and partials too", () => {
    const result = render(shipped, "alert", { service: "api", severity: "low", details: [{ label: "Region" }, { value: "x" }] });
    expect(result).toEqual({
      ok: false,
      issues: [
        { path: "template.variables.button_label", message: "is used by the template but not given (null counts as not given)" },
        { path: "template.variables.button_url", message: "is used by the template but not given (null counts as not given)" },
        { path: "template.variables.details[].label", message: "is used by the template but not given (null counts as not given)" },
        { path: "template.variables.details[].value", message: "is used by the template but not given (null counts as not given)" },
        { path: "template.variables.started_at", message: "is used by the template but not given (null counts as not given)" },
        { path: "template.variables.summary", message: "is used by the template but not given (null counts as not given)" },
      ],
    });
  });

  it("takes a name inside a section from the enclosing data, as Mustache does", () => {
    const catalog = catalogOf({ "t/subject.mustache": "Hi", "t/html.mustache": "{{#items}}{{name}} {{currency}}{{/items}}" });
    expect(variableProblems(catalog, chooseVariant(catalog.templates.get("t")!), { items: [{ name: "a" }], currency: "EUR" })).toEqual([]);
    expect(variableProblems(catalog, chooseVariant(catalog.templates.get("t")!), { items: [{ name: "a" }] })).toEqual([{ name: "items[].currency", problem: "missing" }]);
  });

  it("counts null as missing for a variable, and false, null or [] as 'none' for a section; an absent section is missing", () => {
    const catalog = catalogOf({ "t/subject.mustache": "{{name}}", "t/html.mustache": "{{#show}}x{{/show}}{{^list}}none{{/list}}{{#obj}}{{inner}}{{/obj}}" });
    const variant = chooseVariant(catalog.templates.get("t")!);
    expect(variableProblems(catalog, variant, { name: null, show: false, list: [], obj: null })).toEqual([{ name: "name", problem: "missing" }]);
    expect(variableProblems(catalog, variant, { name: "n" })).toEqual([
      { name: "list", problem: "missing" },
      { name: "obj", problem: "missing" },
      { name: "show", problem: "missing" },
    ]);
    expect(variableProblems(catalog, variant, { name: "n", show: true, list: ["a"], obj: {} })).toEqual([{ name: "obj.inner", problem: "missing" }]);
  });

  it("refuses an object or array where text goes instead of rendering [object Object]", () => {
    const catalog = catalogOf({ "t/subject.mustache": "{{a}} {{b}}", "t/html.mustache": "x" });
    expect(render(catalog, "t", { a: { first: "x" }, b: [1] })).toEqual({
      ok: false,
      issues: [
        { path: "template.variables.a", message: "is an object or array where the template puts text" },
        { path: "template.variables.b", message: "is an object or array where the template puts text" },
      ],
    });
  });

  it("refuses a rendered subject with a line break, an empty one, and names an unknown template", () => {
    const catalog = catalogOf({ "t/subject.mustache": "Hi {{name}}\n", "t/html.mustache": "x" });
    expect(render(catalog, "t", { name: "Bob\r\nBcc: victim@example.com" })).toEqual({
      ok: false,
      issues: [{ path: "template.variables", message: "the rendered subject contains a line break or control character" }],
    });
    expect(render(catalog, "t", { name: "Bob\r\n" }).ok).toBe(false); // not trimmed away
    const empty = catalogOf({ "t/subject.mustache": "{{name}}", "t/html.mustache": "x" });
    expect(render(empty, "t", { name: " " })).toEqual({ ok: false, issues: [{ path: "template.variables", message: "the rendered subject is empty" }] });
    expect(render(catalog, "nope", {})).toEqual({ ok: false, issues: [{ path: "template.id", message: 'no template named "nope" (GET /v1/templates lists them)' }] });
  });

  it("escapes HTML in html only: the subject and text get the values as they are", () => {
    const catalog = catalogOf({ "t/subject.mustache": "{{name}}", "t/html.mustache": "<p>{{name}}</p>", "t/text.mustache": "{{name}}" });
    const result = render(catalog, "t", { name: `<script>alert("x")</script> & 'y'` });
    expect(result).toEqual({
      ok: true,
      value: {
        subject: `<script>alert("x")</script> & 'y'`,
        html: "<p>&lt;script&gt;alert(&quot;x&quot;)&lt;&#x2F;script&gt; &amp; &#39;y&#39;</p>",
        text: `<script>alert("x")</script> & 'y'`,
        locale: null,
      },
    });
  });

  it("renders a value's own {{tags}} as text, never as a template", () => {
    const catalog = catalogOf({ "t/subject.mustache": "{{a}}", "t/html.mustache": "{{a}}" });
    const result = render(catalog, "t", { a: "{{b}}" });
    expect(result.ok && result.value.subject).toBe("{{b}}");
  });
});

describe("locales", () => {
  const catalog = catalogOf({
    "t/subject.mustache": "default",
    "t/html.mustache": "x",
    "t/zh/subject.mustache": "zh",
    "t/zh/html.mustache": "x",
    "t/zh-Hant/subject.mustache": "zh-Hant",
    "t/zh-Hant/html.mustache": "x",
  });
  const template = catalog.templates.get("t")!;
  it.each([
    ["zh-CN", "zh"],
    ["zh", "zh"],
    ["ZH-cn", "zh"],
    ["zh-Hant-TW", "zh-Hant"],
    ["zh-hant", "zh-Hant"],
    ["fr", null],
    ["fr-CA", null],
    [undefined, null],
  ])("%s → %s", (asked, chosen) => {
    const variant = chooseVariant(template, asked);
    expect(variant.locale).toBe(chosen);
    expect(renderVariant(catalog, variant, {}).subject).toBe(chosen ?? "default");
  });
});

describe("reading templates/", () => {
  it.each([
    ["a file that fits no rule", { "t/subject.mustache": "s", "t/html.mustache": "h", "t/body.mustache": "b" }, /templates\/t\/body\.mustache: not a template file/],
    ["a variant without html", { "t/subject.mustache": "s" }, /templates\/t: subject\.mustache and html\.mustache are both required/],
    ["a locale without the default", { "t/zh/subject.mustache": "s", "t/zh/html.mustache": "h" }, /templates\/t: the default subject\.mustache and html\.mustache are required/],
    ["a bad template name", { "T t/subject.mustache": "s", "T t/html.mustache": "h" }, /not a template file/],
  ])("refuses %s", (_name, files, error) => {
    expect(() => readCatalog(files, {})).toThrow(error);
  });

  it("puts the html inside the layout, with partials", () => {
    const catalog = catalogOf({ "layout.html.mustache": "<main>{{> content}}</main>{{> foot}}", "partials/foot.mustache": "<footer>{{who}}</footer>", "t/subject.mustache": "s", "t/html.mustache": "<p>{{who}}</p>" });
    expect(renderVariant(catalog, chooseVariant(catalog.templates.get("t")!), { who: "me" }).html).toBe("<main><p>me</p></main><footer>me</footer>");
    expect(variableProblems(catalog, chooseVariant(catalog.templates.get("t")!), {})).toEqual([{ name: "who", problem: "missing" }]);
  });

  it("stops following partials that include themselves", () => {
    const catalog = catalogOf({ "partials/loop.mustache": "{{#more}}{{> loop}}{{/more}}", "t/subject.mustache": "s", "t/html.mustache": "{{> loop}}" });
    expect(variableProblems(catalog, chooseVariant(catalog.templates.get("t")!), { more: false })).toEqual([]);
    expect(templateVariables(catalog, chooseVariant(catalog.templates.get("t")!))).toEqual(["more"]);
  });
});

describe("HTML as text", () => {
  it("keeps paragraphs, breaks, list items and links, drops tags, head and styles, decodes entities", () => {
    const html = `<html><head><title>T</title><style>p{color:red}</style></head><body>
      <h1>Hello &amp; welcome</h1><p>Line one<br>line   two</p>
      <ul><li>First</li><li>Second &lt;b&gt;</li></ul>
      <p><a href="https://x.example/a?b=1&amp;c=2">Open it</a> or <a href='https://y.example'>https://y.example</a></p>
      <!-- a comment --><p>&#x2F;path &#39;q&#39; &nbsp;end</p></body></html>`;
    expect(htmlToText(html)).toBe(
      ["Hello & welcome", "", "Line one", "line two", "", "- First", "- Second <b>", "", "Open it (https://x.example/a?b=1&c=2) or https://y.example", "", "/path 'q' end"].join("\n"),
    );
  });
});
