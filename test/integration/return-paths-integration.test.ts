// Return paths and DSN requests (RFC 3461), through the real consumer to real relays: with BOUNCE_ADDRESS
// each message's envelope sender is its own authenticated return path, and a relay that offers DSN is asked
// for failure and delay reports (RET=HDRS, ENVID, NOTIFY, ORCPT); one that does not gets no parameter.
import { describe, expect, inject, it } from "vitest";
import { envelopeIdFor, readReturnPath } from "../../src/core/return-path";
import { inboxMessages, uniqueRecipient } from "../helpers/api";
import { deliver, insertQueuedMessage, loadMessage } from "../helpers/factories";

const smtp = inject("smtp");
const BOUNCES = { BOUNCE_ADDRESS: "bounces@bounce.mailroom.test", BOUNCE_SECRET: "a-test-secret-of-at-least-32-characters" };
const bounce = { bounceAddress: BOUNCES.BOUNCE_ADDRESS, secret: BOUNCES.BOUNCE_SECRET };

describe("return paths", () => {
  it("are MAIL_FROM's address, with no DSN asked for, without BOUNCE_ADDRESS", async () => {
    const { id, to } = await insertQueuedMessage();
    await deliver([id]);
    const [mail] = await inboxMessages(to);
    expect(mail!.envelope.from).toBe("noreply@mailroom.test");
    expect(mail!.envelope.dsn).toMatchObject({ ret: null, envid: null, recipients: [{ notify: null, orcpt: null }] });
  });

  it("name the message, authenticated, and ask a relay that offers DSN for failure and delay reports", async () => {
    const [a, b] = [uniqueRecipient("a"), uniqueRecipient("b")];
    const { id } = await insertQueuedMessage({ to: [a, b] });
    await deliver([id], BOUNCES);
    const [mail] = await inboxMessages(a);
    expect(mail!.envelope.from).toMatch(/^bounces\+[a-z2-7]{42}@bounce\.mailroom\.test$/);
    expect(await readReturnPath(mail!.envelope.from, bounce)).toEqual({ ok: true, messageId: id });
    const envid = await envelopeIdFor(id, bounce.secret);
    expect(envid).toMatch(/^[a-z2-7]{26}$/);
    expect(mail!.raw).not.toContain(envid); // in no header a recipient sees
    expect(mail!.envelope.dsn).toEqual({ ret: "HDRS", envid, recipients: [{ notify: ["FAILURE", "DELAY"], orcpt: `rfc822;${a}` }, { notify: ["FAILURE", "DELAY"], orcpt: `rfc822;${b}` }] });
    // The From header is the message's own.
    expect(mail!.from).toBe('"Mailroom Tests" <noreply@mailroom.test>');
    expect((await loadMessage(id)).message.status).toBe("sent");
  });

  it("ask for success reports too with DSN_NOTIFY_SUCCESS=true", async () => {
    const { id, to } = await insertQueuedMessage();
    await deliver([id], { ...BOUNCES, DSN_NOTIFY_SUCCESS: "true" });
    expect((await inboxMessages(to))[0]!.envelope.dsn!.recipients).toEqual([{ notify: ["SUCCESS", "FAILURE", "DELAY"], orcpt: `rfc822;${to}` }]);
  });

  it("send no DSN parameter to a relay that does not offer DSN (RFC 3461 §4), pipelined or in lock-step", async () => {
    for (const [relay, path] of [["pipeliningOnly", "pipelining-only"], ["strictLockstep", "strict-lockstep"]] as const) {
      const to = uniqueRecipient("nodsn");
      const { id } = await insertQueuedMessage({ to });
      await deliver([id], { ...BOUNCES, SMTP_PORT: String(smtp[relay].smtpPort) });
      const { commands } = (await (await fetch(`http://127.0.0.1:${smtp.drop.controlPort}/${path}/received`)).json()) as { commands: string[] };
      const mine = commands.filter((c) => c.includes(to) || c.startsWith("MAIL FROM"));
      expect(mine, relay).toContain(`RCPT TO:<${to}>`);
      expect(commands.filter((c) => c.startsWith("MAIL FROM")).at(-1), relay).toMatch(/^MAIL FROM:<bounces\+[a-z2-7]{42}@bounce\.mailroom\.test>$/);
      expect((await loadMessage(id)).message.status, relay).toBe("sent");
    }
  });
});
