// RFC 2920 PIPELINING: with a relay that offers it, MAIL FROM, every RCPT TO and DATA go in one write and
// the replies are matched to the commands strictly in order; with one that does not, lock-step. Checked
// against relays only the right kind of client gets through (test/helpers/pipelining-relays.ts). And a
// batch spread over several sessions at once, never more than configured.
import { describe, expect, inject, it, vi } from "vitest";
import { SmtpSession, type SmtpMail } from "../../src/transport/smtp/session";
import { uniqueRecipient } from "../helpers/api";
import { deliver, insertQueuedMessage, loadMessage } from "../helpers/factories";

const smtp = inject("smtp");
const onRelay = (relay: "pipeliningOnly" | "strictLockstep") => ({ SMTP_PORT: String(smtp[relay].smtpPort) });
type Received = { commands: string[]; messages: string[][]; sessions: { messages: string[][]; commands: string[]; unterminated: string[]; roundTrips: number }[] };
const received = async (relay: "pipelining-only" | "strict-lockstep"): Promise<Received> =>
  (await fetch(`http://127.0.0.1:${smtp.drop.controlPort}/${relay}/received`)).json();

describe("pipelining", () => {
  it("sends the envelope and DATA in one go to a relay that offers PIPELINING (which answers only then)", async () => {
    const to = [uniqueRecipient("p1"), uniqueRecipient("p2"), uniqueRecipient("p3")];
    const { id } = await insertQueuedMessage({ to });
    const { result } = await deliver([id], onRelay("pipeliningOnly"));
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    expect((await loadMessage(id)).message.status).toBe("sent");
    expect((await received("pipelining-only")).messages).toContainEqual(to);
  });

  it("keeps to one command at a time with a relay that does not offer PIPELINING", async () => {
    const to = [uniqueRecipient("l1"), uniqueRecipient("l2")];
    const { id } = await insertQueuedMessage({ to });
    await deliver([id], onRelay("strictLockstep"));
    const { message } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sent", lastError: null });
    expect((await received("strict-lockstep")).messages).toContainEqual(to);
  });

  it("matches each reply to its own RCPT: the one refused in the middle of the group is the one recorded", async () => {
    const [first, refused, last] = [uniqueRecipient("m1"), uniqueRecipient("refuse"), uniqueRecipient("m3")];
    const { id } = await insertQueuedMessage({ to: [first, refused, last] });
    await deliver([id], onRelay("pipeliningOnly"));
    const { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("sent");
    expect(recipients.map((r) => [r.address, r.status, r.smtpCode])).toEqual([
      [first, "sent", 250],
      [refused, "bounced", 550],
      [last, "sent", 250],
    ]);
    expect((await received("pipelining-only")).messages).toContainEqual([first, last]);
  });

  it("fails a message nobody will take in the middle of a run, and the messages around it still go out", async () => {
    const before = await insertQueuedMessage({ to: uniqueRecipient("before") });
    const nobody = await insertQueuedMessage({ to: [uniqueRecipient("refuse"), uniqueRecipient("refuse")] });
    const after = await insertQueuedMessage({ to: uniqueRecipient("after") });
    // One session, so the three go out one after the other, each envelope behind the previous final dot.
    const { result } = await deliver([before.id, nobody.id, after.id], { ...onRelay("pipeliningOnly"), SMTP_SESSIONS: "1" });
    expect(result.explicitAcks).toEqual([before.id, nobody.id, after.id].map((id) => `job-${id}`));
    expect((await loadMessage(before.id)).message.status).toBe("sent");
    expect((await loadMessage(nobody.id)).message).toMatchObject({ status: "failed", lastError: expect.stringMatching(/answered 550 5\.1\.1 No such user$/) });
    expect((await loadMessage(after.id)).message.status).toBe("sent");
    const { messages } = await received("pipelining-only");
    // This relay accepts DATA even with no recipient: Mailroom then ends it with an empty message.
    expect(messages.slice(-3)).toEqual([[before.to], [], [after.to]]);
  });

  it("records nothing as sent when the connection drops in the middle of a pipelined group", async () => {
    const { id } = await insertQueuedMessage({ to: [uniqueRecipient("ok"), uniqueRecipient("drop")] });
    const { result } = await deliver([id], onRelay("pipeliningOnly"));
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    const { message, recipients } = await loadMessage(id);
    expect(message).toMatchObject({ status: "retrying", sentAt: null });
    expect(message.lastError).toMatch(/connection closed by the server/);
    expect(recipients.map((r) => r.status)).toEqual(["pending", "pending"]);
  });

  it("sends each next envelope behind the previous final dot, and QUIT behind the last: one round trip per message", async () => {
    const batch: { id: string; to: string[] }[] = [];
    for (let i = 0; i < 10; i++) {
      const to = [uniqueRecipient(`run${i}a`), uniqueRecipient(`run${i}b`)];
      batch.push({ ...(await insertQueuedMessage({ to })), to });
    }
    // This relay answers a final dot only once the next DATA or QUIT has arrived: a client that waited
    // for that reply before sending on would never get it.
    const { result } = await deliver(
      batch.map((m) => m.id),
      { ...onRelay("pipeliningOnly"), SMTP_SESSIONS: "1" },
    );
    expect(result.explicitAcks).toEqual(batch.map((m) => `job-${m.id}`));
    for (const { id } of batch) expect((await loadMessage(id)).message.status).toBe("sent");
    const session = (await received("pipelining-only")).sessions.find((s) => s.messages[0]?.[0] === batch[0]!.to[0]!);
    expect(session?.messages).toEqual(batch.map((m) => m.to));
    // EHLO, the first envelope, then one write per message: its content, its final dot and what follows.
    expect(session?.roundTrips).toBe(batch.length + 2);
  });

  it("keeps replies on their own messages when one RCPT and whole messages are refused in the middle of a pipelined run", async () => {
    const first = await insertQueuedMessage({ to: uniqueRecipient("r1") });
    const [kept, refused] = [uniqueRecipient("r2"), uniqueRecipient("refuse")];
    const partly = await insertQueuedMessage({ to: [refused, kept] });
    const rejected = await insertQueuedMessage({ to: uniqueRecipient("rejectmsg") });
    const nobody = await insertQueuedMessage({ to: uniqueRecipient("refuse") });
    const last = await insertQueuedMessage({ to: uniqueRecipient("r5") });
    const ids = [first, partly, rejected, nobody, last].map((m) => m.id);
    const { result } = await deliver(ids, { ...onRelay("pipeliningOnly"), SMTP_SESSIONS: "1" });
    expect(result.explicitAcks).toEqual(ids.map((id) => `job-${id}`));
    expect((await loadMessage(first.id)).message).toMatchObject({ status: "sent", lastError: null });
    const partlyLoaded = await loadMessage(partly.id);
    expect(partlyLoaded.message.status).toBe("sent");
    expect(partlyLoaded.recipients.map((r) => [r.address, r.status, r.smtpCode])).toEqual([
      [refused, "bounced", 550],
      [kept, "sent", 250],
    ]);
    expect((await loadMessage(rejected.id)).message).toMatchObject({ status: "failed", lastError: "(end of data) answered 554 5.6.0 Message content rejected" });
    expect((await loadMessage(nobody.id)).message).toMatchObject({ status: "failed", lastError: expect.stringMatching(/answered 550 5\.1\.1 No such user$/) });
    expect((await loadMessage(last.id)).message).toMatchObject({ status: "sent", lastError: null });
    const session = (await received("pipelining-only")).sessions.find((s) => s.messages[0]?.[0] === first.to);
    expect(session?.messages).toEqual([[first.to], [kept], [], [last.to]]);
    expect(session?.roundTrips).toBe(ids.length + 2);
  });

  it("records nothing as sent that the relay never acknowledged when the connection drops behind a final dot", async () => {
    // The second message's envelope follows the first one's final dot; the relay hangs up at its RCPT
    // before answering anything, so the first mail's fate is unknown too. The third goes on a new session.
    const first = await insertQueuedMessage({ to: uniqueRecipient("d1") });
    const dropped = await insertQueuedMessage({ to: uniqueRecipient("drop") });
    const third = await insertQueuedMessage({ to: uniqueRecipient("d3") });
    const { result } = await deliver([first.id, dropped.id, third.id], { ...onRelay("pipeliningOnly"), SMTP_SESSIONS: "1" });
    expect(result.retryMessages).toEqual([first.id, dropped.id].map((id) => ({ msgId: `job-${id}` })));
    const unacknowledged = (await loadMessage(first.id)).message;
    expect(unacknowledged).toMatchObject({ status: "retrying", sentAt: null });
    expect(unacknowledged.lastError).toMatch(/connection closed by the server .*possible duplicate/);
    expect((await loadMessage(dropped.id)).message).toMatchObject({ status: "retrying", sentAt: null });
    expect((await loadMessage(third.id)).message.status).toBe("sent");
  });

  it("fails a message every recipient refused for good, even when the relay drops the empty message ending its DATA", async () => {
    const { id } = await insertQueuedMessage({ to: uniqueRecipient("refusedrop") });
    const { result } = await deliver([id], { ...onRelay("pipeliningOnly"), SMTP_SESSIONS: "1" });
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    expect((await loadMessage(id)).message).toMatchObject({ status: "failed", lastError: expect.stringMatching(/answered 550 5\.1\.1 No such user$/) });
  });

  it("keeps a mail whose final dot was answered 250 when the relay shuts down at the envelope pipelined behind it", async () => {
    // The relay takes the first mail, then answers the second one's RCPT with 421 and, like Exim's
    // smtp_closedown(), also its DATA: both 421s arrive in one segment behind MAIL's 250.
    const taken = await insertQueuedMessage({ to: uniqueRecipient("taken") });
    const refused = await insertQueuedMessage({ to: uniqueRecipient("closedown") });
    const { result } = await deliver([taken.id, refused.id], { ...onRelay("pipeliningOnly"), SMTP_SESSIONS: "1" });
    expect((await received("pipelining-only")).messages).toContainEqual([taken.to]);
    // The relay has the first mail: recording it as not sent means it goes out again on the retry.
    expect((await loadMessage(taken.id)).message).toMatchObject({ status: "sent", lastError: null });
    expect(result.explicitAcks).toContain(`job-${taken.id}`);
    expect((await loadMessage(refused.id)).message.status).toBe("retrying");
  });

  it("takes the first reply after a final dot as its verdict; replies shifted by a second one are no longer the next message's", async () => {
    // The relay answers the first message's final dot twice, then the next envelope's commands one reply
    // at a time: a client that took the extra reply for the answer to MAIL FROM would be a reply behind.
    const doubled = await insertQueuedMessage({ to: uniqueRecipient("double") });
    const next = await insertQueuedMessage({ to: uniqueRecipient("x2") });
    const third = await insertQueuedMessage({ to: uniqueRecipient("x3") });
    const ids = [doubled, next, third].map((m) => m.id);
    const { result } = await deliver(ids, { ...onRelay("pipeliningOnly"), SMTP_SESSIONS: "1" });
    expect(result.explicitAcks).toEqual(ids.map((id) => `job-${id}`));
    expect((await loadMessage(doubled.id)).message).toMatchObject({ status: "sent", attempts: 1 });
    // The session ends there (the next message's DATA, never confirmed, is discarded): the others go out
    // on a new one, each once.
    const { sessions } = await received("pipelining-only");
    expect(sessions.find((s) => s.messages[0]?.[0] === doubled.to)?.messages).toEqual([[doubled.to]]);
    expect(sessions.find((s) => s.messages[0]?.[0] === next.to)?.messages).toEqual([[next.to], [third.to]]);
    for (const { id } of [next, third]) expect((await loadMessage(id)).message).toMatchObject({ status: "sent", attempts: 1 });
  });

  it("hands back a message whose envelope already went out behind a final dot without writing a word more into its open DATA", { timeout: 15_000 }, async () => {
    // A 5 s lease gives a budget of 0.67 s; the first message's final dot is answered after 1 s, with the
    // second envelope's replies behind it: the second message's DATA is open (354) when the budget is up.
    const slow = await insertQueuedMessage({ to: uniqueRecipient("slow") });
    const next = await insertQueuedMessage({ to: uniqueRecipient("h2") });
    const last = await insertQueuedMessage({ to: uniqueRecipient("h3") });
    const ids = [slow, next, last].map((m) => m.id);
    const { result } = await deliver(ids, { ...onRelay("pipeliningOnly"), SMTP_SESSIONS: "1", DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "2000" });
    expect(result.explicitAcks).toEqual([`job-${slow.id}`]);
    expect(result.retryMessages).toEqual([next.id, last.id].map((id) => ({ msgId: `job-${id}` })));
    expect((await loadMessage(slow.id)).message.status).toBe("sent");
    for (const { id } of [next, last]) expect((await loadMessage(id)).message).toMatchObject({ status: "queued", attempts: 0 });
    // Anything said now (QUIT, RSET) would be taken as the open message's content: the session is just closed.
    const session = (await received("pipelining-only")).sessions.find((s) => s.messages[0]?.[0] === slow.to);
    expect(session?.messages).toEqual([[slow.to]]);
    expect(session?.commands.at(-1)).toBe("DATA");
    // Once the connection is closed, the relay has the open DATA's content: nothing but what DATA began with.
    await vi.waitFor(async () => {
      const closed = (await received("pipelining-only")).sessions.find((s) => s.messages[0]?.[0] === slow.to);
      expect(closed?.unterminated).toEqual(["\r\n"]);
    });
  });

  describe("a session whose next envelope went out behind a final dot", () => {
    const MIME = "From: noreply@mailroom.test\r\nSubject: Direct\r\n\r\nHello\r\n.\r\n";
    const mail = (to: string, deadline = Date.now() + 10_000): SmtpMail => ({ envelope: { from: "noreply@mailroom.test", recipients: [to] }, data: MIME, deadline });
    const open = async () => {
      const opened = await SmtpSession.open({ host: "127.0.0.1", port: smtp.pipeliningOnly.smtpPort, security: "none", heloName: "mailroom.test", timeoutMs: 2000 });
      if (!opened.ok) throw new Error(opened.failure.message);
      return opened.value;
    };

    it("refuses to send any other mail next, and ends the session rather than put it in that mail's transaction", async () => {
      const session = await open();
      const [a, b, c] = [mail(uniqueRecipient("o1")), mail(uniqueRecipient("o2")), mail(uniqueRecipient("o3"))];
      try {
        expect((await session.send(a, { next: b })).end.ok).toBe(true);
        expect((await session.send(c, { next: "quit" })).end).toMatchObject({ ok: false, failure: { kind: "protocol", message: expect.stringMatching(/out of the order/) } });
        expect(session.isBroken).toBe(true);
      } finally {
        await session.close();
      }
      const { messages } = await received("pipelining-only");
      expect(messages).toContainEqual(a.envelope.recipients);
      expect(messages).not.toContainEqual(b.envelope.recipients);
      expect(messages).not.toContainEqual(c.envelope.recipients);
    });

    it("ends the session when that mail's time is up before its turn, as its DATA is open", async () => {
      const session = await open();
      const [a, late, c] = [mail(uniqueRecipient("t1")), mail(uniqueRecipient("t2"), Date.now() - 1), mail(uniqueRecipient("t3"))];
      try {
        expect((await session.send(a, { next: late })).end.ok).toBe(true);
        expect((await session.send(late, { next: c })).end).toMatchObject({ ok: false, failure: { kind: "timeout", message: "the attempt's time was up before its transaction began" } });
        expect(session.isBroken).toBe(true);
        expect((await session.send(c, { next: "quit" })).end.ok).toBe(false);
      } finally {
        await session.close();
      }
      const { messages } = await received("pipelining-only");
      expect(messages).not.toContainEqual(late.envelope.recipients);
      expect(messages).not.toContainEqual(c.envelope.recipients);
    });
  });

  it.each([
    [3, 6],
    [1, 2],
  ])("spreads a batch over SMTP_SESSIONS=%i sessions at once, never more (%i messages)", { timeout: 15_000 }, async (sessions, count) => {
    const control = `http://127.0.0.1:${smtp.drop.controlPort}/data-policy/connections`;
    const batch = [];
    for (let i = 0; i < count; i++) batch.push(await insertQueuedMessage({ to: uniqueRecipient("slow") })); // 1 s each
    await fetch(`${control}/reset`);
    const { result } = await deliver(
      batch.map((m) => m.id),
      { SMTP_PORT: String(smtp.dataPolicy.smtpPort), SMTP_SESSIONS: String(sessions) },
    );
    expect(result.explicitAcks).toHaveLength(count);
    for (const { id } of batch) expect((await loadMessage(id)).message.status).toBe("sent");
    expect((await (await fetch(control)).json<{ peak: number }>()).peak).toBe(sessions);
  });
});
