// DKIM-signed mail through a real SMTP server, checked by an independent verifier (mailauth, in the global
// setup) against the published key: RSA and Ed25519, with attachments, non-ASCII and long folded headers,
// dot-stuffed lines and Bcc; a changed header or body fails.
import { env } from "cloudflare:workers";
import { describe, expect, inject, it } from "vitest";
import { createMessageId } from "../../src/core/message";
import { insertMessages } from "../../src/store/messages";
import { inboxMessages, uniqueRecipient } from "../helpers/api";
import { deliver, loadMessage } from "../helpers/factories";
import type { DkimVerdict } from "../helpers/smtp-fixtures";
import { DKIM_DOMAIN, ED25519_KEY, ED25519_RECORD, RSA_KEY, RSA_RECORD } from "../fixtures/dkim-keys";

const smtp = inject("smtp");
const records = { [`rsa1._domainkey.${DKIM_DOMAIN}`]: RSA_RECORD, [`ed1._domainkey.${DKIM_DOMAIN}`]: ED25519_RECORD };
const RSA = { DKIM_DOMAIN, DKIM_SELECTOR: "rsa1", DKIM_PRIVATE_KEY: RSA_KEY };
// The other form a key may take: the one-line base64 of its DER.
const ED25519 = { DKIM_DOMAIN, DKIM_SELECTOR: "ed1", DKIM_PRIVATE_KEY: ED25519_KEY };

async function verify(message: string): Promise<DkimVerdict[]> {
  const res = await fetch(`http://127.0.0.1:${smtp.drop.controlPort}/dkim/verify`, { method: "POST", body: JSON.stringify({ message, records }) });
  return res.json();
}

/** A message with every part a signature must survive; `to` gets it, and a Bcc recipient too. */
async function insertRichMessage() {
  const id = crypto.randomUUID();
  const to = uniqueRecipient("dkim");
  const bcc = uniqueRecipient("hidden");
  const from = { name: "Zoë of Mailroom", address: "noreply@mailroom.test" };
  const others = Array.from({ length: 6 }, (_, i) => ({ name: `Récipient numéro ${i} with a rather long display name`, address: `list-${i}@example.com` }));
  const recipients = [to, ...others.map((o) => o.address), bcc];
  await insertMessages(env.DB, [
    {
      id,
      apiKeyName: "tests",
      createdAt: new Date().toISOString(),
      messageId: createMessageId(id, from),
      from,
      to: [{ address: to, name: "Jürgen" }, ...others],
      cc: [{ address: "cc@example.com" }],
      bcc: [{ address: bcc }],
      replyTo: [{ address: "help@mailroom.test" }],
      headers: {
        "X-Campaign": "Grüße — a header long enough to be folded over more than one line when it is encoded as it must be",
        "List-Unsubscribe": "<https://mailroom.test/unsubscribe?u=1>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "X-Entity-Ref-ID": "ref-1",
      },
      attachments: [
        { filename: "report.pdf", content: btoa("%PDF-1.4 not really a pdf\n".repeat(200)) },
        { filename: "straße.txt", content: btoa(".a line that starts with a dot\r\n") },
      ],
      tags: [],
      recipients,
      subject: "Ünïcödé subject that goes on and on so that its encoded form has to be folded over several lines",
      text: "Hello,\r\n.this line starts with a dot\r\n..and this with two\r\n.\r\nTrailing spaces here   \r\n\r\n\r\n",
      html: "<p>Héllo</p>\r\n.<p>dot</p>",
    },
  ]);
  return { id, to, bcc };
}

describe("DKIM signatures", () => {
  it.each([
    ["rsa-sha256", RSA, "rsa1"],
    ["ed25519-sha256", ED25519, "ed1"],
  ])("%s: mail through a real SMTP server verifies, for the To and the Bcc recipient alike", async (algorithm, settings, selector) => {
    const { id, to, bcc } = await insertRichMessage();
    await deliver([id], settings);
    expect((await loadMessage(id)).message.status).toBe("sent");
    const [mail] = await inboxMessages(to, smtp.plain.httpPort);
    expect(mail!.headerNames[0]).toBe("dkim-signature");
    expect(mail!.raw).not.toMatch(/^bcc:/im);
    expect(mail!.raw).toContain("\r\n.this line starts with a dot");
    expect(mail!.raw).toContain("\r\n..and this with two\r\n"); // dot-stuffed on the wire, undone by the server
    const [verdict] = await verify(mail!.raw);
    expect(verdict).toMatchObject({ result: "pass", domain: DKIM_DOMAIN, selector, algorithm });
    // From oversigned; the client's own X-* fields and the list headers signed; Bcc never.
    const field = /^DKIM-Signature:((?:.|\r\n[ \t])*)/m.exec(mail!.raw)![1]!.replace(/\r\n/g, "");
    const signed = /\bh=([^;]+)/.exec(field)![1]!.replace(/\s+/g, "").split(":");
    expect(signed.filter((h) => h === "from")).toHaveLength(2);
    for (const name of ["to", "cc", "reply-to", "subject", "date", "message-id", "mime-version", "content-type", "list-unsubscribe", "list-unsubscribe-post", "x-campaign", "x-entity-ref-id"]) expect(signed).toContain(name);
    expect(signed).not.toContain("bcc");
    expect(verdict!.signedHeaders).toContain("X-Campaign");
    // The Bcc recipient got the same message, signature and all.
    const [hidden] = await inboxMessages(bcc, smtp.plain.httpPort);
    expect(hidden!.raw).toBe(mail!.raw);
  });

  const added = (field: string) => (raw: string) => raw.replace(/\r\n\r\n/, `\r\n${field}\r\n\r\n`);
  const TAMPERING: [string, (raw: string) => string][] = [
    ["a changed subject", (raw) => raw.replace(/^Subject: .*$/m, "Subject: =?UTF-8?Q?You_won?=")],
    ["an added From", added("From: attacker@evil.example")],
    ["an added Subject", added("Subject: You won")],
    ["an added Reply-To", added("Reply-To: attacker@evil.example")],
    ["an added List-Unsubscribe", added("List-Unsubscribe: <https://evil.example/u>")],
    ["an added Cc", added("Cc: attacker@evil.example")],
    ["a changed X-* header", (raw) => raw.replace(/^X-Entity-Ref-ID: ref-1/m, "X-Entity-Ref-ID: ref-2")],
    ["a changed body", (raw) => raw.replace("this line starts with a dot", "this line starts with a dot!")],
  ];
  it.each([
    ...TAMPERING.map(([what, tamper]) => ["rsa-sha256", what, tamper, RSA] as const),
    ...TAMPERING.map(([what, tamper]) => ["ed25519-sha256", what, tamper, ED25519] as const),
  ])("%s fails verification after %s", async (_algorithm, _what, tamper, settings) => {
    const { id, to } = await insertRichMessage();
    await deliver([id], settings);
    const [mail] = await inboxMessages(to, smtp.plain.httpPort);
    const tampered = tamper(mail!.raw);
    expect(tampered).not.toBe(mail!.raw);
    const [verdict] = await verify(tampered);
    expect(verdict!.result).not.toBe("pass");
  });

  it("signs nothing without the settings", async () => {
    const { id, to } = await insertRichMessage();
    await deliver([id]);
    const [mail] = await inboxMessages(to, smtp.plain.httpPort);
    expect(mail!.raw).not.toMatch(/^dkim-signature:/im);
  });
});
