// A retry window, not a retry count: a relay that answers 451, or cannot be reached at all, for longer
// than every queue retry leaves the message retrying (through the dead-letter queue and back), and it is
// delivered exactly once when the relay recovers. Only a closed window fails a message. The outages run
// through the real local queue (maxRetries 2 in vitest.config.ts) against the switchable relay gate.
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, inject, it, vi } from "vitest";
import type { OutboxJob } from "../../src/delivery/outbox";
import { closeRetryWindow } from "../../src/store/attempts";
import { api, captureLogs, inboxMessages, uniqueRecipient } from "../helpers/api";
import { claimMessage, insertQueuedMessage, loadMessage, recordRetry, runQueue } from "../helpers/factories";

const gate = inject("smtp").gate;
type GateState = { mode: string; connections: Record<string, number> };
const setGate = async (mode: "open" | "tempfail" | "down"): Promise<GateState> => (await fetch(`http://127.0.0.1:${gate.controlPort}/gate/${mode}`)).json();

afterEach(() => setGate("open"));

type EmailView = { status: string; attempts: number; last_error: string | null; events: { type: string; attempt: number | null; smtp_code: number | null; detail: string | null }[] };
const view = async (id: string) => (await api(`/v1/emails/${id}`)).json<EmailView>();

async function waitFor(id: string, done: (e: EmailView) => boolean, what: string): Promise<EmailView> {
  return vi.waitFor(
    async () => {
      const email = await view(id);
      if (!done(email)) throw new Error(`still waiting for ${what}: ${email.status} after ${email.attempts} attempts`);
      return email;
    },
    { timeout: 15_000, interval: 20 },
  );
}

/** Three attempts use up the outbox's retries (maxRetries 2); a fifth came back through the dead-letter queue. */
const PAST_EVERY_QUEUE_RETRY = 5;

describe("retry window", () => {
  it.each([
    ["answers 451 to every MAIL FROM", "tempfail" as const, /MAIL FROM:<noreply@mailroom\.test> answered 451 4\.3\.0/],
    ["cannot be reached at all, as with a wrong SMTP_HOST", "down" as const, /connection closed by the server while waiting for the reply to \(greeting\)/],
  ])("keeps retrying past every queue retry while the relay %s, then delivers exactly once", async (_name, mode, error) => {
    await setGate(mode);
    const to = uniqueRecipient("outage");
    const res = await api("/v1/emails", { method: "POST", json: { to, subject: "During an outage", text: "still coming" } });
    expect(res.status).toBe(202);
    const { id } = await res.json<{ id: string }>();

    const during = await waitFor(id, (e) => e.attempts >= PAST_EVERY_QUEUE_RETRY, `${PAST_EVERY_QUEUE_RETRY} attempts`);
    expect(["retrying", "sending"]).toContain(during.status);
    expect(during.last_error).toMatch(error);
    expect(during.events.filter((e) => e.type === "failed")).toEqual([]);

    await setGate("open");
    const sent = await waitFor(id, (e) => e.status === "sent", "sent");
    expect(sent.events.filter((e) => e.type === "sent")).toHaveLength(1);
    expect(sent.last_error).toBeNull();
    expect(await inboxMessages(to)).toHaveLength(1);
  });

  it("fails a message whose transient failure comes after its window ended, naming the window and the last error", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("tempfail"), createdAt: new Date(Date.now() - 73 * 3600_000).toISOString() });
    const { result } = await runQueue("mailroom-outbox", [id]);
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("failed");
    expect(message.lastError).toMatch(/^retry window of 72 h ended after 1 attempt; last error: RCPT TO:<tempfail-.*> answered 451/);
    expect(events.map((e) => [e.type, e.smtpCode])).toEqual([["accepted", null], ["failed", 451]]);
  });

  it("fails, without sending, a message whose attempt died after its window ended, so attempts that always die cannot loop", async () => {
    const { id, to } = await insertQueuedMessage({ createdAt: new Date(Date.now() - 73 * 3600_000).toISOString() });
    await claimMessage(env.DB, id, { now: new Date(Date.now() - 20 * 60_000), leaseMs: 60_000 }); // it never came back
    await runQueue("mailroom-outbox", [id]);
    const { message, events, recipients } = await loadMessage(id);
    expect(message.status).toBe("failed");
    expect(message.lastError).toBe("retry window of 72 h ended after 2 attempts; last error: attempt 1 did not finish");
    expect(events.map((e) => e.type)).toEqual(["accepted", "interrupted", "failed"]);
    expect(recipients.map((r) => r.status)).toEqual(["failed"]);
    expect(await inboxMessages(to)).toHaveLength(0);
  });

  it("sets the last retry at the window's end rather than after it", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("tempfail"), createdAt: new Date(Date.now() - 72 * 3600_000 + 20_000).toISOString() });
    let retry: ReturnType<typeof vi.spyOn> | undefined;
    await runQueue("mailroom-outbox", [id], { RETRY_BASE_DELAY_SECONDS: "3600" }, (batch) => (retry = vi.spyOn(batch.messages[0]!, "retry")));
    const delay = (retry!.mock.calls[0]![0] as { delaySeconds: number }).delaySeconds;
    expect(delay).toBeGreaterThan(0);
    expect(delay).toBeLessThanOrEqual(20);
    const { message } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(Date.parse(message.nextAttemptAt) - Date.parse(message.createdAt)).toBeLessThanOrEqual(72 * 3600_000);
  });
});

/** A message that waited through one failed attempt, with `lastError`, due again at `nextAttemptAt`. */
async function retryingMessage(fields: { to?: string; createdAt?: string; nextAttemptAt: string }) {
  const created = await insertQueuedMessage({ to: fields.to, createdAt: fields.createdAt ?? new Date(Date.now() - 60_000).toISOString() });
  const claim = await claimMessage(env.DB, created.id, { now: new Date(Date.now() - 30_000), leaseMs: 10_000 });
  if (claim.kind !== "claimed") throw new Error(`could not claim: ${claim.kind}`);
  const reason = "RCPT TO answered 451 4.2.1 mailbox busy";
  await recordRetry(env.DB, { id: created.id, recipients: [], attempt: 1, at: new Date(Date.now() - 29_000).toISOString(), smtpCode: 451, reason, nextAttemptAt: fields.nextAttemptAt });
  return created;
}

describe("dead-letter queue", () => {
  it("puts a message whose window is open back on the outbox, where the real consumer delivers it", async () => {
    const { id, to } = await retryingMessage({ nextAttemptAt: new Date().toISOString() });
    const { result } = await runQueue("mailroom-dead-letter", [id]);
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    // Nobody delivers this id but the real outbox consumer, from the job the dead-letter consumer sent.
    const sent = await waitFor(id, (e) => e.status === "sent", "sent");
    expect(sent.attempts).toBe(2);
    expect(await inboxMessages(to)).toHaveLength(1);
  });

  it("puts the job back for the message's next due time, not at once", async () => {
    const { id } = await retryingMessage({ nextAttemptAt: new Date(Date.now() + 600_000).toISOString() });
    const send = vi.spyOn(env.OUTBOX, "send");
    try {
      await runQueue("mailroom-dead-letter", [id]);
      const [[job, options]] = send.mock.calls as unknown as [[OutboxJob, QueueSendOptions]];
      expect(job).toEqual({ id });
      expect(options.delaySeconds).toBeGreaterThan(590);
      expect(options.delaySeconds).toBeLessThanOrEqual(600);
    } finally {
      send.mockRestore();
    }
    expect((await loadMessage(id)).message.status).toBe("retrying");
  });

  it("fails a waiting message whose window has ended, with the attempts and the last error", async () => {
    const { id } = await retryingMessage({ createdAt: new Date(Date.now() - 73 * 3600_000).toISOString(), nextAttemptAt: new Date().toISOString() });
    const { result } = await runQueue("mailroom-dead-letter", [id]);
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("failed");
    expect(message.lastError).toBe("retry window of 72 h ended after 1 attempt; last error: RCPT TO answered 451 4.2.1 mailbox busy");
    expect(events.map((e) => e.type)).toEqual(["accepted", "deferred", "failed"]);
  });

  it("settles a message an earlier attempt delivered to someone as sent when its window ends, failing only who still waited, once", async () => {
    const [good, full] = [uniqueRecipient("good"), uniqueRecipient("toomany")];
    const { id } = await insertQueuedMessage({ to: [good, full], createdAt: new Date(Date.now() - 60_000).toISOString() });
    await runQueue("mailroom-outbox", [id]); // good: 250; full: 552, retried on its own
    expect((await loadMessage(id)).message.status).toBe("retrying");
    await env.DB.prepare("UPDATE messages SET created_at = ? WHERE id = ?").bind(new Date(Date.now() - 73 * 3600_000).toISOString(), id).run();

    const { result } = await runQueue("mailroom-dead-letter", [id]);
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    const closed = await loadMessage(id);
    const reason = `retry window of 72 h ended after 1 attempt; last error: RCPT TO:<${full}> answered 552 5.5.3 Too many recipients`;
    expect(closed.message).toMatchObject({ status: "sent", lastError: null, sentAt: closed.events.at(-1)!.at });
    expect(closed.recipients).toEqual([
      { address: good, status: "sent", smtpCode: 250, detail: expect.stringMatching(/^Message queued as/) },
      { address: full, status: "failed", smtpCode: 552, detail: reason },
    ]);
    expect(closed.events.map((e) => [e.type, e.detail])).toEqual([["accepted", null],
      ["sent", expect.stringMatching(new RegExp(`^Message queued as .* \\(for ${good}\\)$`))],
      ["deferred", `RCPT TO:<${full}> answered 552 5.5.3 Too many recipients`],
      ["failed", reason],
    ]);

    // The same dead letter again (a repeated job) changes nothing and records nothing.
    await runQueue("mailroom-dead-letter", [id]);
    expect(await loadMessage(id)).toEqual(closed);
  });

  it("never closes the window of a message an attempt holds: neither it nor its recipients change", async () => {
    const { id, to } = await insertQueuedMessage({ createdAt: new Date(Date.now() - 73 * 3600_000).toISOString() });
    await claimMessage(env.DB, id, { now: new Date(), leaseMs: 600_000 });
    expect(await closeRetryWindow(env.DB, { id, at: new Date().toISOString(), reason: "retry window ended" })).toEqual({ changed: false, webhookEvents: [] });
    const { message, recipients, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sending", lastError: null });
    expect(recipients).toEqual([{ address: to, status: "pending", smtpCode: null, detail: null }]);
    expect(events.map((e) => e.type)).toEqual(["accepted"]);
  });

  it("puts back, for when its claim expires, a message an attempt holds even though its window has ended", async () => {
    const { id } = await insertQueuedMessage({ createdAt: new Date(Date.now() - 73 * 3600_000).toISOString() });
    await claimMessage(env.DB, id, { now: new Date(), leaseMs: 600_000 }); // an attempt is under way; it settles the message itself
    const send = vi.spyOn(env.OUTBOX, "send").mockResolvedValue(undefined as never);
    try {
      const { result } = await runQueue("mailroom-dead-letter", [id]);
      expect(result.explicitAcks).toEqual([`job-${id}`]);
      const [[job, options]] = send.mock.calls as unknown as [[OutboxJob, QueueSendOptions]];
      expect(job).toEqual({ id });
      expect(options.delaySeconds).toBeGreaterThan(590);
      expect(options.delaySeconds).toBeLessThanOrEqual(600);
    } finally {
      send.mockRestore();
    }
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sending", attempts: 1 });
    expect(events.map((e) => e.type)).toEqual(["accepted"]);
  });

  it("leaves a sent message sent", async () => {
    const { id } = await insertQueuedMessage();
    await runQueue("mailroom-outbox", [id]);
    const { result } = await runQueue("mailroom-dead-letter", [id]);
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sent", lastError: null });
    expect(events.map((e) => e.type)).toEqual(["accepted", "sent"]);
  });

  it("leaves a canceled message canceled and puts nothing back on the outbox", async () => {
    const { id } = await retryingMessage({ nextAttemptAt: new Date().toISOString() });
    expect((await api(`/v1/emails/${id}/cancel`, { method: "POST" })).status).toBe(200);
    const send = vi.spyOn(env.OUTBOX, "send");
    try {
      const { result } = await runQueue("mailroom-dead-letter", [id]);
      expect(result.explicitAcks).toEqual([`job-${id}`]);
      expect(send).not.toHaveBeenCalled();
    } finally {
      send.mockRestore();
    }
    expect((await loadMessage(id)).message.status).toBe("canceled");
  });

  it("fails nothing while the settings cannot be read: the job goes back on the outbox", async () => {
    const { id } = await retryingMessage({ createdAt: new Date(Date.now() - 73 * 3600_000).toISOString(), nextAttemptAt: new Date(Date.now() + 600_000).toISOString() });
    const logs = captureLogs();
    try {
      const { result } = await runQueue("mailroom-dead-letter", [id], { SMTP_HOST: "" });
      expect(result.explicitAcks).toEqual([`job-${id}`]);
    } finally {
      logs.restore();
    }
    expect((await loadMessage(id)).message.status).toBe("retrying");
  });

  it("keeps the dead letter when D1 cannot be reached, backing off by its own redeliveries", async () => {
    const { id } = await retryingMessage({ nextAttemptAt: new Date().toISOString() });
    const brokenDb = {
      prepare() {
        throw new Error("D1_ERROR: Network connection lost.");
      },
    } as unknown as D1Database;
    const logs = captureLogs();
    let retry: ReturnType<typeof vi.spyOn> | undefined;
    try {
      const { result } = await runQueue("mailroom-dead-letter", [id], { DB: brokenDb, RETRY_BASE_DELAY_SECONDS: "10" }, (batch) => {
        Object.defineProperty(batch.messages[0]!, "attempts", { value: 3 });
        retry = vi.spyOn(batch.messages[0]!, "retry");
      });
      expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    } finally {
      logs.restore();
    }
    expect(retry).toHaveBeenCalledWith({ delaySeconds: 40 }); // 10 s · 2²
    expect((await loadMessage(id)).message.status).toBe("retrying");
  });
});

describe("failures that are not about the message", () => {
  it("backs off exponentially by the job's own redeliveries when D1 fails, counting no attempt", async () => {
    const { id } = await insertQueuedMessage();
    const brokenDb = {
      batch() {
        throw new Error("D1_ERROR: Network connection lost.");
      },
    } as unknown as D1Database;
    const logs = captureLogs();
    const delays: unknown[] = [];
    try {
      for (const attempts of [1, 4]) {
        await runQueue("mailroom-outbox", [id], { DB: brokenDb, RETRY_BASE_DELAY_SECONDS: "10" }, (batch) => {
          Object.defineProperty(batch.messages[0]!, "attempts", { value: attempts });
          vi.spyOn(batch.messages[0]!, "retry").mockImplementation((options) => void delays.push(options));
        });
      }
    } finally {
      logs.restore();
    }
    expect(delays).toEqual([{ delaySeconds: 10 }, { delaySeconds: 80 }]);
    expect((await loadMessage(id)).message).toMatchObject({ status: "queued", attempts: 0 });
  });
});
