// Webhook helpers for the workerd tests: an endpoint of its own on the global setup's receiver for each
// test, scripting its answers, waiting for what it received, and registering it through the real API.
import { inject } from "vitest";
import type { ScriptedAnswer, WebhookDelivery } from "../../scripts/webhook-receiver.mjs";
import { api } from "./api";

const base = () => `http://127.0.0.1:${inject("smtp").webhookReceiver.port}/webhooks`;

/** A fresh endpoint on the receiver: its URL, and its name for the helpers below. */
export function newEndpoint(prefix = "hook"): { name: string; url: string } {
  const name = `${prefix}-${crypto.randomUUID()}`;
  return { name, url: `${base()}/${name}` };
}

/** The endpoint's next answers, in order (after them: 200). */
export async function scriptAnswers(name: string, answers: ScriptedAnswer[]): Promise<void> {
  const res = await fetch(`${base()}/${name}/script`, { method: "PUT", body: JSON.stringify(answers) });
  if (res.status !== 204) throw new Error(`scripting ${name} answered ${res.status}`);
}

/** What the endpoint has received, once it has at least `count` deliveries (or 10 s have passed). */
export async function receivedBy(name: string, count = 0, timeoutMs = 10_000): Promise<WebhookDelivery[]> {
  return (await fetch(`${base()}/${name}/received?count=${count}&timeoutMs=${timeoutMs}`)).json<WebhookDelivery[]>();
}

/** Registers a webhook through the API; its id and signing secret. */
export async function createWebhook(endpoint: string, events: string[], key?: string): Promise<{ id: string; signing_secret: string }> {
  const res = await api("/v1/webhooks", { method: "POST", json: { endpoint, events }, ...(key ? { key } : {}) });
  if (res.status !== 201) throw new Error(`creating a webhook answered ${res.status}: ${await res.text()}`);
  return res.json();
}
