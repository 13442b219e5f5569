// Delivery over real TCP to real SMTP servers started by the global setup: STARTTLS and implicit TLS
// with AUTH (certificates from a test CA), a relay without STARTTLS, one that drops the connection
// mid-DATA and one that never answers.
import { exports } from "cloudflare:workers";
import { describe, expect, inject, it } from "vitest";
import { SmtpSession, type SmtpOptions } from "../../src/transport/smtp/session";
import { captureLogs, inboxMessages, inboxStats, uniqueRecipient } from "../helpers/api";
import { deliver, insertQueuedMessage, loadMessage } from "../helpers/factories";
import { SMTP_PASS, SMTP_USER } from "../helpers/smtp-fixtures";

const smtp = inject("smtp");
const withAuth = { SMTP_USER, SMTP_PASS };
const FROM = "noreply@mailroom.test";
const MIME = "From: noreply@mailroom.test\r\nSubject: Direct\r\n\r\nHello\r\n.\r\n";
const relay = (port: number, timeoutMs = 5000): SmtpOptions => ({ host: "127.0.0.1", port, security: "none", heloName: "mailroom.test", timeoutMs });

describe("delivery over SMTP", () => {
  it.each([
    ["STARTTLS on a submission port", { SMTP_PORT: String(smtp.starttls.smtpPort), SMTP_SECURITY: "starttls" }, smtp.starttls.httpPort],
    ["implicit TLS", { SMTP_PORT: String(smtp.tls.smtpPort), SMTP_SECURITY: "tls" }, smtp.tls.httpPort],
  ])("delivers with %s and AUTH, never sending credentials in the clear", async (_name, relay, httpPort) => {
    const { id, to } = await insertQueuedMessage({ subject: "Over TLS" });
    const { result } = await deliver([id], { ...relay, ...withAuth });
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("sent");
    expect(events.at(-1)).toMatchObject({ type: "sent", smtpCode: 250 });
    const [mail] = await inboxMessages(to, httpPort);
    expect(mail).toMatchObject({ subject: "Over TLS", secure: true, authenticatedAs: SMTP_USER });
    const stats = await inboxStats(httpPort);
    expect(stats.authAttempts.length).toBeGreaterThan(0);
    expect(stats.authAttempts.every((a) => a.secure && a.ok)).toBe(true);
  });

  it.each([
    ["an untrusted certificate, implicit TLS", "127.0.0.1", "tls", smtp.untrustedTls],
    ["an untrusted certificate, STARTTLS", "127.0.0.1", "starttls", smtp.untrustedStarttls],
    ["a certificate for another host, implicit TLS", "127.0.0.2", "tls", smtp.wrongHostTls],
    ["a certificate for another host, STARTTLS", "127.0.0.2", "starttls", smtp.wrongHostStarttls],
  ])("stops at %s: no credentials, no mail, a transient TLS failure that says so", async (_name, host, security, relay) => {
    const { id, to } = await insertQueuedMessage();
    const stats = async () => (await fetch(`http://${host}:${relay.httpPort}/api/stats`)).json<Awaited<ReturnType<typeof inboxStats>>>();
    const before = await stats();
    const { result } = await deliver([id], { SMTP_HOST: host, SMTP_PORT: String(relay.smtpPort), SMTP_SECURITY: security, ...withAuth });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    const after = await stats();
    expect(after.authAttempts).toEqual(before.authAttempts);
    expect(after.mailFrom).toBe(before.mailFrom);
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(message.lastError).toMatch(/^TLS error: the TLS handshake with the relay failed, so nothing was sent \(is its certificate trusted, and does it name SMTP_HOST\?\)/);
    expect(events.at(-1)).toMatchObject({ type: "deferred", attempt: 1 });
    expect((await (await fetch(`http://${host}:${relay.httpPort}/api/messages?to=${encodeURIComponent(to)}`)).json<unknown[]>())).toHaveLength(0);
    // What API clients read names "the relay", never its address (the runtime's error quotes the host).
    for (const text of [message.lastError!, events.at(-1)!.detail!]) {
      expect(text).not.toContain(host);
      expect(text).not.toContain(String(relay.smtpPort));
    }
  });

  it("names neither SMTP_HOST nor its port in what API clients read when the relay refuses connections; the log line names them", async () => {
    const { id } = await insertQueuedMessage();
    const logs = captureLogs();
    try {
      await deliver([id], { SMTP_HOST: "127.0.0.1", SMTP_PORT: String(smtp.closedPort), SMTP_SECURITY: "none" });
    } finally {
      logs.restore();
    }
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    for (const text of [message.lastError!, events.at(-1)!.detail!]) expect(text).not.toMatch(/127\.0\.0\.1|:\d{2,5}\b/);
    const line = logs.lines.map((l) => JSON.parse(l)).find((e) => e.msg === "delivery attempt" && e.email_id === id);
    expect(line).toMatchObject({ outcome: "retry", relay: `127.0.0.1:${smtp.closedPort}` });
  });

  it("retries (not fails) when the relay rejects the credentials, and says so", async () => {
    const { id } = await insertQueuedMessage();
    const { result } = await deliver([id], { SMTP_PORT: String(smtp.tls.smtpPort), SMTP_SECURITY: "tls", SMTP_USER, SMTP_PASS: "wrong" });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(message.lastError).toMatch(/AUTH PLAIN answered 535/);
    expect(events.at(-1)).toMatchObject({ type: "deferred", smtpCode: 535, attempt: 1 });
  });

  it("fails closed when STARTTLS is required but not offered: no AUTH and no mail on the wire", async () => {
    const { id } = await insertQueuedMessage();
    const before = await inboxStats(smtp.noStarttls.httpPort);
    const { result } = await deliver([id], { SMTP_PORT: String(smtp.noStarttls.smtpPort), SMTP_SECURITY: "starttls", ...withAuth });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    const after = await inboxStats(smtp.noStarttls.httpPort);
    expect(after.connections).toBe(before.connections + 1);
    expect(after.authAttempts).toEqual(before.authAttempts);
    expect(after.mailFrom).toBe(before.mailFrom);
    const { message } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(message.lastError).toMatch(/does not offer STARTTLS/);
  });

  it("refuses plaintext injected after the STARTTLS reply, before any AUTH", async () => {
    const { id } = await insertQueuedMessage();
    const { result } = await deliver([id], { SMTP_PORT: String(smtp.injection.smtpPort), SMTP_SECURITY: "starttls", ...withAuth });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    const commands: string[] = await (await fetch(`http://127.0.0.1:${smtp.drop.controlPort}/injection/commands`)).json();
    expect(commands.map((c) => c.split(" ")[0])).toEqual(["EHLO", "STARTTLS"]);
    expect((await loadMessage(id)).message.lastError).toMatch(/sent data after its STARTTLS reply/);
  });

  it("fails in bounded time when the relay drops the connection mid-DATA, while other requests are served", async () => {
    const control = `http://127.0.0.1:${smtp.drop.controlPort}`;
    const { id } = await insertQueuedMessage();
    const delivery = deliver([id], { SMTP_PORT: String(smtp.drop.smtpPort) });

    await fetch(`${control}/drop/data-started`); // the consumer is now inside DATA, waiting on the relay
    const health = await exports.default.fetch(new Request("https://mailroom.test/healthz"));
    expect(health.status).toBe(200);
    await fetch(`${control}/drop/release`); // the relay cuts the connection

    const { result } = await delivery;
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(message.lastError).toMatch(/connection closed by the server/);
    expect(events.at(-1)).toMatchObject({ type: "deferred", attempt: 1, smtpCode: null });
  });

  it("gives up on a relay that never answers after SMTP_TIMEOUT_MS", async () => {
    const { id } = await insertQueuedMessage();
    const { result, elapsedMs } = await deliver([id], { SMTP_PORT: String(smtp.silent.smtpPort), SMTP_TIMEOUT_MS: "300" });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    expect(elapsedMs).toBeGreaterThanOrEqual(300);
    const { message } = await loadMessage(id);
    expect(message.lastError).toMatch(/no answer to \(greeting\) within 300 ms/);
  });

  it("tries an unreachable relay once per session of the batch, not once per message", async () => {
    const batch = await Promise.all(Array.from({ length: 8 }, () => insertQueuedMessage()));
    const before = await inboxStats(smtp.noStarttls.httpPort);
    const { result } = await deliver(batch.map((m) => m.id), { SMTP_PORT: String(smtp.noStarttls.smtpPort), SMTP_SECURITY: "starttls", SMTP_SESSIONS: "3", ...withAuth });
    expect(result.retryMessages).toEqual(batch.map((m) => ({ msgId: `job-${m.id}` })));
    expect((await inboxStats(smtp.noStarttls.httpPort)).connections).toBe(before.connections + 3);
    for (const { id } of batch) expect((await loadMessage(id)).message).toMatchObject({ status: "retrying", attempts: 1, lastError: expect.stringMatching(/does not offer STARTTLS/) });
  });

  it("bounds a whole reply, not each read, so a relay trickling bytes cannot hold a delivery", async () => {
    const { id } = await insertQueuedMessage();
    const { result, elapsedMs } = await deliver([id], { SMTP_PORT: String(smtp.trickle.smtpPort), SMTP_TIMEOUT_MS: "300" });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    expect(elapsedMs).toBeGreaterThanOrEqual(300);
    expect((await loadMessage(id)).message.lastError).toMatch(/no answer to \(greeting\) within 300 ms/);
  });

  it("starts no transaction once the attempt's time is up, and leaves the session usable for the next one", async () => {
    const opened = await SmtpSession.open(relay(smtp.plain.smtpPort));
    if (!opened.ok) throw new Error(opened.failure.message);
    const session = opened.value;
    try {
      const late = uniqueRecipient("late");
      expect(await session.send({ envelope: { from: FROM, recipients: [late] }, data: MIME, deadline: Date.now() - 1 })).toEqual({
        recipients: [],
        end: { ok: false, failure: { kind: "timeout", stage: "mail", command: "MAIL FROM", message: "the attempt's time was up before its transaction began" } },
      });
      expect(session.isBroken).toBe(false);
      const onTime = uniqueRecipient("ontime");
      expect((await session.send({ envelope: { from: FROM, recipients: [onTime] }, data: MIME, deadline: Date.now() + 10_000 })).end.ok).toBe(true);
      expect(await inboxMessages(onTime)).toHaveLength(1);
      expect(await inboxMessages(late)).toHaveLength(0);
    } finally {
      await session.close();
    }
  });

  it("waits for the reply to the message no longer than the attempt's deadline, then closes the session", async () => {
    const opened = await SmtpSession.open(relay(smtp.dataPolicy.smtpPort, 300));
    if (!opened.ok) throw new Error(opened.failure.message);
    const session = opened.value;
    const started = Date.now();
    // This relay answers the end of the message after 1 s; the attempt may wait 600 ms, the reply up to 10 minutes.
    const transaction = await session.send({ envelope: { from: FROM, recipients: [uniqueRecipient("slow")] }, data: MIME, deadline: started + 600 });
    const elapsed = Date.now() - started;
    const broken = session.isBroken;
    await session.close();
    expect(transaction.end).toEqual({
      ok: false,
      failure: {
        kind: "timeout",
        stage: "message",
        command: "(end of data)",
        message: expect.stringMatching(/^no answer to \(end of data\) before the attempt's deadline .*possible duplicate/),
      },
    });
    expect(elapsed).toBeGreaterThanOrEqual(550);
    expect(elapsed).toBeLessThan(1000);
    expect(broken).toBe(true); // a reply may still come: the session must not be used again
  });

  it("reuses one session for a batch and skips messages that are no longer pending", async () => {
    const first = await insertQueuedMessage();
    const second = await insertQueuedMessage();
    const before = await inboxStats(smtp.plain.httpPort);
    await deliver([first.id, second.id], { SMTP_SESSIONS: "1" });
    const after = await inboxStats(smtp.plain.httpPort);
    expect(after.connections).toBe(before.connections + 1);
    expect((await loadMessage(first.id)).message.status).toBe("sent");
    expect((await loadMessage(second.id)).message.status).toBe("sent");

    // A redelivered job for a sent message sends nothing and changes nothing.
    const { result } = await deliver([first.id]);
    expect(result.explicitAcks).toEqual([`job-${first.id}`]);
    expect(await inboxMessages(first.to)).toHaveLength(1);
    const { message, events } = await loadMessage(first.id);
    expect(message.attempts).toBe(1);
    expect(events.map((e) => e.type)).toEqual(["accepted", "sent"]);
  });
});
