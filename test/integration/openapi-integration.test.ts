// /openapi.json and /docs: the document covers every route the app serves — method, path, request and
// answer schemas — and nothing it does not serve, so it cannot drift from the code; the page renders it.
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/app";
import { OPERATIONS } from "../../src/http/openapi";
import { api } from "../helpers/api";

type Doc = { openapi: string; paths: Record<string, Record<string, { requestBody?: any; responses: Record<string, any>; security?: unknown[] }>> };

/** The routes the app answers: [METHOD, /path/{param}], without middleware. */
function servedRoutes(): string[] {
  const routes = createApp()
    .routes.filter((r) => r.method !== "ALL")
    .map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, "{$1}")}`);
  return [...new Set(routes)].sort(); // a route with its own middleware is listed once per handler
}

describe("the OpenAPI document", () => {
  it("is served without a key, as OpenAPI 3.1", async () => {
    const res = await api("/openapi.json", { key: null });
    expect(res.status).toBe(200);
    expect((await res.json<Doc>()).openapi).toBe("3.1.0");
  });

  it("has exactly the routes the app serves", async () => {
    const doc = await (await api("/openapi.json")).json<Doc>();
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`))
      .sort();
    expect(servedRoutes().length).toBeGreaterThan(8);
    expect(documented).toEqual(servedRoutes());
  });

  it("gives every operation its answer's schema and every error, and every request that takes a body its schema", async () => {
    const doc = await (await api("/openapi.json")).json<Doc>();
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const success = Object.entries(op.responses).filter(([status]) => status.startsWith("2"));
        expect(success, `${method} ${path}`).toHaveLength(1);
        const [[, answer]] = success as [[string, any]];
        expect(Object.values(answer.content)[0], `${method} ${path}`).toHaveProperty("schema");
        expect(op.responses["500"], `${method} ${path}`).toBeDefined();
        const takesBody = (method === "post" || method === "patch") && !/\/(cancel|rotate|replay)$/.test(path);
        expect(op.requestBody?.content["application/json"].schema, `${method} ${path}`)[takesBody ? "toBeDefined" : "toBeUndefined"]();
      }
    }
  });

  it("describes requests as the handlers validate them: POST /v1/emails's fields and limits", async () => {
    const doc = await (await api("/openapi.json")).json<Doc>();
    const schema = doc.paths["/v1/emails"]!.post!.requestBody.content["application/json"].schema;
    expect(Object.keys(schema.properties).sort()).toEqual(
      ["attachments", "bcc", "cc", "from", "headers", "html", "reply_to", "scheduled_at", "subject", "tags", "template", "text", "to"].sort(),
    );
    expect(schema.additionalProperties).toBe(false);
    expect(schema.properties.subject).toMatchObject({ maxLength: 998 });
    expect(schema.properties.attachments).toMatchObject({ maxItems: 10 });
    const batch = doc.paths["/v1/emails/batch"]!.post!.requestBody.content["application/json"].schema;
    expect(batch).toMatchObject({ type: "array", minItems: 1, maxItems: 100 });
    const view = doc.paths["/v1/emails/{id}"]!.get!.responses["200"].content["application/json"].schema;
    expect(view.required).toEqual(expect.arrayContaining(["id", "status", "template", "recipients", "events"]));
  });

  it("lists sending first and the operational routes last", async () => {
    const doc = await (await api("/openapi.json")).json<Doc>();
    const paths = Object.keys(doc.paths);
    expect(paths.slice(0, 2)).toEqual(["/v1/emails", "/v1/emails/batch"]);
    expect(paths.slice(-5)).toEqual(["/preview", "/preview/{name}", "/healthz", "/openapi.json", "/docs"]);
  });

  it("gives every request body an example that the route's own schema accepts", async () => {
    const doc = await (await api("/openapi.json")).json<Doc>();
    const byRoute = new Map(OPERATIONS.map((op) => [`${op.method} ${op.path.replace(/:(\w+)/g, "{$1}")}`, op]));
    let checked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (!op.requestBody) continue;
        const example = op.requestBody.content["application/json"].example;
        expect(example, `${method} ${path}`).toBeDefined();
        const parsed = byRoute.get(`${method} ${path}`)!.request!.safeParse(example);
        expect(parsed.success, `${method} ${path}: ${JSON.stringify(parsed.error?.issues)}`).toBe(true);
        checked++;
      }
    }
    expect(checked).toBe(10);
  });

  it("is readable at /docs", async () => {
    const res = await api("/docs", { key: null });
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toMatch(/^text\/html/);
    expect(await res.text()).toContain('fetch("/openapi.json")');
  });
});

describe("the OpenAPI document, from a mutation pass", () => {
  const operations = async () => {
    const doc = await (await api("/openapi.json")).json<Doc & { components: { schemas: Record<string, any> } }>();
    return { doc, ops: Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ path, method, op: op as any }))) };
  };

  it("marks exactly the open routes as needing no key, and gives every other a 401", async () => {
    const { ops } = await operations();
    const open = ops.filter(({ op }) => Array.isArray(op.security) && op.security.length === 0).map(({ method, path }) => `${method} ${path}`);
    expect(open.sort()).toEqual(["get /docs", "get /healthz", "get /openapi.json", "get /preview", "get /preview/{name}"]);
    for (const { method, path, op } of ops) if (!open.includes(`${method} ${path}`)) expect(op.responses, `${method} ${path}`).toHaveProperty("401");
  });

  it("takes an Idempotency-Key header on the sending routes only, and path parameters in the path", async () => {
    const { ops } = await operations();
    const idempotent = ops.filter(({ op }) => (op.parameters ?? []).some((p: any) => p.in === "header" && p.name === "Idempotency-Key"));
    expect(idempotent.map(({ method, path }) => `${method} ${path}`).sort()).toEqual(["post /send-notification", "post /v1/emails", "post /v1/emails/batch"]);
    for (const { path, op } of ops) {
      const names = [...path.matchAll(/\{(\w+)\}/g)].map(([, name]) => name);
      expect((op.parameters ?? []).filter((p: any) => p.in === "path").map((p: any) => ({ name: p.name, required: p.required }))).toEqual(names.map((name) => ({ name, required: true })));
      if (op.requestBody) expect(op.requestBody.required, path).toBe(true);
    }
  });

  it("defines the Error every error answer refers to, and describes the accepted status", async () => {
    const { doc } = await operations();
    expect(doc.components.schemas.Error.required).toEqual(expect.arrayContaining(["statusCode", "name", "message", "error"]));
    const accepted = doc.paths["/v1/emails"]!.post!.responses["202"].content["application/json"].schema;
    expect(accepted.properties.status).toMatchObject({ enum: ["queued", "scheduled"] });
  });
});
