// Calls the real worker's fetch handler the way a client would, plus small readers for the results.
import { env, exports } from "cloudflare:workers";
import { inject, vi } from "vitest";
import type { InboxMessage, InboxStats } from "../../scripts/inbox.mjs";

export const API_KEY = "test-key";
/** Another client's key. */
export const OTHER_KEY = "other-key";
/** A key that may send only from mailroom.test and example.org. */
export const SCOPED_KEY = "scoped-key";
/** A key only the rate-limit test uses, so that it alone runs out. */
export const LIMITED_KEY = "limited-key";

export function api(path: string, init: RequestInit & { json?: unknown; key?: string | null } = {}): Promise<Response> {
  const { json, key = API_KEY, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (key !== null && !headers.has("Authorization")) headers.set("Authorization", `Bearer ${key}`);
  if (json !== undefined && !headers.has("Content-Type")) headers.set("Content-Type", "application/json");
  return exports.default.fetch(
    new Request(`https://mailroom.test${path}`, { ...rest, headers, body: json === undefined ? rest.body : JSON.stringify(json) }),
  );
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
