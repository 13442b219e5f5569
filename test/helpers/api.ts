// Calls the real worker's fetch handler the way a client would, plus small readers for the results.
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { inject, vi } from "vitest";
import worker from "../../src/index";
import type { InboxMessage, InboxStats } from "../../scripts/inbox.mjs";

export const API_KEY = "test-key";
/** Another client's key. */
export const OTHER_KEY = "other-key";
/** A key that may send only from mailroom.test and example.org. */
export const SCOPED_KEY = "scoped-key";
/** A key only the rate-limit test uses, so that it alone runs out. */
export const LIMITED_KEY = "limited-key";
/** The webhook tests' key (its name in API_KEYS: "hooks"). */
export const HOOKS_KEY = "webhooks-key";

/**
 * One request to the Worker's fetch handler, in an execution context of its own. It returns once the work
 * the request deferred (its log line, through waitUntil) is done too, so nothing of one test runs on into
 * the next.
 */
export async function fetchWorker(request: Request, environment: Env = env): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(request, environment, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/** A client's request to the Worker: `json` as the body, `key` (null: none) as the Bearer key. */
export async function api(path: string, init: RequestInit & { json?: unknown; key?: string | null } = {}): Promise<Response> {
  const { json, key = API_KEY, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (key !== null && !headers.has("Authorization")) headers.set("Authorization", `Bearer ${key}`);
  if (json !== undefined && !headers.has("Content-Type")) headers.set("Content-Type", "application/json");
  return fetchWorker(new Request(`https://mailroom.test${path}`, { ...rest, headers, body: json === undefined ? rest.body : JSON.stringify(json) }));
}

/** A recipient nobody else uses, so tests sharing an inbox never see each other's mail. */
export function uniqueRecipient(prefix = "user"): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}@example.com`;
}

export async function inboxMessages(to: string, httpPort = inject("smtp").plain.httpPort): Promise<InboxMessage[]> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/api/messages?to=${encodeURIComponent(to)}`);
  return res.json();
}

export async function inboxStats(httpPort: number): Promise<InboxStats> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/api/stats`);
  return res.json();
}

/** How many message rows name this recipient (a unique one per test keeps this exact). */
export async function messageRowsFor(recipient: string): Promise<number> {
  const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM messages WHERE to_json LIKE ?").bind(`%${recipient}%`).first<{ n: number }>();
  return row!.n;
}

/** Captures the service's log lines (console.log) instead of printing them; call restore() after. */
export function captureLogs() {
  const lines: string[] = [];
  const spy = vi.spyOn(console, "log").mockImplementation((line: string) => void lines.push(line));
  return { lines, restore: () => spy.mockRestore() };
}

/**
 * POST /v1/emails (or another sending `path`) straight into the Worker's fetch handler, counting the jobs it queues (the real queue
 * binding, wrapped), so a test can show that a refused request queued nothing.
 */
export async function postCounted(
  body: string,
  { key = API_KEY, headers = {}, environment = {}, path = "/v1/emails" }: { key?: string; headers?: Record<string, string>; environment?: Partial<Env>; path?: string } = {},
) {
  let enqueued = 0;
  const outbox = {
    ...env.OUTBOX,
    send: (...args: Parameters<Queue["send"]>) => (enqueued++, env.OUTBOX.send(...args)),
    sendBatch: (...args: Parameters<Queue["sendBatch"]>) => ((enqueued += [...args[0]].length), env.OUTBOX.sendBatch(...args)),
  };
  const res = await fetchWorker(
    new Request(`https://mailroom.test${path}`, { method: "POST", headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json", ...headers }, body }),
    { ...env, OUTBOX: outbox, ...environment } as Env,
  );
  return { res, body: await res.json<Record<string, any>>(), enqueued };
}

/** The mails the inbox got for `to`, once there is at least one. */
export function waitForMail(to: string, httpPort?: number): Promise<InboxMessage[]> {
  return vi.waitFor(
    async () => {
      const mails = await inboxMessages(to, httpPort);
      if (mails.length === 0) throw new Error(`nothing for ${to} yet`);
      return mails;
    },
    { timeout: 10_000, interval: 50 },
  );
}
