// Hostile bodies through the real API, queue and SMTP server: lone dots, bare CR and LF, and the SMTP
// smuggling sequences (<LF>.<CR><LF>, <CR>.<CR>, <LF>.<LF> followed by a second transaction) arrive as one
// message, with only CRLF line ends on the wire and the text intact (its line ends as CRLF).
import { describe, expect, it } from "vitest";
import { api, inboxMessages, uniqueRecipient, waitForMail } from "../helpers/api";

const smuggled = (victim: string) => `MAIL FROM:<ceo@mailroom.test>\r\nRCPT TO:<${victim}>\r\nDATA\r\nSubject: Smuggled\r\n\r\nwire the money\r\n`;

describe("hostile bodies", () => {
  it.each([
    ["a lone dot line", (v: string) => `first\r\n.\r\nsecond ${v}`],
    ["<LF>.<CR><LF> then a second transaction", (v: string) => `hello\n.\r\n${smuggled(v)}.\r\n`],
    ["<CR><LF>.<LF> then a second transaction", (v: string) => `hello\r\n.\n${smuggled(v)}.\n`],
    ["<LF>.<LF> then a second transaction", (v: string) => `hello\n.\n${smuggled(v)}`],
    ["<CR>.<CR> and bare CRs", (v: string) => `hello\r.\r${smuggled(v)}\r.\r`],
    ["dots at the start of lines and a last line of one dot", (v: string) => `.leading\r\n..double\r\n${v}\r\n.`],
  ])("delivers a body with %s as one message, CRLF only", async (_name, make) => {
    const [to, victim] = [uniqueRecipient("hostile"), uniqueRecipient("victim")];
    const text = make(victim);
    const html = `<pre>${make(victim)}</pre>`;
    const res = await api("/v1/emails", { method: "POST", json: { to, subject: "Hostile", text, html } });
    expect(res.status).toBe(202);
    const [mail, ...more] = await waitForMail(to);
    expect(more).toHaveLength(0);
    expect(mail!.envelope.to).toEqual([to]);
    expect(mail!.raw.replace(/\r\n/g, "")).not.toMatch(/[\r\n]/); // no bare CR or LF on the wire
    // What the recipient reads: the text, line ends as CRLF (or LF, as the parser gives them), nothing lost.
    const normalize = (s: string) => s.replace(/\r\n|\r|\n/g, "\n").trimEnd();
    expect(normalize(mail!.text)).toBe(normalize(text));
    // Nothing reached anyone else: the smuggled transaction was content, not a command.
    expect(await inboxMessages(victim)).toHaveLength(0);
  });
});
