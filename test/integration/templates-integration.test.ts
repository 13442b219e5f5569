// Templates through the real API, queue and SMTP server: the list, rendering without sending, and
// templated sends — delivered with the rendered subject and both parts, shown in GET with the template and
// locale used; a missing variable, an unknown template, a template with html, or a rendered subject with a
// line break is a 422 that stores, queues and sends nothing.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { sampleFiles } from "../../src/templates/files.generated";
import { api, fetchWorker, messageRowsFor, postCounted, uniqueRecipient, waitForMail } from "../helpers/api";

const welcome = { user_name: "Ada <Lovelace>", email: "ada@example.com", product_name: "Acme", button_url: "https://acme.example/start", button_label: "Get started" };

describe("GET /v1/templates", () => {
  it("lists every template with its locales and the variables it uses", async () => {
    const res = await api("/v1/templates");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      data: [
        { name: "alert", locales: [], variables: ["button_label", "button_url", "details", "service", "severity", "started_at", "summary"] },
        { name: "password-reset", locales: [], variables: ["button_label", "button_url", "expires_in_minutes", "product_name", "user_name"] },
        { name: "welcome", locales: ["zh"], variables: ["button_label", "button_url", "email", "product_name", "user_name"] },
      ],
    });
  });

  it("lists what rendering needs: each template renders with exactly its listed variables, in every locale, and without any one of them answers 422 naming it", async () => {
    const { data } = await (await api("/v1/templates")).json<{ data: { name: string; locales: string[]; variables: string[] }[] }>();
    for (const { name, locales, variables } of data) {
      for (const locale of [undefined, ...locales]) {
        const sample = sampleFiles[`${name}/${locale ? `${locale}/` : ""}sample.json`] as Record<string, unknown>;
        const listed = Object.fromEntries(variables.map((v) => [v, sample[v]]));
        const rendered = await api(`/v1/templates/${name}/render`, { method: "POST", json: { variables: listed, locale } });
        expect(rendered.status, `${name} ${locale ?? "default"}`).toBe(200);
        for (const left of variables) {
          const { [left]: _, ...rest } = listed;
          const res = await api(`/v1/templates/${name}/render`, { method: "POST", json: { variables: rest, locale } });
          expect(res.status, `${name} ${locale ?? "default"} without ${left}`).toBe(422);
          const body = await res.json<{ error: { issues: { path: string }[] } }>();
          expect(body.error.issues.map((i) => i.path)).toContain(`variables.${left}`);
        }
      }
    }
  });

  it("needs an API key", async () => {
    expect((await api("/v1/templates", { key: null })).status).toBe(401);
    expect((await api("/v1/templates/welcome/render", { method: "POST", key: null, json: { variables: welcome } })).status).toBe(401);
  });
});

describe("POST /v1/templates/{name}/render", () => {
  it("renders subject, html and text without sending anything", async () => {
    const res = await api("/v1/templates/welcome/render", { method: "POST", json: { variables: welcome } });
    expect(res.status).toBe(200);
    const body = await res.json<{ subject: string; html: string; text: string; locale: string | null }>();
    expect(body.subject).toBe("Welcome to Acme, Ada <Lovelace>!");
    expect(body.html).toContain("Welcome, Ada &lt;Lovelace&gt;!");
    expect(body.text).toContain("Welcome, Ada <Lovelace>!");
    expect(body.text).toContain("Get started: https://acme.example/start");
    expect(body.locale).toBeNull();
  });

  it("picks the locale variant, falling back from zh-CN to zh and from fr to the default", async () => {
    const zh = await (await api("/v1/templates/welcome/render", { method: "POST", json: { variables: welcome, locale: "zh-CN" } })).json<Record<string, string>>();
    expect(zh.locale).toBe("zh");
    expect(zh.subject).toBe("新用户注册通知：欢迎加入Acme，Ada <Lovelace>！");
    const fr = await (await api("/v1/templates/welcome/render", { method: "POST", json: { variables: welcome, locale: "fr" } })).json<Record<string, string>>();
    expect(fr.locale).toBeNull();
  });

  it("answers 422 naming every missing variable", async () => {
    const res = await api("/v1/templates/welcome/render", { method: "POST", json: { variables: { user_name: "Ada" } } });
    expect(res.status).toBe(422);
    const body = await res.json<{ error: { issues: { path: string }[] } }>();
    expect(body.error.issues.map((i) => i.path)).toEqual(["variables.button_url", "variables.email", "variables.product_name"]);
  });

  it("answers 404 for an unknown template and 422 for a body that is not a render request", async () => {
    expect((await api("/v1/templates/nope/render", { method: "POST", json: { variables: {} } })).status).toBe(404);
    const bad = await api("/v1/templates/welcome/render", { method: "POST", json: { variables: "x", locale: "not a locale", extra: 1 } });
    expect(bad.status).toBe(422);
    const body = await bad.json<{ error: { issues: { path: string }[] } }>();
    expect(body.error.issues.map((i) => i.path).sort()).toEqual(["(body)", "locale", "variables"]);
  });
});

describe("POST /v1/emails with a template", () => {
  it("delivers the rendered subject, HTML and text, and GET shows the template and locale used", async () => {
    const to = uniqueRecipient("templated");
    const { res, body } = await postCounted(JSON.stringify({ to, template: { id: "welcome", variables: welcome, locale: "zh-CN" } }));
    expect(res.status).toBe(202);
    const [mail] = await waitForMail(to);
    expect(mail!.subject).toBe("新用户注册通知：欢迎加入Acme，Ada <Lovelace>！");
    expect(mail!.html).toContain("欢迎，Ada &lt;Lovelace&gt;！");
    expect(mail!.text).toContain("您的Acme账户（ada@example.com）已创建成功。");
    const got = await (await api(`/v1/emails/${body.id}`)).json<Record<string, unknown>>();
    expect(got).toMatchObject({ subject: "新用户注册通知：欢迎加入Acme，Ada <Lovelace>！", template: { id: "welcome", locale: "zh" } });
  });

  it("takes the request's subject over the template's; a message sent without a template shows template null", async () => {
    const to = uniqueRecipient("tplsubject");
    const { res } = await postCounted(JSON.stringify({ to, subject: "Your own subject", template: { id: "welcome", variables: welcome } }));
    expect(res.status).toBe(202);
    const [mail] = await waitForMail(to);
    expect(mail!.subject).toBe("Your own subject");
    expect(mail!.text).toContain("Welcome, Ada <Lovelace>!");
    const plainTo = uniqueRecipient("notpl");
    const plain = await postCounted(JSON.stringify({ to: plainTo, subject: "x", text: "y" }));
    expect((await (await api(`/v1/emails/${plain.body.id}`)).json<Record<string, unknown>>()).template).toBeNull();
    await waitForMail(plainTo); // its delivery ends within this test
  });

  it.each([
    ["a missing variable", { template: { id: "welcome", variables: { user_name: "Ada" } } }, ["template.variables.button_url", "template.variables.email", "template.variables.product_name"]],
    ["an unknown template", { template: { id: "nope", variables: {} } }, ["template.id"]],
    ["a template and html", { template: { id: "welcome", variables: welcome }, html: "<p>x</p>" }, ["template"]],
    ["a rendered subject with a line break", { template: { id: "welcome", variables: { ...welcome, user_name: "Ada\r\nBcc: victim@example.com" } } }, ["template.variables"]],
    ["neither a subject nor a template", { text: "x" }, ["subject"]],
  ])("refuses %s: 422 naming the fields, nothing stored, queued or sent", async (_name, fields, paths) => {
    const to = uniqueRecipient("badtpl");
    const { res, body, enqueued } = await postCounted(JSON.stringify({ to, ...fields }));
    expect(res.status).toBe(422);
    expect(body.error.issues.map((i: { path: string }) => i.path)).toEqual(paths);
    expect(enqueued).toBe(0);
    expect(await messageRowsFor(to)).toBe(0);
  });
});

describe("the preview pages", () => {
  const development = { ENVIRONMENT: "development" } as Partial<Env>;
  const get = (path: string, environment: Partial<Env> = {}) => fetchWorker(new Request(`https://mailroom.test${path}`), { ...env, ...environment } as Env);

  it("are not served unless ENVIRONMENT is development", async () => {
    const production = { ENVIRONMENT: "production", RETRY_BASE_DELAY_SECONDS: "30", WEBHOOK_RETRY_DELAYS_SECONDS: "5" } as Partial<Env>;
    expect((await get("/preview/welcome", production)).status).toBe(404);
    expect((await get("/preview", production)).status).toBe(404);
  });

  it("show each locale's subject, HTML and text, rendered with the sample data", async () => {
    const res = await get("/preview/welcome", development);
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).toContain('data-locale="default"');
    expect(html).toContain('data-locale="zh"');
    expect(html).toContain("Welcome to Acme, Ada Lovelace!");
    expect(html).toContain("新用户注册通知：欢迎加入Acme，张伟！");
    expect(html).toMatch(/<iframe title="HTML" sandbox srcdoc="/); // no script of a template runs in the page
    expect((await get("/preview/nope", development)).status).toBe(404);
    expect(await (await get("/preview", development)).text()).toContain('href="/preview/password-reset"');
  });
});
