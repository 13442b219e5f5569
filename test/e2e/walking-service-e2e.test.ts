// The walking skeleton end to end, as `npm start` runs it: a real `wrangler dev` (workerd, local D1 and Queues)
// driven over real HTTP, delivering over real SMTP into an inbox. State lives in a temp dir, not .wrangler/.
import { randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWranglerDev, type WranglerDev } from "../../scripts/wrangler-dev.mjs";
import { callApi, createStack, type Stack } from "../helpers/e2e-stack";

let stack: Stack;
let wrangler: WranglerDev | undefined;
let inbox: Stack["inbox"];

beforeAll(async () => {
  stack = await createStack();
  inbox = stack.inbox;
  wrangler = await startWranglerDev(stack.options);
});

afterAll(async () => {
  await wrangler?.stop();
  await stack?.close();
});

const api = (pathname: string, init?: RequestInit & { key?: string | null }) => callApi(wrangler!.url, stack.apiKey, pathname, init);

async function waitForStatus(id: string, wanted: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const body = (await (await api(`/v1/emails/${id}`)).json()) as Record<string, unknown>;
    if (body.status === wanted) return body;
    if (Date.now() > deadline) throw new Error(`email ${id} is still ${JSON.stringify(body.status)}, not ${wanted}:\n${wrangler!.output()}`);
    await delay(100);
  }
}

describe("wrangler dev, end to end", () => {
  it("accepts a mail over HTTP, delivers it over SMTP and reports it sent", async () => {
    const to = `e2e-${randomUUID().slice(0, 8)}@example.com`;
    const mail = { to, subject: `Hello ${randomUUID().slice(0, 8)}`, text: "Delivered by a real wrangler dev." };

    const res = await api("/v1/emails", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(mail) });
    expect(res.status).toBe(202);
    const accepted = (await res.json()) as { id: string; status: string };
    expect(accepted).toEqual({ id: expect.any(String), status: "queued" });
    expect(res.headers.get("Location")).toBe(`/v1/emails/${accepted.id}`);

    const sent = await waitForStatus(accepted.id, "sent");
    expect(sent).toMatchObject({ id: accepted.id, subject: mail.subject, attempts: 1, last_error: null });
    expect((sent.events as { type: string }[]).map((e) => e.type)).toEqual(["accepted", "sent"]);

    const received = inbox.messages.filter((m) => m.envelope.to.includes(to));
    expect(received).toHaveLength(1);
    expect(received[0]!.envelope).toMatchObject({ from: "noreply@mailroom.test", to: [to] });
    expect(received[0]!.subject).toBe(mail.subject);
    expect(received[0]!.from).toMatch(/^"?Mailroom E2E"? <noreply@mailroom\.test>$/); // the parser may quote the name
    expect(received[0]!.text.trimEnd()).toBe(mail.text);
  });

  it("takes the classic FastAPI request at POST /send-notification and delivers it the same durable way", async () => {
    const recipient = `classic-${randomUUID().slice(0, 8)}@example.com`;
    const res = await api("/send-notification", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ recipient, subject: "新用户注册通知", content: "Welcome aboard, Jane!" }),
    });
    expect(res.status).toBe(202);
    const accepted = (await res.json()) as { message: string; id: string };
    expect(accepted).toEqual({ message: "Notification accepted for delivery", id: expect.any(String) });
    await waitForStatus(accepted.id, "sent");
    const [mail, ...more] = inbox.messages.filter((m) => m.envelope.to.includes(recipient));
    expect(more).toHaveLength(0);
    expect(mail!.subject).toBe("新用户注册通知");
    expect(mail!.text.trimEnd()).toBe("Welcome aboard, Jane!");
    const withoutKey = await api("/send-notification", { method: "POST", key: null, headers: { "Content-Type": "application/json" }, body: JSON.stringify({ recipient, subject: "x", content: "y" }) });
    expect(withoutKey.status).toBe(401);
  });

  it("answers a body that is not JSON with 400 invalid_json", async () => {
    const res = await api("/v1/emails", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{not json" });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: { code: "invalid_json" } });
  });

  it("answers a request without an API key with 401 unauthorized", async () => {
    const res = await api("/v1/emails", { method: "POST", key: null, headers: { "Content-Type": "application/json" }, body: "{}" });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ error: { code: "unauthorized" } });
  });
});
