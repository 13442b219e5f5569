// Cloudflare Email Service as a transport, through the real local send_email binding (miniflare writes
// each mail it takes to an .eml file the control server reads back) and its restricted variants, which
// refuse a recipient or the sender on demand; and failover from a relay that cannot be used at all. The
// service's limits (E_RATE_LIMIT_EXCEEDED, …) cannot be made to happen locally: for those, the real
// binding is wrapped so that one call throws the error production would.
import { env } from "cloudflare:workers";
import { describe, expect, inject, it } from "vitest";
import { getSuppression } from "../../src/store/suppressions";
import { captureLogs, inboxMessages, uniqueRecipient } from "../helpers/api";
import { deliver, insertQueuedMessage, loadMessage } from "../helpers/factories";
import { SMTP_USER } from "../helpers/smtp-fixtures";

const smtp = inject("smtp");
const bindings = env as unknown as Record<"EMAIL" | "EMAIL_ONE_RECIPIENT" | "EMAIL_OTHER_SENDER", SendEmail>;
const CLOUDFLARE_ONLY = { TRANSPORT: "cloudflare", SMTP_HOST: "" };
const gateConnections = async (): Promise<number> => {
  const state = await (await fetch(`http://127.0.0.1:${smtp.gate.controlPort}/gate/open`)).json<{ connections: Record<string, number> }>();
  return Object.values(state.connections).reduce((a, b) => a + b, 0);
};

/** The .eml the local binding wrote for a message id send() returned. */
async function sentCopy(messageId: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${smtp.drop.controlPort}/email-service/sent/${encodeURIComponent(messageId)}`);
  expect(res.status).toBe(200);
  return res.text();
}

/** The message ids the history's "sent" event names, in recipient order. */
const acceptedIds = (detail: string | null) => [...(detail ?? "").matchAll(/<[^>]+>/g)].map((m) => m[0]);

/** The real binding, counting its calls; with `failOn`, the nth call throws what production would. */
function wrapped(failOn?: { call: number; error: Error }) {
  const wrapper = {
    calls: 0,
    send(message: EmailMessage) {
      wrapper.calls += 1;
      if (failOn && wrapper.calls === failOn.call) return Promise.reject(failOn.error);
      return bindings.EMAIL.send(message);
    },
  };
  return wrapper;
}
const serviceError = (code: string, message: string) => Object.assign(new Error(message), { code });

describe("TRANSPORT=cloudflare", () => {
  it("gives the binding Mailroom's own message, once per recipient, and never opens an SMTP connection", async () => {
    const to = [uniqueRecipient("cf"), uniqueRecipient("cf")];
    const { id } = await insertQueuedMessage({ to, subject: "Through Email Service", text: "Hello over the binding\r\n.a dot line" });
    const before = await gateConnections();
    const { result } = await deliver([id], CLOUDFLARE_ONLY);
    expect(result.explicitAcks).toEqual([`job-${id}`]);
    expect(await gateConnections()).toBe(before);
    const { message, events, recipients } = await loadMessage(id);
    expect(message.status).toBe("sent");
    expect(recipients.map((r) => r.status)).toEqual(["sent", "sent"]);
    const sent = events.find((e) => e.type === "sent")!;
    expect(sent).toMatchObject({ transport: "cloudflare", smtpCode: 250, attempt: 1 });
    expect(sent.detail).toMatch(/^accepted by Cloudflare Email Service as <[^>]+>, <[^>]+>$/);
    const ids = acceptedIds(sent.detail);
    expect(ids).toHaveLength(2);
    const copies = await Promise.all(ids.map(sentCopy));
    for (const copy of copies) {
      expect(copy).toMatch(/^Subject: Through Email Service\r$/m);
      expect(copy).toMatch(new RegExp(`^To: ${to[0]}, ${to[1]}\\r$`, "m"));
      expect(copy).toContain("Hello over the binding\r\n.a dot line"); // undotted: the binding is not SMTP
      expect(copy).not.toMatch(/^Received:/im);
    }
    // The local binding puts a Message-ID of its own in place of Mailroom's, and answers with it.
    expect(copies[0]).toContain(`Message-ID: ${ids[0]}`);
    expect(copies[0]).not.toContain(message.messageId);
    expect(copies[0]!.replace(/^Message-ID: .*\r\n/m, "")).toBe(copies[1]!.replace(/^Message-ID: .*\r\n/m, ""));
  });

  it("records a recipient the service refuses as bounced (550 5.7.1), sends to the others, and does not suppress the address", async () => {
    const refused = uniqueRecipient("refused");
    const { id } = await insertQueuedMessage({ to: ["allowed@example.com", refused] });
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: bindings.EMAIL_ONE_RECIPIENT });
    const { message, events, recipients } = await loadMessage(id);
    expect(message.status).toBe("sent");
    expect(recipients).toMatchObject([
      { address: "allowed@example.com", status: "sent" },
      { address: refused, status: "bounced", smtpCode: 550, detail: `send_email to <${refused}> answered 550 5.7.1 E_RECIPIENT_NOT_ALLOWED: email to ${refused} not allowed` },
    ]);
    expect(events.find((e) => e.type === "bounced")).toMatchObject({ recipient: refused, enhancedCode: "5.7.1", transport: "cloudflare" });
    expect(await getSuppression(env.DB, "tests", refused)).toBeNull();
  });

  it("keeps the mail waiting while the sender is not allowed: a setting to fix, not a refusal of the mail", async () => {
    const { id } = await insertQueuedMessage();
    const { result } = await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: bindings.EMAIL_OTHER_SENDER });
    expect(result.retryMessages).toEqual([{ msgId: `job-${id}` }]);
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(message.lastError).toMatch(/^send_email to <[^>]+> answered 451 4\.7\.1 E_SENDER_NOT_VERIFIED: email from noreply@mailroom\.test not allowed$/);
    expect(events.at(-1)).toMatchObject({ type: "deferred", transport: "cloudflare", smtpCode: 451 });
  });

  it("stops at a service limit: who got it is done, the one refused and the rest wait, and none of them is sent twice", async () => {
    const to = [uniqueRecipient("first"), uniqueRecipient("limited"), uniqueRecipient("later")];
    const { id } = await insertQueuedMessage({ to });
    const limited = wrapped({ call: 2, error: serviceError("E_RATE_LIMIT_EXCEEDED", "Rate limit exceeded") });
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: limited });
    expect(limited.calls).toBe(2);
    let { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(recipients.map((r) => r.status)).toEqual(["sent", "deferred", "pending"]);
    expect(message.lastError).toContain("451 4.7.0 E_RATE_LIMIT_EXCEEDED: Rate limit exceeded");

    const fine = wrapped();
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: fine });
    expect(fine.calls).toBe(2);
    ({ message, recipients } = await loadMessage(id));
    expect(message.status).toBe("sent");
    expect(recipients.map((r) => r.status)).toEqual(["sent", "sent", "sent"]);
  });

  it("does not begin a send it could not hear the answer to: the rest wait, unsent", async () => {
    const to = [uniqueRecipient("slow"), uniqueRecipient("unsent")];
    const { id } = await insertQueuedMessage({ to });
    // The first answer takes most of the attempt's 4 s (a 5 s claim), leaving less than SEND_MARGIN_MS.
    const slow = wrapped();
    const slowly = { send: (m: EmailMessage) => new Promise<EmailSendResult>((resolve, reject) => setTimeout(() => slow.send(m).then(resolve, reject), 2500)) };
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: slowly, DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "100" });
    expect(slow.calls).toBe(1);
    const { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(recipients.map((r) => r.status)).toEqual(["sent", "pending"]);
  });

  it("marks a recipient whose send() went unanswered after another was accepted as a possible duplicate", async () => {
    const to = [uniqueRecipient("answered"), uniqueRecipient("unanswered")];
    const { id } = await insertQueuedMessage({ to });
    const real = wrapped();
    const secondHangs = { send: (m: EmailMessage) => (real.calls === 0 ? real.send(m) : new Promise<EmailSendResult>(() => {})) };
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: secondHangs, DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "100" });
    const { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(recipients[0]!.status).toBe("sent");
    expect(recipients[1]).toMatchObject({ status: "deferred", smtpCode: 451 });
    expect(recipients[1]!.detail).toMatch(/possible duplicate on the next attempt/);
  });

  it("fails the mail for every recipient at once when the service refuses the message itself", async () => {
    const { id } = await insertQueuedMessage({ to: [uniqueRecipient("a"), uniqueRecipient("b")] });
    const refusing = wrapped({ call: 1, error: serviceError("E_CONTENT_TOO_LARGE", "Content too large") });
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: refusing });
    expect(refusing.calls).toBe(1);
    const { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("failed");
    expect(message.lastError).toMatch(/^send_email to <[^>]+> answered 554 5\.3\.4 E_CONTENT_TOO_LARGE: Content too large$/);
    expect(recipients.map((r) => r.status)).toEqual(["bounced", "bounced"]);
  });

  it("treats a send() that outlasts the attempt as possibly taken: the recipient waits, marked as a possible duplicate", async () => {
    const { id } = await insertQueuedMessage();
    const hanging = { send: () => new Promise<EmailSendResult>(() => {}) };
    // The shortest lease leaves an attempt a few seconds: the send is given up on at its deadline.
    await deliver([id], { ...CLOUDFLARE_ONLY, EMAIL: hanging, DELIVERY_LEASE_SECONDS: "5", SMTP_TIMEOUT_MS: "100" });
    const { message } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(message.lastError).toMatch(/no answer before the attempt's time was up; .*possible duplicate/);
  });
});

describe("TRANSPORT=smtp,cloudflare", () => {
  const FAILOVER = { TRANSPORT: "smtp,cloudflare" };

  it.each([
    ["refuses connections", { SMTP_PORT: String(smtp.closedPort) }, /connection error/],
    ["greets with 421", { SMTP_PORT: String(smtp.busy.smtpPort) }, /421 4\.7\.0 .*Too many connections/],
    // (Not the AUTH relays: their tests count every AUTH attempt they see.)
    ["presents a certificate nobody trusts", { SMTP_PORT: String(smtp.untrustedTls.smtpPort), SMTP_SECURITY: "tls", SMTP_USER, SMTP_PASS: "irrelevant" }, /^TLS error/],
  ])("sends the same attempt through Email Service when the relay %s, once", async (_what, relay, reason) => {
    const { id } = await insertQueuedMessage();
    const counted = wrapped();
    const logs = captureLogs();
    try {
      await deliver([id], { ...FAILOVER, ...relay, EMAIL: counted });
    } finally {
      logs.restore();
    }
    expect(counted.calls).toBe(1);
    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sent", attempts: 1 });
    expect(events.map((e) => [e.type, e.transport])).toEqual([["accepted", null], ["sent", "cloudflare"]]);
    const line = logs.lines.map((l) => JSON.parse(l)).find((e) => e.msg === "transport cannot be used; failing over");
    expect(line).toMatchObject({ transport: "smtp", next_transport: "cloudflare" });
    expect(line.reason).toMatch(reason);
  });

  it("does not fail over when the relay refuses a recipient (550), nor on a temporary refusal of the mail", async () => {
    const rejected = `reject-${crypto.randomUUID().slice(0, 8)}@example.com`;
    const busy = `tempfail-${crypto.randomUUID().slice(0, 8)}@example.com`;
    const { id } = await insertQueuedMessage({ to: [rejected, busy] });
    const counted = wrapped();
    await deliver([id], { ...FAILOVER, SMTP_PORT: String(smtp.plain.smtpPort), EMAIL: counted });
    expect(counted.calls).toBe(0);
    const { recipients, events } = await loadMessage(id);
    expect(recipients.map((r) => [r.status, r.smtpCode])).toEqual([["bounced", 550], ["deferred", 451]]);
    expect(events.filter((e) => e.attempt === 1).map((e) => e.transport)).toEqual(["smtp", "smtp"]);
  });

  it("uses the relay while it can be used, and says so in the history", async () => {
    const { id, to } = await insertQueuedMessage();
    const counted = wrapped();
    await deliver([id], { ...FAILOVER, EMAIL: counted });
    expect(counted.calls).toBe(0);
    expect((await loadMessage(id)).events.at(-1)).toMatchObject({ type: "sent", transport: "smtp" });
    expect(await inboxMessages(to)).toHaveLength(1);
  });

  it("makes Email Service's refusals for good temporary when it is only the fallback: the relay is tried again", async () => {
    const refused = uniqueRecipient("refused");
    const { id } = await insertQueuedMessage({ to: refused });
    await deliver([id], { ...FAILOVER, SMTP_PORT: String(smtp.closedPort), EMAIL: bindings.EMAIL_ONE_RECIPIENT });
    const { message, recipients } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(recipients[0]).toMatchObject({ status: "deferred", smtpCode: 451 });
    expect(recipients[0]!.detail).toMatch(/451 4\.7\.1 E_RECIPIENT_NOT_ALLOWED: .*only the fallback/);
  });

  it("lets the mail wait when Email Service cannot take it either, and the history says which transport had the attempt last", async () => {
    const { id } = await insertQueuedMessage();
    await deliver([id], { ...FAILOVER, SMTP_PORT: String(smtp.closedPort), EMAIL: bindings.EMAIL_OTHER_SENDER });
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("retrying");
    expect(events.at(-1)).toMatchObject({ type: "deferred", transport: "cloudflare" });
    expect(message.lastError).toContain("E_SENDER_NOT_VERIFIED");
  });
});
