import { describe, expect, it } from "vitest";
import { htmlToText } from "../../src/core/html-to-text";
import { renderTemplateSchema, templateSchema, validate } from "../../src/core/schema";
import { renderTemplateRequest } from "../../src/core/template-request";
import { chooseVariant, readCatalog, renderVariant, RenderTooLong, templateVariables, variableProblems, type TemplateCatalog } from "../../src/core/templates";
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

  it("lists the variables a template needs, those of partials, of the layout and inside sections included", () => {
    const welcome = shipped.templates.get("welcome")!;
    // button_label is used by the button partial, inside {{#button_url}}
    expect(templateVariables(shipped, welcome.variants.get("")!)).toEqual(["button_label", "button_url", "email", "product_name", "user_name"]);
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

  it.each([
    ["a partial that includes itself", { "partials/loop.mustache": "{{#more}}{{> loop}}{{/more}}", "t/html.mustache": "{{> loop}}" }, /partials nested more than 10 deep, or including themselves \("loop"\)/],
    ["a partial that does not exist", { "t/html.mustache": "{{> nope}}" }, /templates\/t\/html\.mustache: no partial named "nope"/],
    ["a value put into HTML unescaped", { "t/html.mustache": "<p>{{{raw}}}</p>" }, /templates\/t\/html\.mustache: \{\{\{raw\}\}\} or \{\{& raw\}\} puts a value into HTML unescaped/],
    ["{{& x}} in an HTML partial", { "partials/p.html.mustache": "{{& raw}}", "t/html.mustache": "{{> p.html}}" }, /partials\/p\.html\.mustache: .* unescaped/],
    ["{{> content}} outside the layout", { "t/html.mustache": "{{> content}}" }, /belongs in layout\.html\.mustache only/],
    ["a layout without {{> content}}", { "layout.html.mustache": "<main></main>", "t/html.mustache": "x" }, /layout\.html\.mustache: \{\{> content\}\} marks where/],
  ])("refuses %s when the templates are read (it would fail or render broken mail whatever the data)", (_name, files, error) => {
    expect(() => readCatalog({ "t/subject.mustache": "s", ...files }, {})).toThrow(error);
  });

  it("allows unescaped values where no HTML is: subject, text and text partials", () => {
    const catalog = catalogOf({ "partials/sig.text.mustache": "{{& who}}", "t/subject.mustache": "{{{a}}}", "t/html.mustache": "x", "t/text.mustache": "{{& b}}{{> sig.text}}" });
    expect(renderVariant(catalog, chooseVariant(catalog.templates.get("t")!), { a: "<A>", b: "<B>", who: "&" })).toMatchObject({ subject: "<A>", text: "<B>&" });
  });
});

describe("rendered HTML over the limit", () => {
  it("is refused for its size alone: no text is derived from it (that would cost seconds on megabytes)", () => {
    const catalog = catalogOf({ "t/subject.mustache": "s", "t/html.mustache": "<p>{{v}}</p>" });
    expect(render(catalog, "t", { v: "x".repeat(300 * 1024) })).toEqual({
      ok: false,
      issues: [{ path: "template.variables", message: "the rendered html is longer than 262144 characters" }],
    });
  });

  it("refuses a rendered html or text that is empty", () => {
    const catalog = catalogOf({ "t/subject.mustache": "s", "t/html.mustache": "{{v}}", "t/text.mustache": "{{w}}" });
    expect(render(catalog, "t", { v: " ", w: "" })).toEqual({
      ok: false,
      issues: [
        { path: "template.variables", message: "the rendered html is empty" },
        { path: "template.variables", message: "the rendered text is empty" },
      ],
    });
  });
});

describe("HTML as text", () => {
  it("drops only whole tags: an unclosed < stays, a run of them is kept as text", () => {
    expect(htmlToText("<p>a <b>bold</b> <<<x</p>")).toBe("a bold <<<x");
  });

  it("keeps a < that starts no tag, an empty comment hides nothing, and table cells stay apart", () => {
    expect(htmlToText("<p>5 < 6 and 7 > 3</p>")).toBe("5 < 6 and 7 > 3");
    expect(htmlToText("<p>a<!-->b<!--->c</p>")).toBe("abc");
    expect(htmlToText("<table><tr><td>Amount:</td><td>$5</td></tr><tr><th>Total</th><td>$7</td></tr></table>")).toBe("Amount: $5\nTotal $7");
  });

  it("reads unclosed markup as browsers do: a link without </a> is its text, a <style> or comment without its end hides the rest", () => {
    expect(htmlToText('<p>Go <a href="https://x.example">here</p><p>and on</p>')).toBe("Go here\n\nand on");
    expect(htmlToText("<p>Shown</p><style>p{}<p>hidden</p>")).toBe("Shown");
    expect(htmlToText("<p>Shown</p><!-- <p>hidden</p>")).toBe("Shown");
    expect(htmlToText('<a name="top">Top</a> <a href="/x">x</a>')).toBe("Top x (/x)");
  });


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

// Mutation-pass additions: each pins a behaviour a plausible slip would change without any test failing.
describe("strict rendering, more of Mustache's semantics", () => {
  const problemsFor = (html: string, data: Record<string, unknown>, more: Record<string, string> = {}) => {
    const catalog = catalogOf({ "t/subject.mustache": "s", "t/html.mustache": html, ...more });
    return variableProblems(catalog, chooseVariant(catalog.templates.get("t")!), data);
  };

  it("takes {{.}} as the current item: text items are fine, object items are not text", () => {
    expect(problemsFor("{{#items}}{{.}}{{/items}}", { items: ["a", 2] })).toEqual([]);
    expect(problemsFor("{{#items}}{{.}}{{/items}}", { items: [{ a: 1 }] })).toEqual([{ name: "items[]", problem: "not_text" }]);
  });

  it("takes a name from the innermost context that has it: an item's own value shadows the data's", () => {
    expect(problemsFor("{{#items}}{{name}}{{/items}}", { name: { first: "x" }, items: [{ name: "a" }] })).toEqual([]);
    expect(problemsFor("{{#items}}{{name}}{{/items}}", { name: "outer", items: [{ name: { first: "x" } }] })).toEqual([{ name: "items[].name", problem: "not_text" }]);
  });

  it("looks names up in an object section's object", () => {
    expect(problemsFor("{{#user}}{{name}}{{/user}}", { user: { name: "Ada" } })).toEqual([]);
  });

  it("checks an inverted section's content only when it renders: for false, null and [], not for a value", () => {
    expect(problemsFor("{{^items}}{{fallback}}{{/items}}", { items: [] })).toEqual([{ name: "fallback", problem: "missing" }]);
    expect(problemsFor("{{^items}}{{fallback}}{{/items}}", { items: false })).toEqual([{ name: "fallback", problem: "missing" }]);
    expect(problemsFor("{{^items}}{{fallback}}{{/items}}", { items: ["a"] })).toEqual([]);
  });

  it("does not take an inherited member such as toString for a given variable", () => {
    expect(problemsFor("{{toString}}", {})).toEqual([{ name: "toString", problem: "missing" }]);
    expect(problemsFor("{{toString}}", { toString: "given" })).toEqual([]);
  });

  it("checks triple mustaches and {{& x}} (allowed outside HTML) like other variables", () => {
    expect(problemsFor("x", {}, { "t/text.mustache": "{{{a}}}{{& b}}" })).toEqual([
      { name: "a", problem: "missing" },
      { name: "b", problem: "missing" },
    ]);
  });

  it("checks the text template too", () => {
    expect(problemsFor("x", {}, { "t/text.mustache": "{{only_in_text}}" })).toEqual([{ name: "only_in_text", problem: "missing" }]);
  });

  it("follows partials ten deep, and refuses a deeper chain when the templates are read", () => {
    const chain = (n: number) => {
      const files: Record<string, string> = {};
      for (let i = 1; i <= n; i++) files[`partials/p${i}.mustache`] = i < n ? `{{v${i}}}{{> p${i + 1}}}` : `{{v${i}}}`;
      return files;
    };
    expect(problemsFor("{{> p1}}", {}, chain(9)).map((p) => p.name)).toEqual(["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"]);
    expect(() => problemsFor("{{> p1}}", {}, chain(10))).toThrow(/partials nested more than 10 deep/); // the layout includes the html: one more
  });
});

describe("templateVariables, more", () => {
  it("takes a section's items in the sample's shape: names the items carry are not top-level ones, names around them are", () => {
    const catalog = catalogOf(
      { "t/subject.mustache": "s", "t/html.mustache": "{{#rows}}{{label}} {{unit}}{{/rows}}{{#flag}}{{inner}}{{/flag}}{{#user.name}}{{user.name}}{{/user.name}}" },
      { "t/sample.json": { rows: [{ label: "a" }], flag: true, user: { name: "Ada" } } },
    );
    // unit, which the sample's items lack, is the items' to carry: the 422 names it rows[].unit
    expect(templateVariables(catalog, chooseVariant(catalog.templates.get("t")!))).toEqual(["flag", "inner", "rows", "user"]);
  });

  it("gives a name the sample lacks text, so what a text value would need is listed too", () => {
    const catalog = catalogOf({ "t/subject.mustache": "s", "t/html.mustache": "{{#a}}{{b}}{{/a}}" });
    expect(templateVariables(catalog, chooseVariant(catalog.templates.get("t")!))).toEqual(["a", "b"]);
  });

  it("lists names of variables in triple mustaches and {{& }}, and of inverted sections; never '.'", () => {
    const catalog = catalogOf({ "t/subject.mustache": "{{.}}", "t/html.mustache": "{{^none}}x{{/none}}", "t/text.mustache": "{{{raw}}}{{& amp}}" });
    expect(templateVariables(catalog, chooseVariant(catalog.templates.get("t")!))).toEqual(["amp", "none", "raw"]);
  });
});

describe("the rendered subject and bodies, more", () => {
  it("drops one line break, LF or CRLF, at the end of the subject template, and no other", () => {
    const crlf = catalogOf({ "t/subject.mustache": "Hi {{name}}\r\n", "t/html.mustache": "x" });
    expect(render(crlf, "t", { name: "Ada" })).toMatchObject({ ok: true, value: { subject: "Hi Ada" } });
    const inner = catalogOf({ "t/subject.mustache": "Hi\n{{name}}\n", "t/html.mustache": "x" });
    expect(render(inner, "t", { name: "Ada" })).toEqual({ ok: false, issues: [{ path: "template.variables", message: "the rendered subject contains a line break or control character" }] });
  });

  it("refuses any control character or Unicode line separator in the rendered subject, not only CR and LF", () => {
    const catalog = catalogOf({ "t/subject.mustache": "{{name}}", "t/html.mustache": "x" });
    for (const name of ["a\tb", "a\u0000b", "a\u2028b", "a\u007fb"]) expect(render(catalog, "t", { name }).ok).toBe(false);
  });

  it("takes a subject of exactly 998 characters, and refuses one longer", () => {
    const catalog = catalogOf({ "t/subject.mustache": "{{s}}", "t/html.mustache": "x" });
    expect(render(catalog, "t", { s: "x".repeat(998) }).ok).toBe(true);
    expect(render(catalog, "t", { s: "x".repeat(999) })).toEqual({ ok: false, issues: [{ path: "template.variables", message: "the rendered subject is longer than 998 characters" }] });
  });

  it("takes bodies of exactly 256 KiB, and refuses a longer html or a longer text", () => {
    const max = 256 * 1024;
    const catalog = catalogOf({ "t/subject.mustache": "s", "t/html.mustache": "{{h}}", "t/text.mustache": "{{t}}" });
    expect(render(catalog, "t", { h: "x".repeat(max), t: "y".repeat(max) }).ok).toBe(true);
    expect(render(catalog, "t", { h: "x", t: "y".repeat(max + 1) })).toEqual({ ok: false, issues: [{ path: "template.variables", message: `the rendered text is longer than ${max} characters` }] });
    expect(render(catalog, "t", { h: "x".repeat(max + 1), t: "y" })).toEqual({ ok: false, issues: [{ path: "template.variables", message: `the rendered html is longer than ${max} characters` }] });
  });
});

describe("reading templates/, more", () => {
  it.each([
    ["a template name longer than 64", { [`${"a".repeat(65)}/subject.mustache`]: "s", [`${"a".repeat(65)}/html.mustache`]: "h" }],
    ["a locale folder that is no language tag", { "t/subject.mustache": "s", "t/html.mustache": "h", "t/english/subject.mustache": "s", "t/english/html.mustache": "h" }],
    ["a partial in a subfolder", { "t/subject.mustache": "s", "t/html.mustache": "h", "partials/x/y.mustache": "p" }],
  ])("refuses %s", (_name, files) => {
    expect(() => readCatalog(files, {})).toThrow(/not a template file/);
  });

  it("takes a template name of 64 characters", () => {
    const name = "a".repeat(64);
    expect([...readCatalog({ [`${name}/subject.mustache`]: "s", [`${name}/html.mustache`]: "h" }, {}).templates.keys()]).toEqual([name]);
  });
});

describe("HTML as text, more", () => {
  it("breaks lines at <br/> and table rows, drops scripts and titles, keeps a link's label without its tags", () => {
    expect(htmlToText("a<br/>b<br />c")).toBe("a\nb\nc");
    expect(htmlToText("<table><tr><td>one</td></tr><tr><td>two</td></tr></table>after")).toBe("one\ntwo\n\nafter");
    expect(htmlToText("<script>var x = 1;</script><title>T</title>ok")).toBe("ok");
    expect(htmlToText('<a href="https://x.example"><b>Go</b> now</a>')).toBe("Go now (https://x.example)");
    expect(htmlToText('<a href="https://x.example"><b>https://x.example</b></a>')).toBe("https://x.example");
  });

  it("gives a link whose label is its (entity-encoded) address once", () => {
    expect(htmlToText('<a href="https://x.example/?a=1&amp;b=2">https://x.example/?a=1&amp;b=2</a>')).toBe("https://x.example/?a=1&b=2");
  });

  it("decodes named entities in any case, and leaves code points that are none as they are", () => {
    expect(htmlToText("&AMP; &Lt; &#0; &#x110000; &#65;")).toBe("& < &#0; &#x110000; A");
  });

  it("gives a link without a label as its address alone, and a label over lines on one line", () => {
    expect(htmlToText('<a href="https://x.example"><img src="logo.png"></a>')).toBe("https://x.example");
    expect(htmlToText('<a href="https://x.example">Go\n   now</a>')).toBe("Go now (https://x.example)");
  });

  it("ends a style at </style > with space before its >", () => {
    expect(htmlToText("<style>p{}</style >ok")).toBe("ok");
  });

  it("collapses no-break spaces with other spaces", () => {
    expect(htmlToText("a\u00a0\u00a0 b")).toBe("a b");
  });

  it("takes the href attribute, not one whose name only ends in href", () => {
    expect(htmlToText('<a xhref="https://no.example" href="https://yes.example">l</a>')).toBe("l (https://yes.example)");
  });
});

describe("the template in a request", () => {
  it("takes no variables as none, and refuses a name that is no template name", () => {
    expect(validate(templateSchema, { id: "welcome" })).toEqual({ ok: true, value: { id: "welcome", variables: {} } });
    expect(validate(templateSchema, { id: "../Welcome", variables: {} })).toMatchObject({ ok: false, issues: [{ path: "id" }] });
  });

  it("takes no id in a render request's body: the name is the path's", () => {
    expect(validate(renderTemplateSchema, { variables: {} }).ok).toBe(true);
    expect(validate(renderTemplateSchema, { id: "alert", variables: {} }).ok).toBe(false);
  });
});

describe("strict rendering follows mustache.js's own lookup", () => {
  const problemsFor = (html: string, data: Record<string, unknown>) => {
    const catalog = catalogOf({ "t/subject.mustache": "s", "t/html.mustache": html });
    return variableProblems(catalog, chooseVariant(catalog.templates.get("t")!), data);
  };
  // Each of these renders a blank or "[object Object]"; each was once let through.
  it.each([
    ["{{.}} inside a section over true (Mustache pushes nothing: {{.}} is the data)", "{{#flag}}{{.}}{{/flag}}", { flag: true }, [{ name: ".", problem: "not_text" }]],
    ["a plain name inside a string's section (a string's own length does not count)", "{{#name}}{{length}}{{/name}}", { name: "Ada" }, [{ name: "length", problem: "missing" }]],
    ["an index inside a string item's section", "{{#tags}}{{0}}{{/tags}}", { tags: ["ab"] }, [{ name: "tags[].0", problem: "missing" }]],
    ["an inherited member of the section's object, over the data's own value", "{{#o}}{{constructor}}{{/o}}", { o: {}, constructor: "given" }, [{ name: "o.constructor", problem: "missing" }]],
  ])("%s", (_label, html, data, problems) => {
    expect(problemsFor(html, data)).toEqual(problems);
  });

  it("still takes a dotted name through a primitive, and a string section's names from around it", () => {
    expect(problemsFor("{{name.length}}{{#name}}{{name}} {{other}}{{/name}}", { name: "Ada", other: "x" })).toEqual([]);
  });
});

describe("HTML as text: a link's label and address are decoded once", () => {
  it("keeps a value's literal <tag> and &amp; in a link as they were given", () => {
    const variant = shipped.templates.get("password-reset")!.variants.get("")!;
    const result = render(shipped, "password-reset", { ...variant.sample, button_label: "Reset <now> &amp; go", button_url: "https://acme.example/r?t=&lt;x&gt;" });
    expect(result.ok && result.value.text.split("\n")).toContain("Reset <now> &amp; go (https://acme.example/r?t=&lt;x&gt;)");
  });
});

describe("HTML as text, from a mutation pass", () => {
  it("drops a tag only where it starts: a '<' before another '<' stays", () => {
    expect(htmlToText("1 <<b>x</b>")).toBe("1 <x");
  });

  it("decodes the highest code point and hexadecimal references written with X", () => {
    expect(htmlToText("&#x10FFFF;|&#X41;")).toBe("\u{10FFFF}|A");
  });

  it("gives a link whose label is its address, encoded in one and not the other, once", () => {
    expect(htmlToText('<a href="https://x.example/?a=1&b=2">https://x.example/?a=1&amp;b=2</a>')).toBe("https://x.example/?a=1&b=2");
  });

});

describe("templates, from a mutation pass", () => {
  it("lists variables of partials nine deep below the html (as deep as the templates may go)", () => {
    const files: Record<string, string> = { "t/subject.mustache": "s", "t/html.mustache": "{{> p1}}" };
    for (let i = 1; i <= 9; i++) files[`partials/p${i}.mustache`] = i < 9 ? `{{v${i}}}{{> p${i + 1}}}` : `{{v${i}}}`;
    const catalog = catalogOf(files);
    expect(templateVariables(catalog, chooseVariant(catalog.templates.get("t")!))).toEqual(["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"]);
  });

  it("renders HTML of exactly maxHtmlChars (and derives its text); one character more stops rendering", () => {
    const catalog = catalogOf({ "t/subject.mustache": "s", "t/html.mustache": "<p>{{v}}</p>" });
    const variant = chooseVariant(catalog.templates.get("t")!);
    expect(renderVariant(catalog, variant, { v: "abc" }, { maxHtmlChars: 10 }).text).toBe("abc");
    expect(() => renderVariant(catalog, variant, { v: "abcd" }, { maxHtmlChars: 10 })).toThrow(new RenderTooLong("html", 10));
  });

  it("stops a section as soon as the output passes the limit: the rest of its items are never read", () => {
    const catalog = catalogOf({ "t/subject.mustache": "{{#rows}}{{s}}{{/rows}}", "t/html.mustache": "{{#rows}}<li>{{label}}</li>{{/rows}}", "t/text.mustache": "{{#rows}}{{label}}{{/rows}}" });
    const variant = chooseVariant(catalog.templates.get("t")!);
    let read = 0;
    const rows = Array.from({ length: 100_000 }, () => ({ s: "", get label() {
      read++;
      return "x";
    } }));
    expect(() => renderVariant(catalog, variant, { rows }, { maxHtmlChars: 1000 })).toThrow(new RenderTooLong("html", 1000));
    expect(read).toBeLessThan(200); // about 1000 / 10 characters an item
    expect(() => renderVariant(catalog, variant, { rows: rows.slice(0, 50) }, { maxHtmlChars: 1000, maxTextChars: 20 })).toThrow(new RenderTooLong("text", 20));
    expect(() => renderVariant(catalog, variant, { rows: [{ s: "long subject", label: "x" }] }, { maxSubjectChars: 5 })).toThrow(new RenderTooLong("subject", 5));
  });
});

describe("bugs found by a second reader", () => {
  it("derives text from a page whose </head> is left out, as HTML allows (it was all dropped, and every send refused)", () => {
    expect(htmlToText('<html><head><meta charset="utf-8"><title>T</title><body><p>Hello</p></body></html>')).toBe("Hello");
    const catalog = catalogOf({ "layout.html.mustache": "<html><head><meta charset=utf-8><body>{{> content}}</body></html>", "t/subject.mustache": "s", "t/html.mustache": "<p>Hi {{who}}</p>" });
    expect(render(catalog, "t", { who: "Ada" })).toMatchObject({ ok: true, value: { text: "Hi Ada" } });
  });

  it("keeps the address of a link after an anchor without href or </a>, and takes only the href attribute itself", () => {
    expect(htmlToText('<a name="top"><a href="https://x.example">go</a>')).toBe("go (https://x.example)");
    expect(htmlToText('<a data-href="https://no.example" href="https://yes.example">l</a>')).toBe("l (https://yes.example)");
    expect(htmlToText('<a title="href=\'https://no.example\'" href="https://yes.example">l</a>')).toBe("l (https://yes.example)");
    expect(htmlToText("<a href=https://bare.example>go</a>")).toBe("go (https://bare.example)");
  });

  it("names a partial called like an Object member as unknown (it failed with 'this.tail.search is not a function')", () => {
    expect(() => readCatalog({ "t/subject.mustache": "s", "t/html.mustache": "{{> toString}}" }, {})).toThrow(/no partial named "toString"/);
    expect(() => readCatalog({ "t/subject.mustache": "s", "t/html.mustache": "h", "t/text.mustache": "{{> constructor}}" }, {})).toThrow(/no partial named "constructor"/);
  });
});
