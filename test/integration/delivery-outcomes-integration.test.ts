// What the outbox consumer does with each outcome, job by job: a permanent rejection is acked (not
// retried), a transient one is retried with its backoff, a crash keeps the job, a rejected message
// does not poison the next one in the same session, and the relay's verdict at the end of DATA counts.
import { env } from "cloudflare:workers";
import { describe, expect, inject, it, vi } from "vitest";
import { captureLogs, inboxMessages, inboxStats, uniqueRecipient } from "../helpers/api";
import { dbWithSlowFirstBatch, deliver, insertQueuedMessage, loadMessage, runQueue } from "../helpers/factories";

const smtp = inject("smtp");

describe("delivery outcomes", () => {
  it("acks the job of a permanently rejected message instead of retrying it", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("reject") });
    const { result } = await deliver([id]);
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    expect(result.retryMessages).toEqual([]);
    expect((await loadMessage(id)).message.status).toBe("failed");
  });

  it("retries a transient failure with the backoff delay for its attempt", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("tempfail") });
    let retry: ReturnType<typeof vi.spyOn> | undefined;
    const { result } = await runQueue("mailroom-outbox", [id], { RETRY_BASE_DELAY_SECONDS: "30" }, (batch) => {
      retry = vi.spyOn(batch.messages[0]!, "retry");
    });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    expect(retry).toHaveBeenCalledWith({ delaySeconds: 30 });
  });

  it("keeps the job (retry, not ack) when D1 fails mid-delivery, and sends nothing", async () => {
    const to = uniqueRecipient("d1down");
    const { id } = await insertQueuedMessage({ to });
    const brokenDb = {
      prepare() {
        throw new Error("D1_ERROR: Network connection lost.");
      },
      batch() {
        throw new Error("D1_ERROR: Network connection lost.");
      },
    } as unknown as D1Database;
    const logs = captureLogs();
    try {
      const { result } = await runQueue("mailroom-outbox", [id], { DB: brokenDb });
      expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
      expect(result.explicitAcks).toEqual([]);
    } finally {
      logs.restore();
    }
    expect(await inboxMessages(to)).toHaveLength(0);
    expect((await loadMessage(id)).message).toMatchObject({ status: "queued", attempts: 0 });
  });

  it("keeps the job, backing off by its redeliveries, when recording an undelivered outcome fails", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("tempfail") });
    let calls = 0;
    const flakyDb = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: (statements: D1PreparedStatement[]) => {
        if ((calls += 1) === 2) return Promise.reject(new Error("D1_ERROR: Network connection lost.")); // recording the retry
        return env.DB.batch(statements);
      },
    } as unknown as D1Database;
    const logs = captureLogs();
    let retry: ReturnType<typeof vi.spyOn> | undefined;
    try {
      await runQueue("mailroom-outbox", [id], { DB: flakyDb, RETRY_BASE_DELAY_SECONDS: "10" }, (batch) => {
        Object.defineProperty(batch.messages[0]!, "attempts", { value: 3 });
        retry = vi.spyOn(batch.messages[0]!, "retry");
      });
    } finally {
      logs.restore();
    }
    // Nothing went out, so nothing is retried in place: the job comes back after 10 s · 2², not the attempt's 10 s.
    expect(calls).toBe(2);
    expect(retry).toHaveBeenCalledWith({ delaySeconds: 40 });
    expect(logs.lines.map((l) => JSON.parse(l)).find((l) => l.outcome === "error")).toMatchObject({ level: "error", retry_in_s: 40 });
    expect((await loadMessage(id)).events.map((e) => e.type)).toEqual(["accepted"]);
  });

  it("resets the transaction after a rejection, so the next message in the session still goes out", async () => {
    const rejected = await insertQueuedMessage({ to: uniqueRecipient("reject") });
    const good = await insertQueuedMessage();
    const before = await inboxStats(smtp.plain.httpPort);
    const { result } = await deliver([rejected.id, good.id], { SMTP_SESSIONS: "1" });
    expect(result.explicitAcks).toEqual([`job-${rejected.id}`, `job-${good.id}`]);
    expect((await loadMessage(rejected.id)).message.status).toBe("failed");
    expect((await loadMessage(good.id)).message).toMatchObject({ status: "sent", lastError: null });
    expect(await inboxMessages(good.to)).toHaveLength(1);
    expect((await inboxStats(smtp.plain.httpPort)).connections).toBe(before.connections + 1);
  });

  it("never sends an SMTP command with a line break, even from a corrupt stored address", async () => {
    const injected = uniqueRecipient("injected");
    const { id } = await insertQueuedMessage({ to: `victim@example.com>\r\nRCPT TO:<${injected}` });
    await deliver([id]);
    expect(await inboxMessages(injected)).toHaveLength(0);
    const { message } = await loadMessage(id);
    expect(message.status).not.toBe("sent");
    expect(message.lastError).toMatch(/refusing to send a command containing a line break/);
  });

  it("records a 5xx at the end of DATA as failed, not sent: its recipient bounced", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("data554") });
    const { result } = await deliver([id], { SMTP_PORT: String(smtp.dataPolicy.smtpPort) });
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("failed");
    expect(message.sentAt).toBeNull();
    // A clear refusal: not flagged as a possible duplicate, as a missing answer would be.
    expect(message.lastError).toBe("(end of data) answered 554 5.6.0 Message content rejected");
    expect(events.at(-1)).toMatchObject({ type: "bounced", attempt: 1, smtpCode: 554, enhancedCode: "5.6.0" });
    expect(events.map((e) => e.type)).toEqual(["accepted", "bounced"]);
  });

  it("opens a new session when the relay hung up on the previous message of the batch", async () => {
    const dropped = await insertQueuedMessage({ to: uniqueRecipient("data421") });
    const next = await insertQueuedMessage();
    const { result } = await deliver([dropped.id, next.id], { SMTP_PORT: String(smtp.dataPolicy.smtpPort) });
    expect(result.retryMessages).toEqual([{ msgId: `job-${dropped.id}` }]);
    expect(result.explicitAcks).toEqual([`job-${next.id}`]);
    expect((await loadMessage(dropped.id)).message).toMatchObject({ status: "retrying", lastError: expect.stringMatching(/421/) });
    expect((await loadMessage(next.id)).message.status).toBe("sent");
  });

  it("stops at a 421 to RCPT TO, leaving the recipients after it for another session", async () => {
    const [first, closing, after] = [uniqueRecipient("a"), uniqueRecipient("rcpt421"), uniqueRecipient("c")];
    const { id } = await insertQueuedMessage({ to: [first, closing, after] });
    const { result } = await deliver([id], { SMTP_PORT: String(smtp.dataPolicy.smtpPort) });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    const { message, recipients } = await loadMessage(id);
    expect(message).toMatchObject({ status: "retrying", lastError: `RCPT TO:<${closing}> answered 421 4.3.2 Too busy, closing connection` });
    expect(recipients.map((r) => [r.address, r.status, r.smtpCode])).toEqual([
      [first, "deferred", 421],
      [closing, "deferred", 421],
      [after, "pending", null],
    ]);
  });

  it("closes the session after a 421 to the end of the message even if the relay leaves it open", async () => {
    const refused = await insertQueuedMessage({ to: uniqueRecipient("data421open") });
    const next = await insertQueuedMessage();
    const { result } = await deliver([refused.id, next.id], { SMTP_PORT: String(smtp.dataPolicy.smtpPort) });
    expect(result.retryMessages).toEqual([{ msgId: `job-${refused.id}` }]);
    expect(result.explicitAcks).toEqual([`job-${next.id}`]);
    expect((await loadMessage(refused.id)).message.lastError).toBe("(end of data) answered 421 4.3.2 Shutting down");
    expect((await loadMessage(next.id)).message).toMatchObject({ status: "sent", lastError: null });
  });

  it("gives up quickly on a reply larger than 64 KiB instead of buffering until the timeout", async () => {
    const { id } = await insertQueuedMessage();
    const { result, elapsedMs } = await deliver([id], { SMTP_PORT: String(smtp.flood.smtpPort), SMTP_TIMEOUT_MS: "3000" });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    expect(elapsedMs).toBeLessThan(3000);
    expect((await loadMessage(id)).message.lastError).toBe("reply too long");
  });

  it("closes the session on a reply that arrived before the message was sent, and records nothing as sent", async () => {
    const { id, to } = await insertQueuedMessage();
    const { result } = await deliver([id], { SMTP_PORT: String(smtp.stray.smtpPort) });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "retrying", sentAt: null });
    expect(message.lastError).toBe('the server sent a reply nobody asked for ("250 2.0.0 Ok: queued as STRAY") before (message content); closing the session');
    expect(events.map((e) => e.type)).toEqual(["accepted", "deferred"]);
    expect(await inboxMessages(to)).toHaveLength(0);
  });

  it("closes the session on half a reply that arrived before the message was sent, and records nothing as sent", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("straypart") });
    const { result } = await deliver([id], { SMTP_PORT: String(smtp.dataPolicy.smtpPort) });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "retrying", sentAt: null });
    expect(message.lastError).toBe('the server sent a reply nobody asked for ("250 2.0.0 Ok: que") before (message content); closing the session');
    expect(events.map((e) => e.type)).toEqual(["accepted", "deferred"]);
  });

  it("starts no new transaction once the invocation's time budget is used, and hands the rest back unclaimed", async () => {
    // A 5 s lease gives a budget of 0.67 s (a third, less a 1 s margin); this relay takes 1 s to accept each message.
    const batch = [];
    for (let i = 0; i < 3; i++) batch.push(await insertQueuedMessage({ to: uniqueRecipient("slow") }));
    const { result } = await deliver(
      batch.map((m) => m.id),
      { SMTP_PORT: String(smtp.dataPolicy.smtpPort), DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "2000", SMTP_SESSIONS: "1" },
    );

    const [first, , last] = batch;
    expect(result.explicitAcks).toContain(`job-${first!.id}`);
    expect((await loadMessage(first!.id)).message.status).toBe("sent");
    // The first transaction alone outlasts the budget, so the third is never started (nor the second).
    expect(result.retryMessages).toContainEqual({ msgId: `job-${last!.id}` });
    expect((await loadMessage(last!.id)).message).toMatchObject({ status: "queued", attempts: 0 });
    expect(result.explicitAcks.length + result.retryMessages.length).toBe(3);
  });

  it("records the part of a chunk that went out when the time budget is used up in its middle, and releases the rest and the chunk claimed behind it", { timeout: 15_000 }, async () => {
    // A 6 s lease gives a budget of 0.8 s. One session: the first message is claimed alone, the next ten
    // together; the next chunk (the last two) is claimed while the tenth message goes out. That one takes
    // the relay 1 s to accept, so the eleventh and the chunk behind it are never started.
    const batch = [];
    for (let i = 0; i < 13; i++) batch.push(await insertQueuedMessage({ to: uniqueRecipient(i === 9 ? "slow" : "quick") }));
    const { result } = await deliver(
      batch.map((m) => m.id),
      { SMTP_PORT: String(smtp.dataPolicy.smtpPort), DELIVERY_LEASE_SECONDS: "6", SMTP_TIMEOUT_MS: "2000", SMTP_SESSIONS: "1" },
    );
    const [sent, handedBack] = [batch.slice(0, 10), batch.slice(10)];
    expect(result.explicitAcks).toEqual(sent.map((m) => `job-${m.id}`));
    expect(result.retryMessages).toEqual(handedBack.map((m) => ({ msgId: `job-${m.id}` })));
    for (const { id } of sent) expect((await loadMessage(id)).message).toMatchObject({ status: "sent", attempts: 1 });
    for (const { id } of handedBack) expect((await loadMessage(id)).message).toMatchObject({ status: "queued", attempts: 0 });
  });

  it("hands back the jobs no lane has taken yet, unclaimed, once the time budget is used up", { timeout: 15_000 }, async () => {
    // A 5 s lease gives a budget of 0.67 s; the first claim takes D1 1 s. Its message cannot be built, so it
    // is settled without the relay, and by then no further job may be claimed.
    const broken = await insertQueuedMessage();
    await env.DB.prepare("UPDATE messages SET from_json = '{}' WHERE id = ?").bind(broken.id).run();
    const waiting = [await insertQueuedMessage(), await insertQueuedMessage()];
    const slowDb = dbWithSlowFirstBatch(1000);
    const { result } = await deliver([broken.id, ...waiting.map((m) => m.id)], { DB: slowDb, DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "2000" });
    expect(result.explicitAcks).toEqual([`job-${broken.id}`]);
    expect((await loadMessage(broken.id)).message.status).toBe("failed");
    expect(result.retryMessages).toEqual(waiting.map((m) => ({ msgId: `job-${m.id}` })));
    for (const { id, to } of waiting) {
      expect((await loadMessage(id)).message).toMatchObject({ status: "queued", attempts: 0 });
      expect(await inboxMessages(to)).toHaveLength(0);
    }
  });

  it("hands back every job of the batch when the budget is used up, also those no lane has taken yet", { timeout: 15_000 }, async () => {
    // A 5 s lease gives a budget of 0.67 s; this relay takes 1 s to accept each message. One session: the
    // first message is claimed alone, the next ten together; the last two are still waiting.
    const batch = [];
    for (let i = 0; i < 13; i++) batch.push(await insertQueuedMessage({ to: uniqueRecipient("slow") }));
    const { result } = await deliver(
      batch.map((m) => m.id),
      { SMTP_PORT: String(smtp.dataPolicy.smtpPort), DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "2000", SMTP_SESSIONS: "1" },
    );
    expect(result.explicitAcks).toEqual([`job-${batch[0]!.id}`]);
    expect(result.retryMessages).toEqual(batch.slice(1).map((m) => ({ msgId: `job-${m.id}` })));
    for (const { id } of batch.slice(1)) expect((await loadMessage(id)).message).toMatchObject({ status: "queued", attempts: 0 });
  });

  it("builds a message's wire form only when its lane comes to it: one the budget hands back first is never built", { timeout: 15_000 }, async () => {
    // As above, one session and a 1 s relay: the first message goes alone, the next chunk holds the other
    // three. Only the one after the message in hand is built; the last cannot be built at all, and is not
    // found out: it goes back with the others instead of failing at its claim.
    const batch = [];
    for (let i = 0; i < 3; i++) batch.push(await insertQueuedMessage({ to: uniqueRecipient("slow") }));
    const broken = await insertQueuedMessage({ to: uniqueRecipient("slow") });
    await env.DB.prepare("UPDATE messages SET from_json = '{}' WHERE id = ?").bind(broken.id).run();
    const { result } = await deliver(
      [...batch, broken].map((m) => m.id),
      { SMTP_PORT: String(smtp.dataPolicy.smtpPort), DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "2000", SMTP_SESSIONS: "1" },
    );
    expect(result.explicitAcks).toEqual([`job-${batch[0]!.id}`]);
    expect(result.retryMessages).toEqual([...batch.slice(1), broken].map((m) => ({ msgId: `job-${m.id}` })));
    expect((await loadMessage(broken.id)).message).toMatchObject({ status: "queued", attempts: 0 });
  });

  it("stops before the end of the message when too little time is left to wait for the relay's verdict", async () => {
    // A 5 s lease leaves an attempt 4 s, enough for one 3 s wait (the settings allow it), but the claim
    // takes D1 1.5 s: 2.5 s are left when the message is ready, less than the reply may take. The final dot is never sent.
    const { id, to } = await insertQueuedMessage();
    const slowDb = dbWithSlowFirstBatch(1500);
    const { result } = await deliver([id], { DB: slowDb, DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "3000" });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    const { message } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(message.lastError).toBe("too little of the attempt's time was left to wait for the reply to the message; stopped before sending it");
    expect(await inboxMessages(to)).toHaveLength(0);
  });

  it("waits past SMTP_TIMEOUT_MS for the relay's verdict on the message, as RFC 5321 asks", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("slow") }); // answered after 1 s
    const { result } = await deliver([id], { SMTP_PORT: String(smtp.dataPolicy.smtpPort), SMTP_TIMEOUT_MS: "300" });
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    expect((await loadMessage(id)).message).toMatchObject({ status: "sent", lastError: null });
  });

  it("treats two replies to the end of the message as in doubt, not as sent", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("double") });
    const { result } = await deliver([id], { SMTP_PORT: String(smtp.dataPolicy.smtpPort) });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    const { message } = await loadMessage(id);
    expect(message).toMatchObject({ status: "retrying", sentAt: null });
    expect(message.lastError).toMatch(/^the relay sent more than one reply to the end of the message; the relay may have taken the mail all the same: possible duplicate/);
  });

  it("settles a claimed message with no recipient left to send to without a transaction, and the session stays usable", async () => {
    const settled = await insertQueuedMessage();
    await env.DB.prepare("UPDATE recipients SET status = 'failed', detail = 'gone' WHERE message_id = ?").bind(settled.id).run();
    const next = await insertQueuedMessage();
    const { result } = await deliver([settled.id, next.id]);
    expect(result.explicitAcks).toEqual([`job-${settled.id}`, `job-${next.id}`]);
    expect((await loadMessage(settled.id)).message).toMatchObject({ status: "failed", lastError: "no recipient is left to send to" });
    expect((await loadMessage(next.id)).message).toMatchObject({ status: "sent", lastError: null });
    expect(await inboxMessages(settled.to)).toHaveLength(0);
  });

  it("fails for good, without touching the relay, a stored message that cannot be built", async () => {
    const { id } = await insertQueuedMessage();
    await env.DB.prepare("UPDATE messages SET from_json = '{}' WHERE id = ?").bind(id).run();
    const before = await inboxStats(smtp.plain.httpPort);
    const { result } = await deliver([id]);
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    const { message } = await loadMessage(id);
    expect(message.status).toBe("failed");
    expect(message.lastError).toMatch(/^the message could not be built: /);
    expect((await inboxStats(smtp.plain.httpPort)).connections).toBe(before.connections);
  });
});
