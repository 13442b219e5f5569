// Edges of the pure webhook parts the main unit tests leave open (found by a mutation-testing pass): the
// whole of each blocked range and no more, names kept for local networks, single-label hosts, the length
// limit, Retry-After dates between whole seconds, how new events are put on the queue, and a DATA refusal
// as a bounce (what email.bounced reports).
import { describe, expect, it } from "vitest";
import { classifyAttempt } from "../../src/core/outcome";
import { checkEndpoint, MAX_ENDPOINT_LENGTH } from "../../src/core/webhook-endpoint";
import { retryAfterSeconds } from "../../src/core/webhook-retry";
import { enqueueWebhookEvents, type WebhookJob } from "../../src/delivery/webhooks";
import type { SmtpTransaction } from "../../src/transport/transport";
import { createLogger } from "../../src/log";

const production = { development: false };
const development = { development: true };

describe("webhook endpoints, at the edges of their ranges", () => {
  it("refuse the whole of benchmarking 198.18.0.0/15, and allow the first address after it", () => {
    for (const url of ["https://198.18.0.1/", "https://198.19.0.1/", "https://198.19.255.254/"]) expect(checkEndpoint(url, production), url).toMatchObject({ ok: false });
    expect(checkEndpoint("https://198.20.0.1/", production)).toMatchObject({ ok: true });
  });

  it("refuse 2001::/23 and no more: 2001:200:: is public", () => {
    expect(checkEndpoint("https://[2001:1ff:ffff::1]/", production)).toMatchObject({ ok: false });
    expect(checkEndpoint("https://[2001:200::1]/", production)).toMatchObject({ ok: true });
  });

  it("allow IPv4 loopback in the mapped IPv6 form in development only", () => {
    expect(checkEndpoint("https://[::ffff:127.0.0.1]:8025/", development)).toMatchObject({ ok: true });
    expect(checkEndpoint("https://[::ffff:127.0.0.1]:8025/", production)).toMatchObject({ ok: false });
    expect(checkEndpoint("https://[::ffff:10.0.0.1]/", development)).toMatchObject({ ok: false });
  });

  it("refuse every name kept for local networks, .lan included, but not a public name that merely ends in the same letters", () => {
    for (const url of ["https://printer.lan/", "https://nas.office.lan/", "https://wiki.intranet/"]) expect(checkEndpoint(url, production), url).toMatchObject({ ok: false });
    for (const url of ["https://hooks.global/x", "https://hooks.example.milan/x"]) expect(checkEndpoint(url, production), url).toMatchObject({ ok: true });
  });

  it("refuse a single-label host name that is not a local name", () => {
    expect(checkEndpoint("https://printer/", production)).toEqual({ ok: false, message: "must be at a public host name (with a dot)" });
    expect(checkEndpoint("http://receiver:8025/", development)).toEqual({ ok: false, message: "must be at a public host name (with a dot)" });
  });

  it("allow a URL of exactly the maximum length, and refuse one character more", () => {
    const base = "https://hooks.example.com/";
    const exact = base + "a".repeat(MAX_ENDPOINT_LENGTH - base.length);
    expect(exact).toHaveLength(MAX_ENDPOINT_LENGTH);
    expect(checkEndpoint(exact, production)).toMatchObject({ ok: true });
    expect(checkEndpoint(`${exact}a`, production)).toEqual({ ok: false, message: `must be at most ${MAX_ENDPOINT_LENGTH} characters` });
  });
});

describe("Retry-After as an HTTP date", () => {
  it("waits at least until the date: a part of a second left counts as a whole one", () => {
    const now = Date.parse("2026-12-02T12:00:00.500Z");
    expect(retryAfterSeconds("Wed, 02 Dec 2026 12:01:00 GMT", now)).toBe(60);
    expect(retryAfterSeconds("Wed, 02 Dec 2026 12:00:01 GMT", now)).toBe(1);
  });
});

describe("enqueueWebhookEvents", () => {
  it("puts every event on the queue, in batches of at most 100, each delayed until it is due", async () => {
    const batches: MessageSendRequest<WebhookJob>[][] = [];
    const queue = { sendBatch: async (messages: Iterable<MessageSendRequest<WebhookJob>>) => void batches.push([...messages]) } as unknown as Queue<WebhookJob>;
    const now = Date.now();
    const events = Array.from({ length: 250 }, (_, i) => ({ id: `e${i}`, dueAt: new Date(now - 1000).toISOString() }));
    events[249] = { id: "e249", dueAt: new Date(now + 60_000).toISOString() };
    await enqueueWebhookEvents(queue, events, createLogger({}));
    expect(batches.map((b) => b.length)).toEqual([100, 100, 50]);
    expect(batches.flat().map((m) => m.body.id)).toEqual(events.map((e) => e.id));
    expect(batches[0]![0]).toMatchObject({ contentType: "json", delaySeconds: 0 });
    expect(batches[2]![49]!.delaySeconds).toBeGreaterThanOrEqual(59);
  });
});

describe("a permanent refusal of the DATA command", () => {
  it("bounces every recipient the relay had accepted, with the reply's enhanced code", () => {
    const now = new Date("2026-11-30T12:00:00.000Z");
    const transaction: SmtpTransaction = {
      recipients: ["a@x.test", "b@x.test"].map((recipient) => ({ recipient, code: 250, reply: "ok", command: `RCPT TO:<${recipient}>` })),
      end: { ok: false, failure: { kind: "reply", stage: "data", command: "DATA", code: 554, enhanced_code: "5.7.1", message: "DATA answered 554 5.7.1 rejected by policy" } },
    };
    const context = { attempt: 1, now, windowEndsAt: new Date(now.getTime() + 3600_000), policy: { baseDelaySeconds: 30, maxDelaySeconds: 3600, windowSeconds: 72 * 3600 }, attempted: ["a@x.test", "b@x.test"], sentBefore: false };
    const outcome = classifyAttempt(transaction, context);
    expect(outcome).toMatchObject({ kind: "failed", code: 554, reason: "DATA answered 554 5.7.1 rejected by policy" });
    expect(outcome.recipients.map((r) => [r.address, r.status, r.enhancedCode])).toEqual([
      ["a@x.test", "bounced", "5.7.1"],
      ["b@x.test", "bounced", "5.7.1"],
    ]);
  });
});
