// Webhook events survive a crash: `wrangler dev` is killed with SIGKILL after a mail's outcome (and so
// its events) was committed, while one endpoint has the event and another is still being POSTed to; the
// local queue lived in memory and is gone. After a restart the sweep finds the event that was never
// delivered once its attempt's claim has expired, and each endpoint ends with the event delivered exactly
// once (the same webhook-id); the one that had it already is not sent it again.
import { setTimeout as delay } from "node:timers/promises";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startWebhookReceiver, type WebhookReceiver } from "../../scripts/webhook-receiver.mjs";
import { startWranglerDev, type WranglerDev } from "../../scripts/wrangler-dev.mjs";
import { callApi, createStack, type Stack } from "../helpers/e2e-stack";

let stack: Stack;
let wrangler: WranglerDev | undefined;
let receiver: WebhookReceiver;

beforeAll(async () => {
  // development: the receiver is http:// on loopback. SWEEP_GRACE_SECONDS=0: the sweep takes what is overdue at once.
  stack = await createStack({ vars: { ENVIRONMENT: "development", SWEEP_GRACE_SECONDS: "0" } });
  receiver = await startWebhookReceiver();
});

afterAll(async () => {
  await wrangler?.stop();
  await receiver?.close();
  await stack?.close();
});

const api = (pathname: string, init: RequestInit = {}) =>
  callApi(wrangler!.url, stack.apiKey, pathname, { ...init, headers: { "Content-Type": "application/json", ...init.headers } });

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: timed out\n${wrangler?.output()}`);
    await delay(100);
  }
}

describe("webhook events across a crash of wrangler dev", () => {
  it("delivers an event exactly once per endpoint after a SIGKILL with one delivery in flight", { timeout: 120_000 }, async () => {
    wrangler = await startWranglerDev(stack.options);
    const endpoint = (name: string) => `http://127.0.0.1:${receiver.port}/webhooks/${name}`;
    const subscribe = async (name: string) => {
      const res = await api("/v1/webhooks", { method: "POST", body: JSON.stringify({ endpoint: endpoint(name), events: ["email.sent"] }) });
      expect(res.status).toBe(201);
      return ((await res.json()) as { id: string }).id;
    };
    const quick = await subscribe("quick");
    const hanging = await subscribe("hanging");
    // The hanging endpoint holds its first delivery without answering: that attempt is cut off by the kill.
    await fetch(`${endpoint("hanging")}/script`, { method: "PUT", body: JSON.stringify([{ status: 200, delayMs: 600_000 }]) });

    const res = await api("/v1/emails", { method: "POST", body: JSON.stringify({ to: `hooked-${randomUUID().slice(0, 8)}@example.com`, subject: "Across a crash", text: "x" }) });
    const { id } = (await res.json()) as { id: string };
    await until("the quick endpoint's delivery", () => (receiver.received("quick").length > 0 ? true : undefined));
    await until("the hanging endpoint's first delivery", () => (receiver.received("hanging").length > 0 ? true : undefined));

    await wrangler.kill();
    wrangler = await startWranglerDev({ ...stack.options, sweepEveryMs: 500 });

    // Once the killed attempt's claim (30 s) has expired, the sweep queues the event again.
    const [first, second] = await until("the redelivery", () => (receiver.received("hanging").length >= 2 ? receiver.received("hanging") : undefined));
    expect(second!.headers["webhook-id"]).toBe(first!.headers["webhook-id"]);
    expect(second!.body).toBe(first!.body);
    expect(JSON.parse(second!.body)).toMatchObject({ type: "email.sent", data: { email_id: id } });
    expect(second!.answered).toBe(200);

    // Both events are settled (nothing is left to deliver), each with one successful attempt on record.
    for (const [webhook, attempts] of [[quick, [200]], [hanging, [200]]] as const) {
      const events = await until(`${webhook}'s event settled`, async () => {
        const list = (await (await api(`/v1/webhooks/${webhook}/events`)).json()) as { data: { id: string; status: string }[] };
        return list.data.length === 1 && list.data[0]!.status === "success" ? list.data : undefined;
      });
      const recorded = (await (await api(`/v1/webhooks/${webhook}/events/${events[0]!.id}/attempts`)).json()) as { data: { http_status_code: number }[] };
      expect(recorded.data.map((a) => a.http_status_code)).toEqual(attempts);
    }
    expect(receiver.received("hanging")).toHaveLength(2);
    expect(receiver.received("quick")).toHaveLength(1);
    const email = (await (await api(`/v1/emails/${id}`)).json()) as { status: string; events: { type: string }[] };
    expect(email.status).toBe("sent");
    expect(stack.inbox.messages.filter((m) => m.subject === "Across a crash")).toHaveLength(1);
  });
});
