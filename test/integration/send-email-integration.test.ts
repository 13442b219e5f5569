// The walking path end to end inside workerd: POST → D1 row + queue job → real local queue consumer →
// real SMTP server → status "sent", with the history and the mail as it arrived.
import { describe, expect, it, vi } from "vitest";
import { api, inboxMessages, uniqueRecipient } from "../helpers/api";

async function waitForStatus(id: string, statuses: string[]) {
  return vi.waitFor(
    async () => {
      const body = await (await api(`/v1/emails/${id}`)).json<{ status: string }>();
      if (!statuses.includes(body.status)) throw new Error(`status is ${body.status}`);
      return body as Record<string, any>;
    },
    { timeout: 10_000, interval: 50 },
  );
}

describe("POST /v1/emails", () => {
  it("answers 202 with the id and a Location, then delivers the mail and records it as sent", async () => {
    const to = uniqueRecipient();
    const res = await api("/v1/emails", {
      method: "POST",
      json: { to: `Jane Doe <${to}>`, subject: "Welcome aboard", text: "Hello Jane", html: "<p>Hello <b>Jane</b></p>" },
    });
    expect(res.status).toBe(202);
    const body = await res.json<{ id: string; status: string }>();
    expect(body).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), status: "queued" });
    expect(res.headers.get("Location")).toBe(`/v1/emails/${body.id}`);

    const record = await waitForStatus(body.id, ["sent"]);
    expect(record).toMatchObject({
      id: body.id,
      status: "sent",
      from: "Mailroom Tests <noreply@mailroom.test>",
      to: [`Jane Doe <${to}>`],
      cc: [],
      subject: "Welcome aboard",
      attempts: 1,
      last_error: null,
    });
    expect(record.sent_at).toEqual(expect.any(String));
    expect(record.events.map((e: { type: string }) => e.type)).toEqual(["accepted", "sent"]);
    expect(record.events[1]).toMatchObject({ attempt: 1, smtp_code: 250 });

    const [mail, ...others] = await inboxMessages(to);
    expect(others).toHaveLength(0);
    expect(mail).toMatchObject({
      subject: "Welcome aboard",
      envelope: { from: "noreply@mailroom.test", to: [to] },
      from: '"Mailroom Tests" <noreply@mailroom.test>',
    });
    expect(mail!.text.trim()).toBe("Hello Jane");
    expect(mail!.html).toContain("<p>Hello <b>Jane</b></p>");
    expect(mail!.messageId).toBe(`<${body.id}@mailroom.test>`);
  });

  it("delivers to every to and cc recipient in one transaction, with a custom from", async () => {
    const to = [uniqueRecipient("a"), uniqueRecipient("b")];
    const cc = uniqueRecipient("c");
    const res = await api("/v1/emails", {
      method: "POST",
      json: { from: "Alerts <alerts@mailroom.test>", to, cc, subject: "Disk almost full", text: "87% used" },
    });
    expect(res.status).toBe(202);
    const { id } = await res.json<{ id: string }>();
    await waitForStatus(id, ["sent"]);
    const [mail] = await inboxMessages(cc);
    expect(mail!.envelope).toMatchObject({ from: "alerts@mailroom.test", to: [...to, cc] });
    expect(mail!.cc).toBe(cc);
  });

  it("records a permanent rejection as a bounce with the relay's code and reply, and the message as failed, without retrying", async () => {
    const res = await api("/v1/emails", { method: "POST", json: { to: uniqueRecipient("reject"), subject: "Hi", text: "x" } });
    const { id } = await res.json<{ id: string }>();
    const record = await waitForStatus(id, ["failed"]);
    expect(record.attempts).toBe(1);
    expect(record.last_error).toMatch(/550/);
    expect(record.last_error).toMatch(/user unknown/);
    expect(record.events.at(-1)).toMatchObject({ type: "bounced", attempt: 1, smtp_code: 550 });
    expect(record.recipients).toMatchObject([{ status: "bounced", smtp_code: 550 }]);
    expect(record.last_event).toBe("bounced");
  });
});
